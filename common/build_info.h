// What this binary was built from. Defined in a source that cmake/write_build_info.cmake generates
// at every build (and rewrites only when the values change, so a new commit recompiles that one
// file): the version is the CMake cache variable DJ_VERSION; the revision is DJ_REVISION when set,
// else git's short commit id of the source tree, else "unknown" (a build from a tarball).
// Thread-safe (constants).
#pragma once

#include "absl/strings/string_view.h"

namespace dangjian {

absl::string_view BuildVersion();
absl::string_view BuildRevision();

}  // namespace dangjian
