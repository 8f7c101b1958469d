#include "common/auth.h"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace dangjian::auth {
namespace {

// A bearer token longer than this is refused before any parsing: no legitimate token of ours comes
// near it, and it bounds the work an unauthenticated caller can make us do.
constexpr size_t kMaxTokenBytes = 8 * 1024;

// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
constexpr size_t kMinHs256SecretBytes = 32;

struct JwtDeleter {
  void operator()(jwt_t* jwt) const { jwt_free(jwt); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtDeleter>;

// libjwt returns malloc'd strings.
struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
using CString = std::unique_ptr<char, FreeDeleter>;

absl::Status Unauthenticated(absl::string_view reason) {
  return absl::UnauthenticatedError(reason);
}

// The JOSE `alg` value for a key's algorithm.
absl::string_view AlgorithmName(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kHs256:
      return "HS256";
    case Algorithm::kRs256:
      return "RS256";
    case Algorithm::kEs256:
      return "ES256";
  }
  return "";
}

jwt_alg_t LibjwtAlgorithm(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kHs256:
      return JWT_ALG_HS256;
    case Algorithm::kRs256:
      return JWT_ALG_RS256;
    case Algorithm::kEs256:
      return JWT_ALG_ES256;
  }
  return JWT_ALG_INVAL;
}

// Base64url-decodes one token segment and parses it as a JSON object; nullopt if it is not one.
// Only the header is read this way before the signature check (to choose the key); the claims we
// act on come from libjwt after it has verified the signature.
std::optional<nlohmann::json> DecodeSegment(absl::string_view segment) {
  if (segment.empty() || absl::StrContains(segment, '=')) return std::nullopt;
  std::string bytes;
  if (!absl::WebSafeBase64Unescape(segment, &bytes)) return std::nullopt;
  nlohmann::json json = nlohmann::json::parse(bytes, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  return json;
}

// A NumericDate claim (RFC 7519 §2) as a time; nullopt if absent or not a number.
std::optional<absl::Time> NumericDate(const nlohmann::json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number()) return std::nullopt;
  return absl::UnixEpoch() + absl::Seconds(it->get<double>());
}

bool AudienceMatches(const nlohmann::json& aud, const std::string& expected) {
  if (aud.is_string()) return aud.get<std::string>() == expected;
  if (!aud.is_array()) return false;
  return std::any_of(aud.begin(), aud.end(), [&](const nlohmann::json& a) {
    return a.is_string() && a.get<std::string>() == expected;
  });
}

// "*" -> nullopt (whole city); a positive decimal id -> that id. Also takes a positive JSON
// integer, which some identity providers emit for numeric claims.
absl::StatusOr<std::optional<int64_t>> ParseOrgScope(const nlohmann::json& value) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text == "*") return std::optional<int64_t>();
    int64_t id = 0;
    if (!text.empty() && text.size() <= 19 &&
        std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isdigit(c); }) &&
        absl::SimpleAtoi(text, &id) && id > 0) {
      return std::optional<int64_t>(id);
    }
  } else if (value.is_number_integer()) {
    if (value.is_number_unsigned()) {
      uint64_t id = value.get<uint64_t>();
      if (id > 0 && id <= static_cast<uint64_t>(INT64_MAX)) {
        return std::optional<int64_t>(static_cast<int64_t>(id));
      }
    } else if (value.get<int64_t>() > 0) {
      return std::optional<int64_t>(value.get<int64_t>());
    }
  }
  return Unauthenticated("invalid org_scope: want \"*\" or a positive org id");
}

// Checks that `pem` holds a public key of the algorithm's type, so a wrong file fails at start
// rather than on every request.
absl::Status CheckPublicKeyPem(const std::string& pem, Algorithm algorithm) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (bio == nullptr) return absl::ResourceExhaustedError("out of memory reading PEM");
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  if (key == nullptr) return absl::InvalidArgumentError("not a PEM public key");
  const int want = algorithm == Algorithm::kRs256 ? EVP_PKEY_RSA : EVP_PKEY_EC;
  if (EVP_PKEY_base_id(key.get()) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("the PEM key does not fit ", AlgorithmName(algorithm)));
  }
  return absl::OkStatus();
}

}  // namespace

