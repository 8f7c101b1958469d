// What --help lists for our binaries (services and command-line tools). Header-only; call once
// at the top of main(), before the flags are parsed. Not thread-safe (it sets Abseil's
// process-wide usage config).
//
// Abseil's --help lists only flags defined in a file named after the program (dj-health.cc,
// dj-health_main.cc, ...). Our files are snake_case (tools/dj_health.cc) or main.cc
// (services/registry/main.cc), so --help printed "No flags matched" and only --helpfull, which
// adds every library's flags, showed ours.
#pragma once

#include <string>

#include "absl/flags/usage_config.h"
#include "absl/strings/string_view.h"

namespace dangjian::flags {

// Makes --help and --helpshort list the flags defined in the file `source_file` (pass __FILE__
// from the file that defines the tool's flags). Files are compared by base name: Abseil hands
// the filter a normalised path, which may differ from __FILE__ in its leading part.
inline void ListOwnFlagsInHelp(absl::string_view source_file) {
  const auto base_name = [](absl::string_view path) {
    const size_t slash = path.find_last_of("/\\");
    return slash == absl::string_view::npos ? path : path.substr(slash + 1);
  };
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [own = std::string(base_name(source_file)), base_name](
                                   absl::string_view file) { return base_name(file) == own; };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace dangjian::flags
