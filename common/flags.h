// Flags with environment twins. Every flag `--some_name` can also be set by the environment
// variable DANGJIAN_SOME_NAME; the command line wins over the environment. Only composition roots
// (main.cc) use this. Not thread-safe: call before starting threads.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dangjian::flags {

// Applies DANGJIAN_* environment variables to the matching flags, then parses argv with
// absl::ParseCommandLine. Exits with a message on an unknown flag or a bad value.
std::vector<char*> ParseWithEnv(int argc, char** argv);

// Logs one JSON line listing every flag defined in our own sources (not libraries'), with values
// of flags whose name contains key, secret, password or token shown as "<redacted>", and
// password=... inside connection strings masked.
void LogEffectiveFlags();

// The pieces of the two functions above, exposed for tests only.
namespace internal {

// Sets every flag whose DANGJIAN_<NAME> environment variable exists to that variable's value.
// Applies all it can, then returns INVALID_ARGUMENT naming each variable whose value its flag
// refuses (never echoing the value of a secret-named flag).
absl::Status ApplyEnvironment();

// True if `filename` (a flag's Filename(), the __FILE__ of its definition) is one of ours:
// under services/, common/, tools/ or bench/ of the source tree this library was built from.
bool IsOwnSource(absl::string_view filename);

// The value to log for flag `name`: "<redacted>" for secret-named flags, else `value` with
// password=... and URI user:password@ masked.
std::string RedactedValue(absl::string_view name, absl::string_view value);

// name -> logged value, for every flag of our own sources.
std::map<std::string, std::string> EffectiveFlags();

}  // namespace internal

}  // namespace dangjian::flags