bool Principal::HasRole(absl::string_view role) const {
  return std::any_of(roles.begin(), roles.end(),
                     [&](const std::string& r) { return r == role || r == kAdminRole; });
}

TokenVerifier::TokenVerifier(VerifierOptions options, Clock& clock)
    : options_(std::move(options)), clock_(clock) {}

absl::StatusOr<Principal> TokenVerifier::Verify(absl::string_view token) const {
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = verified_.find(token);
    if (it != verified_.end()) {
      if (now <= it->second.expires + options_.leeway) return it->second.principal;
      verified_.erase(it);
      return Unauthenticated("token expired");
    }
  }
  absl::StatusOr<Verified> verified = VerifyUncached(token);
  if (!verified.ok()) return verified.status();
  absl::MutexLock lock(&mu_);
  // Full: start over rather than track recency; the hot tokens come back within a call each.
  if (verified_.size() >= kMaxCachedTokens) verified_.clear();
  verified_.emplace(std::string(token), *verified);
  return verified->principal;
}

absl::StatusOr<TokenVerifier::Verified> TokenVerifier::VerifyUncached(
    absl::string_view token) const {
  if (token.empty()) return Unauthenticated("missing token");
  if (token.size() > kMaxTokenBytes) return Unauthenticated("malformed token: too long");
  // A JWS in compact form has exactly three segments; five would be a JWE, which we do not take.
  std::vector<absl::string_view> segments = absl::StrSplit(token, '.');
  if (segments.size() != 3) return Unauthenticated("malformed token: want three segments");

  std::optional<nlohmann::json> header = DecodeSegment(segments[0]);
  if (!header) return Unauthenticated("malformed token: header is not base64url JSON");
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) {
    return Unauthenticated("malformed token: header has no alg");
  }
  const std::string alg = alg_it->get<std::string>();
  if (absl::EqualsIgnoreCase(alg, "none")) return Unauthenticated("algorithm none is not allowed");
  auto typ_it = header->find("typ");
  if (typ_it != header->end() &&
      !(typ_it->is_string() && absl::EqualsIgnoreCase(typ_it->get<std::string>(), "JWT"))) {
    return Unauthenticated("unsupported token type");
  }
  std::string kid;
  auto kid_it = header->find("kid");
  if (kid_it != header->end()) {
    if (!kid_it->is_string()) return Unauthenticated("malformed token: kid is not a string");
    kid = kid_it->get<std::string>();
  }

  auto key_it = std::find_if(options_.keys.begin(), options_.keys.end(),
                             [&](const JwtKey& k) { return k.kid == kid; });
  if (key_it == options_.keys.end()) return Unauthenticated("unknown key id");
  const JwtKey& key = *key_it;
  // The key decides the algorithm, never the token: this is what stops algorithm confusion
  // (an RS256 public key used as an HMAC secret, or an HS256 secret read as a PEM).
  if (alg != AlgorithmName(key.algorithm)) {
    return Unauthenticated(absl::StrCat("algorithm ", alg.size() <= 16 ? alg : alg.substr(0, 16),
                                        " does not match the key's algorithm ",
                                        AlgorithmName(key.algorithm)));
  }
  if (!DecodeSegment(segments[1])) {
    return Unauthenticated("malformed token: payload is not base64url JSON");
  }
  if (segments[2].empty()) return Unauthenticated("invalid signature");
  if (key.material.empty()) return Unauthenticated("invalid signature");

  // The signature check is libjwt's.
  jwt_t* raw = nullptr;
  const std::string token_text(token);
  int rc = jwt_decode(&raw, token_text.c_str(),
                      reinterpret_cast<const unsigned char*>(key.material.data()),
                      static_cast<int>(key.material.size()));
  JwtPtr jwt(raw);
  if (rc != 0 || jwt == nullptr) return Unauthenticated("invalid signature");
  // Belt and braces: libjwt parsed the header itself; it must agree with what chose the key.
  if (jwt_get_alg(jwt.get()) != LibjwtAlgorithm(key.algorithm)) {
    return Unauthenticated("algorithm does not match the key's algorithm");
  }
  const char* decoded_kid = jwt_get_header(jwt.get(), "kid");
  if ((decoded_kid == nullptr ? std::string() : std::string(decoded_kid)) != kid) {
    return Unauthenticated("unknown key id");
  }

  CString claims_text(jwt_get_grants_json(jwt.get(), nullptr));
  if (claims_text == nullptr) return Unauthenticated("malformed token: no claims");
  nlohmann::json claims = nlohmann::json::parse(claims_text.get(), nullptr, false);
  if (claims.is_discarded() || !claims.is_object()) {
    return Unauthenticated("malformed token: claims are not a JSON object");
  }

  auto iss = claims.find("iss");
  if (iss == claims.end() || !iss->is_string() || iss->get<std::string>() != options_.issuer) {
    return Unauthenticated("wrong issuer");
  }
  auto aud = claims.find("aud");
  if (aud == claims.end() || !AudienceMatches(*aud, options_.audience)) {
    return Unauthenticated("wrong audience");
  }
  auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty()) {
    return Unauthenticated("missing subject");
  }

  const absl::Time now = clock_.Now();
  std::optional<absl::Time> exp = NumericDate(claims, "exp");
  if (!exp) return Unauthenticated("missing or invalid exp");
  if (now > *exp + options_.leeway) return Unauthenticated("token expired");
  std::optional<absl::Time> iat = NumericDate(claims, "iat");
  if (!iat) return Unauthenticated("missing or invalid iat");
  if (*iat > now + options_.leeway) return Unauthenticated("token issued in the future");
  if (claims.contains("nbf")) {
    std::optional<absl::Time> nbf = NumericDate(claims, "nbf");
    if (!nbf) return Unauthenticated("invalid nbf");
    if (*nbf > now + options_.leeway) return Unauthenticated("token not yet valid");
  }

  Principal principal;
  principal.subject = sub->get<std::string>();

  // roles read through libjwt's own accessor for that claim.
  CString roles_text(jwt_get_grants_json(jwt.get(), "roles"));
  if (roles_text == nullptr) return Unauthenticated("missing roles");
  nlohmann::json roles = nlohmann::json::parse(roles_text.get(), nullptr, false);
  if (roles.is_discarded() || !roles.is_array()) {
    return Unauthenticated("invalid roles: want an array of strings");
  }
  for (const nlohmann::json& role : roles) {
    if (!role.is_string() || role.get_ref<const std::string&>().empty()) {
      return Unauthenticated("invalid roles: want an array of strings");
    }
    principal.roles.push_back(role.get<std::string>());
  }

  auto scope = claims.find("org_scope");
  if (scope == claims.end()) return Unauthenticated("missing org_scope");
  absl::StatusOr<std::optional<int64_t>> org_scope = ParseOrgScope(*scope);
  if (!org_scope.ok()) return org_scope.status();
  principal.org_scope = *org_scope;
  return Verified{std::move(principal), *exp};
}

