// dj-token: mints an HS256 bearer token for operators and scripts.
//
//   dj-token --keys_file=/etc/dangjian/jwt_keys --subject=ops-zhang --roles=admin --org_scope='*'
//
// Prints the token alone on stdout (so `$(dj-token ...)` works); errors go to stderr with exit
// status 1. Every flag also reads its DANGJIAN_<NAME> environment twin (e.g. DANGJIAN_KEYS_FILE).
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/flags.h"
#include "common/usage.h"

ABSL_FLAG(std::string, keys_file, "",
          "Key file (lines kid:hs256:SECRET, kid:rs256:PEM-path, kid:es256:PEM-path)");
ABSL_FLAG(std::string, kid, "", "Key id to sign with (default: the first HS256 key in the file)");
ABSL_FLAG(std::string, subject, "", "The `sub` claim: who the token speaks for");
ABSL_FLAG(std::string, roles, "", "Comma-separated roles, e.g. admin or registry.reader");
ABSL_FLAG(std::string, org_scope, "",
          "\"*\" for the whole city, or the id of the org subtree root");
ABSL_FLAG(absl::Duration, ttl, absl::Hours(1), "Lifetime of the token, e.g. 30m or 8h");
ABSL_FLAG(std::string, issuer, "dangjian", "The `iss` claim");
ABSL_FLAG(std::string, audience, "dangjian", "The `aud` claim");

namespace {

using dangjian::auth::Algorithm;
using dangjian::auth::JwtKey;

absl::StatusOr<JwtKey> LoadSigningKey(const std::string& path, const std::string& kid) {
  if (path.empty()) return absl::InvalidArgumentError("--keys_file is required");
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read --keys_file " + path);
  std::stringstream contents;
  contents << in.rdbuf();
  absl::StatusOr<std::vector<JwtKey>> keys = dangjian::auth::ParseKeyFile(contents.str());
  if (!keys.ok()) return keys.status();
  for (const JwtKey& key : *keys) {
    if (key.algorithm != Algorithm::kHs256) continue;
    if (kid.empty() || key.kid == kid) return key;
  }
  return absl::NotFoundError(kid.empty() ? "the key file has no hs256 key"
                                         : "no hs256 key with id --kid=" + kid);
}

absl::StatusOr<std::string> Run() {
  dangjian::auth::MintOptions options;
  options.issuer = absl::GetFlag(FLAGS_issuer);
  options.audience = absl::GetFlag(FLAGS_audience);
  options.subject = absl::GetFlag(FLAGS_subject);
  options.ttl = absl::GetFlag(FLAGS_ttl);
  if (options.subject.empty()) return absl::InvalidArgumentError("--subject is required");

  for (absl::string_view role :
       absl::StrSplit(absl::GetFlag(FLAGS_roles), ',', absl::SkipWhitespace())) {
    options.roles.emplace_back(absl::StripAsciiWhitespace(role));
  }
  if (options.roles.empty()) return absl::InvalidArgumentError("--roles is required");

  // No default scope: a city-wide token must be asked for with --org_scope='*'.
  const std::string scope = absl::GetFlag(FLAGS_org_scope);
  if (scope.empty()) {
    return absl::InvalidArgumentError("--org_scope is required (\"*\" or an org id)");
  }
  if (scope != "*") {
    int64_t id = 0;
    if (!absl::SimpleAtoi(scope, &id) || id <= 0) {
      return absl::InvalidArgumentError("--org_scope must be \"*\" or a positive org id");
    }
    options.org_scope = id;
  }

  absl::StatusOr<JwtKey> key =
      LoadSigningKey(absl::GetFlag(FLAGS_keys_file), absl::GetFlag(FLAGS_kid));
  if (!key.ok()) return key.status();
  return dangjian::auth::MintHs256(*key, options, absl::Now());
}

}  // namespace

int main(int argc, char** argv) {
  dangjian::flags::ListOwnFlagsInHelp(__FILE__);
  absl::SetProgramUsageMessage(
      "Mints an HS256 bearer token.\n"
      "  dj-token --keys_file=FILE --subject=WHO --roles=R1,R2 --org_scope='*'|ORG_ID [--ttl=8h]");
  std::vector<char*> args = dangjian::flags::ParseWithEnv(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr, "dj-token: unexpected argument %s\n", args[1]);
    return 1;
  }
  absl::StatusOr<std::string> token = Run();
  if (!token.ok()) {
    std::fprintf(stderr, "dj-token: %s\n", std::string(token.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", token->c_str());
  return 0;
}
