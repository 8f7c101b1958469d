// Authentication and authorisation of callers.
//
// Callers send `authorization: Bearer <JWT>` (RFC 7519). Tokens are verified with libjwt:
// HS256 against our shared keys, or RS256/ES256 against an identity provider's public keys,
// chosen by the token's `kid` header; `alg: none` and any algorithm other than the key's are
// rejected. Required claims: iss, aud, sub, iat, exp, roles (array of strings) and org_scope
// ("*" for the whole city, or the decimal id of the org whose subtree the caller may see).
// Every failure is UNAUTHENTICATED with a reason that says what, never the key.
// Thread-safe after construction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace dangjian::auth {

// The verified caller.
struct Principal {
  std::string subject;
  std::vector<std::string> roles;
  // The org whose subtree the caller may see; nullopt means the whole city.
  std::optional<int64_t> org_scope;

  bool HasRole(absl::string_view role) const;
  bool city_wide() const { return !org_scope.has_value(); }
};

// The role that grants everything, in every service.
inline constexpr absl::string_view kAdminRole = "admin";

enum class Algorithm { kHs256, kRs256, kEs256 };

struct JwtKey {
  std::string
      kid;  // key id, matched against the token header's `kid` (empty matches a token without one)
  Algorithm algorithm = Algorithm::kHs256;
  std::string material;  // the HMAC secret, or a PEM public key (RS256/ES256); never logged
};

struct VerifierOptions {
  std::vector<JwtKey> keys;                   // several during a rotation
  std::string issuer;                         // required `iss`
  std::string audience;                       // required `aud`
  absl::Duration leeway = absl::Seconds(30);  // clock skew tolerated on exp/iat
};

// Verifies tokens. Callers send the same token with every call until it expires, so a verified
// token is remembered (up to kMaxCachedTokens of them) with its principal and expiry: a repeat
// costs a hash lookup instead of a signature check and two JSON parses. A remembered token is
// still refused once expired.
class TokenVerifier {
 public:
  static constexpr size_t kMaxCachedTokens = 10000;

  TokenVerifier(VerifierOptions options, Clock& clock = RealClock::Get());
  // `token` is the JWT itself (without "Bearer ").
  absl::StatusOr<Principal> Verify(absl::string_view token) const;

 private:
  struct Verified {
    Principal principal;
    absl::Time expires;
  };
  absl::StatusOr<Verified> VerifyUncached(absl::string_view token) const;

  VerifierOptions options_;
  Clock& clock_;
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<std::string, Verified> verified_ ABSL_GUARDED_BY(mu_);
};

struct MintOptions {
  std::string issuer;
  std::string audience;
  std::string subject;
  std::vector<std::string> roles;
  std::optional<int64_t> org_scope;  // nullopt: "*"
  absl::Duration ttl = absl::Hours(1);
};

// Signs a token with an HS256 key (for operators' CLI and tests).
absl::StatusOr<std::string> MintHs256(const JwtKey& key, const MintOptions& options,
                                      absl::Time now);

// Parses a key file: one key per line, "kid:hs256:SECRET" for HMAC keys, or
// "kid:rs256:/path/to/public.pem" / "kid:es256:/path/to/public.pem". Blank lines and lines
// starting with '#' are skipped.
absl::StatusOr<std::vector<JwtKey>> ParseKeyFile(absl::string_view contents);

}  // namespace dangjian::auth