absl::StatusOr<std::string> MintHs256(const JwtKey& key, const MintOptions& options,
                                      absl::Time now) {
  if (key.algorithm != Algorithm::kHs256) {
    return absl::InvalidArgumentError("MintHs256 needs an HS256 key");
  }
  if (key.material.empty()) return absl::InvalidArgumentError("the HS256 key is empty");
  if (options.issuer.empty()) return absl::InvalidArgumentError("issuer is empty");
  if (options.audience.empty()) return absl::InvalidArgumentError("audience is empty");
  if (options.subject.empty()) return absl::InvalidArgumentError("subject is empty");
  if (options.ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("ttl must be > 0");
  if (options.org_scope.has_value() && *options.org_scope <= 0) {
    return absl::InvalidArgumentError("org_scope must be a positive org id");
  }
  for (const std::string& role : options.roles) {
    if (role.empty()) return absl::InvalidArgumentError("a role is empty");
  }

  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0 || raw == nullptr) return absl::ResourceExhaustedError("jwt_new failed");
  JwtPtr jwt(raw);
  if (jwt_set_alg(jwt.get(), JWT_ALG_HS256,
                  reinterpret_cast<const unsigned char*>(key.material.data()),
                  static_cast<int>(key.material.size())) != 0) {
    return absl::InternalError("jwt_set_alg failed");
  }
  if (!key.kid.empty() && jwt_add_header(jwt.get(), "kid", key.kid.c_str()) != 0) {
    return absl::InternalError("cannot add kid header");
  }
  const int64_t iat = absl::ToUnixSeconds(now);
  const int64_t exp = absl::ToUnixSeconds(now + options.ttl);
  nlohmann::json grants = {
      {"roles", options.roles},
      {"org_scope",
       options.org_scope.has_value() ? std::to_string(*options.org_scope) : std::string("*")},
  };
  if (jwt_add_grant(jwt.get(), "iss", options.issuer.c_str()) != 0 ||
      jwt_add_grant(jwt.get(), "aud", options.audience.c_str()) != 0 ||
      jwt_add_grant(jwt.get(), "sub", options.subject.c_str()) != 0 ||
      jwt_add_grant_int(jwt.get(), "iat", static_cast<long>(iat)) != 0 ||  // NOLINT(runtime/int)
      jwt_add_grant_int(jwt.get(), "exp", static_cast<long>(exp)) != 0 ||  // NOLINT(runtime/int)
      jwt_add_grants_json(jwt.get(), grants.dump().c_str()) != 0) {
    return absl::InternalError("cannot add claims");
  }
  CString encoded(jwt_encode_str(jwt.get()));
  if (encoded == nullptr) return absl::InternalError("jwt_encode_str failed");
  return std::string(encoded.get());
}

