#include "common/flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/log.h"

namespace dangjian::flags {
namespace {

constexpr absl::string_view kEnvPrefix = "DANGJIAN_";
constexpr absl::string_view kRedacted = "<redacted>";

bool IsSecretName(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  // A flag naming a file (--jwt_keys_file, --tls_key_file) holds a path, not the secret: an
  // operator needs to see which file was used.
  if (absl::EndsWith(lower, "_file")) return false;
  for (absl::string_view word : {"key", "secret", "password", "token"}) {
    if (absl::StrContains(lower, word)) return true;
  }
  return false;
}

// Masks the value after every `password=` (libpq keyword/value conninfo, or a URI query
// parameter): a single-quoted value up to its closing quote (\' escapes a quote), otherwise up to
// whitespace, '&' or ';'.
std::string MaskPasswordAssignments(absl::string_view text) {
  constexpr absl::string_view kWord = "password";
  const std::string lower = absl::AsciiStrToLower(text);
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t found = lower.find(kWord.data(), i, kWord.size());
    if (found == std::string::npos) break;
    size_t j = found + kWord.size();
    while (j < text.size() && absl::ascii_isspace(text[j])) ++j;
    if (j >= text.size() || text[j] != '=') {
      out.append(text.data() + i, found + kWord.size() - i);
      i = found + kWord.size();
      continue;
    }
    ++j;  // past '='
    while (j < text.size() && absl::ascii_isspace(text[j])) ++j;
    out.append(text.data() + i, j - i);
    out.append(kRedacted.data(), kRedacted.size());
    if (j < text.size() && text[j] == '\'') {
      ++j;
      while (j < text.size() && text[j] != '\'')
        j += (text[j] == '\\' && j + 1 < text.size()) ? 2 : 1;
      if (j < text.size()) ++j;  // closing quote
    } else {
      while (j < text.size() && !absl::ascii_isspace(text[j]) && text[j] != '&' && text[j] != ';') {
        ++j;
      }
    }
    i = j;
  }
  if (i < text.size()) out.append(text.data() + i, text.size() - i);
  return out;
}

// Masks the password in every URI authority of the form scheme://user:password@host
// (postgresql://, redis://, ...).
std::string MaskUriPasswords(absl::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t scheme_end = text.find("://", i);
    if (scheme_end == absl::string_view::npos) break;
    const size_t authority = scheme_end + 3;
    size_t end = authority;
    while (end < text.size() && text[end] != '/' && text[end] != '?' && text[end] != '#' &&
           !absl::ascii_isspace(text[end])) {
      ++end;
    }
    // The userinfo ends at the last '@' of the authority (a password may contain '@').
    const absl::string_view auth = text.substr(authority, end - authority);
    const size_t at = auth.rfind('@');
    const size_t colon = at == absl::string_view::npos ? at : auth.substr(0, at).find(':');
    if (colon != absl::string_view::npos) {
      out.append(text.data() + i, authority + colon + 1 - i);
      out.append(kRedacted.data(), kRedacted.size());
      i = authority + at;  // from the '@' on
    } else {
      out.append(text.data() + i, end - i);
      i = end;
    }
  }
  if (i < text.size()) out.append(text.data() + i, text.size() - i);
  return out;
}

std::string EnvName(absl::string_view flag_name) {
  return absl::StrCat(kEnvPrefix, absl::AsciiStrToUpper(flag_name));
}

}  // namespace

namespace internal {

absl::Status ApplyEnvironment() {
  // Sorted, so errors come out in the same order on every run.
  std::vector<std::pair<std::string, absl::CommandLineFlag*>> all;
  for (const auto& [name, flag] : absl::GetAllFlags()) all.emplace_back(std::string(name), flag);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  std::vector<std::string> errors;
  for (const auto& [name, flag] : all) {
    const std::string env = EnvName(name);
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      // absl's message quotes the value; leave it out where the value may be a secret.
      errors.push_back(IsSecretName(name) ? absl::StrCat(env, ": invalid value for --", name)
                                          : absl::StrCat(env, ": ", error));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
}

bool IsOwnSource(absl::string_view filename) {
  // Our tree is where this file is: <root>/common/flags.cc. Anchoring at the root keeps
  // tests/common/ and any library that happens to have a common/ folder out.
  constexpr absl::string_view kThisFile = __FILE__;
  constexpr absl::string_view kThisPath = "common/flags.cc";
  absl::string_view root;
  if (absl::EndsWith(kThisFile, kThisPath)) {
    root = kThisFile.substr(0, kThisFile.size() - kThisPath.size());
  }
  // absl reports a flag's file without the leading '/' ("work/main/services/..."), while
  // __FILE__ has it: compare both without it.
  absl::ConsumePrefix(&root, "/");
  absl::ConsumePrefix(&filename, "/");
  if (!absl::ConsumePrefix(&filename, root)) return false;
  for (absl::string_view dir : {"services/", "common/", "tools/", "bench/"}) {
    if (absl::StartsWith(filename, dir)) return true;
  }
  return false;
}

std::string RedactedValue(absl::string_view name, absl::string_view value) {
  if (IsSecretName(name)) return std::string(kRedacted);
  return MaskUriPasswords(MaskPasswordAssignments(value));
}

std::map<std::string, std::string> EffectiveFlags() {
  std::map<std::string, std::string> out;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsOwnSource(flag->Filename())) continue;
    out.emplace(std::string(name), RedactedValue(name, flag->CurrentValue()));
  }
  return out;
}

}  // namespace internal

std::vector<char*> ParseWithEnv(int argc, char** argv) {
  absl::Status env = internal::ApplyEnvironment();
  if (!env.ok()) {
    std::fprintf(stderr, "%s: %s\n", argc > 0 ? argv[0] : "dangjian",
                 std::string(env.message()).c_str());
    std::exit(1);
  }
  // Parsed after the environment, so a command-line flag overrides its DANGJIAN_ twin.
  return absl::ParseCommandLine(argc, argv);
}

void LogEffectiveFlags() {
  nlohmann::json flags = nlohmann::json::object();
  for (auto& [name, value] : internal::EffectiveFlags()) flags[name] = std::move(value);
  log::Info("effective configuration", {{"flags", std::move(flags)}});
}

}  // namespace dangjian::flags
