// Flags with environment twins. Every flag `--some_name` can also be set by the environment
// variable DANGJIAN_SOME_NAME; the command line wins over the environment. Only composition roots
// (main.cc) use this. Not thread-safe: call before starting threads.
#pragma once

#include <string>
#include <vector>

namespace dangjian::flags {

// Applies DANGJIAN_* environment variables to the matching flags, then parses argv with
// absl::ParseCommandLine. Exits with a message on an unknown flag or a bad value.
std::vector<char*> ParseWithEnv(int argc, char** argv);

// Logs one JSON line listing every flag defined in our own sources (not libraries'), with values
// of flags whose name contains key, secret, password or token shown as "<redacted>", and
// password=... inside connection strings masked.
void LogEffectiveFlags();

}  // namespace dangjian::flags