absl::StatusOr<std::vector<JwtKey>> ParseKeyFile(absl::string_view contents) {
  std::vector<JwtKey> keys;
  absl::flat_hash_set<std::string> kids;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    // Messages name the line, never its text: the line may hold a secret.
    auto error = [line_number](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("key file line ", line_number, ": ", what));
    };
    // Only the first two colons separate fields: a secret or a path may contain more.
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) return error("want kid:alg:material");
    JwtKey key;
    key.kid = std::string(fields[0]);
    const std::string alg = absl::AsciiStrToLower(fields[1]);
    if (alg == "hs256") {
      key.algorithm = Algorithm::kHs256;
    } else if (alg == "rs256") {
      key.algorithm = Algorithm::kRs256;
    } else if (alg == "es256") {
      key.algorithm = Algorithm::kEs256;
    } else {
      return error("algorithm must be hs256, rs256 or es256");
    }
    if (!kids.insert(key.kid).second) return error("duplicate key id");
    if (key.algorithm == Algorithm::kHs256) {
      if (fields[2].size() < kMinHs256SecretBytes) {
        return error(
            absl::StrCat("hs256 secret must be at least ", kMinHs256SecretBytes, " bytes"));
      }
      key.material = std::string(fields[2]);
    } else {
      const std::string path(fields[2]);
      std::ifstream in(path, std::ios::binary);
      if (!in) return error(absl::StrCat("cannot read PEM file ", path));
      std::stringstream pem;
      pem << in.rdbuf();
      key.material = pem.str();
      absl::Status pem_ok = CheckPublicKeyPem(key.material, key.algorithm);
      if (!pem_ok.ok()) return error(absl::StrCat(path, ": ", pem_ok.message()));
    }
    keys.push_back(std::move(key));
  }
  if (keys.empty()) return absl::InvalidArgumentError("key file holds no keys");
  return keys;
}

}  // namespace dangjian::auth
