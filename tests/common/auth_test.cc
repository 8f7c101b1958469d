// Tests for common/auth.h: token verification (every rejection at its boundary), minting, key
// files, and algorithm-confusion attacks. Tokens with unusual claims are signed with libjwt
// directly; RSA and EC keys are generated with OpenSSL in the test.
#include "common/auth.h"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dangjian::auth {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-primary";
constexpr char kOtherSecret[] = "fedcba9876543210fedcba9876543210-rotated";
constexpr char kIssuer[] = "dangjian";
constexpr char kAudience[] = "dangjian";
const absl::Duration kLeeway = absl::Seconds(30);

JwtKey HsKey(std::string kid, std::string secret) {
  return JwtKey{std::move(kid), Algorithm::kHs256, std::move(secret)};
}

VerifierOptions Options(std::vector<JwtKey> keys) {
  VerifierOptions options;
  options.keys = std::move(keys);
  options.issuer = kIssuer;
  options.audience = kAudience;
  options.leeway = kLeeway;
  return options;
}

// Signs `claims` with libjwt under `alg`, adding a `kid` header when non-empty. For tokens that
// MintHs256 cannot make (missing or odd claims, other algorithms).
std::string Sign(jwt_alg_t alg, const std::string& key, const std::string& kid,
                 const nlohmann::json& claims) {
  jwt_t* jwt = nullptr;
  EXPECT_EQ(jwt_new(&jwt), 0);
  EXPECT_EQ(jwt_set_alg(jwt, alg, reinterpret_cast<const unsigned char*>(key.data()),
                        static_cast<int>(key.size())),
            0);
  if (!kid.empty()) {
    EXPECT_EQ(jwt_add_header(jwt, "kid", kid.c_str()), 0);
  }
  EXPECT_EQ(jwt_add_grants_json(jwt, claims.dump().c_str()), 0);
  char* encoded = jwt_encode_str(jwt);
  jwt_free(jwt);
  if (encoded == nullptr) {
    ADD_FAILURE() << "jwt_encode_str failed";
    return "";
  }
  std::string token(encoded);
  std::free(encoded);
  return token;
}

std::string B64Url(const std::string& bytes) { return absl::WebSafeBase64Escape(bytes); }

class AuthTest : public ::testing::Test {
 protected:
  // Claims every check accepts, issued now and valid for an hour.
  nlohmann::json GoodClaims() const {
    const int64_t now = absl::ToUnixSeconds(clock_.Now());
    return {{"iss", kIssuer},   {"aud", kAudience},  {"sub", "zhang.san"},
            {"iat", now},       {"exp", now + 3600}, {"roles", {"registry.reader"}},
            {"org_scope", "42"}};
  }
  std::string SignHs(const nlohmann::json& claims, const std::string& kid = "k1") const {
    return Sign(JWT_ALG_HS256, kSecret, kid, claims);
  }
  absl::StatusOr<Principal> Verify(const std::string& token) {
    TokenVerifier verifier(Options({HsKey("k1", kSecret)}), clock_);
    return verifier.Verify(token);
  }
  // Expects UNAUTHENTICATED with `reason` in the message, and no secret in it.
  static void ExpectRejected(const absl::StatusOr<Principal>& result, const std::string& reason) {
    ASSERT_FALSE(result.ok()) << "accepted, want: " << reason;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated) << result.status();
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(reason));
    EXPECT_THAT(std::string(result.status().message()), Not(HasSubstr(kSecret)));
  }

  FakeClock clock_;
};

TEST_F(AuthTest, Verify_AcceptsGoodToken) {
  absl::StatusOr<Principal> p = Verify(SignHs(GoodClaims()));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "zhang.san");
  EXPECT_THAT(p->roles, ElementsAre("registry.reader"));
  EXPECT_EQ(p->org_scope, 42);
  EXPECT_FALSE(p->city_wide());
}

TEST_F(AuthTest, Verify_StarOrgScopeIsCityWide) {
  nlohmann::json claims = GoodClaims();
  claims["org_scope"] = "*";
  absl::StatusOr<Principal> p = Verify(SignHs(claims));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->city_wide());
}

TEST_F(AuthTest, Verify_ExpBoundaryUsesLeeway) {
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  const int64_t leeway = absl::ToInt64Seconds(kLeeway);
  nlohmann::json claims = GoodClaims();
  claims["iat"] = now - 7200;
  claims["exp"] = now - leeway - 1;
  ExpectRejected(Verify(SignHs(claims)), "token expired");
  claims["exp"] = now - leeway + 1;
  EXPECT_TRUE(Verify(SignHs(claims)).ok());
}

TEST_F(AuthTest, Verify_ExpiresWhenTheClockMoves) {
  const std::string token = SignHs(GoodClaims());  // exp = now + 1h
  ASSERT_TRUE(Verify(token).ok());
  clock_.Advance(absl::Hours(1) + kLeeway + absl::Seconds(1));
  ExpectRejected(Verify(token), "token expired");
}

TEST_F(AuthTest, Verify_RememberedTokenStillExpires) {
  TokenVerifier verifier(Options({HsKey("k1", kSecret)}), clock_);
  const std::string token = SignHs(GoodClaims());  // exp = now + 1h
  ASSERT_TRUE(verifier.Verify(token).ok());
  absl::StatusOr<Principal> again = verifier.Verify(token);  // answered from memory
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->subject, "zhang.san");
  EXPECT_EQ(again->org_scope, 42);
  clock_.Advance(absl::Hours(1) + kLeeway - absl::Seconds(1));
  EXPECT_TRUE(verifier.Verify(token).ok());
  clock_.Advance(absl::Seconds(2));
  ExpectRejected(verifier.Verify(token), "token expired");
  ExpectRejected(verifier.Verify(token), "token expired");
}

TEST_F(AuthTest, Verify_RememberingAGoodTokenDoesNotAdmitATamperedOne) {
  TokenVerifier verifier(Options({HsKey("k1", kSecret)}), clock_);
  const std::string token = SignHs(GoodClaims());
  ASSERT_TRUE(verifier.Verify(token).ok());
  std::string tampered = token;
  char& c = tampered[tampered.size() - 10];  // inside the signature, away from padding bits
  c = c == 'A' ? 'B' : 'A';
  ExpectRejected(verifier.Verify(tampered), "invalid signature");
}

TEST_F(AuthTest, Verify_IatBoundaryUsesLeeway) {
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  const int64_t leeway = absl::ToInt64Seconds(kLeeway);
  nlohmann::json claims = GoodClaims();
  claims["iat"] = now + leeway + 1;
  ExpectRejected(Verify(SignHs(claims)), "issued in the future");
  claims["iat"] = now + leeway - 1;
  EXPECT_TRUE(Verify(SignHs(claims)).ok());
}

TEST_F(AuthTest, Verify_RejectsMissingOrNonNumericTimes) {
  for (const char* claim : {"exp", "iat"}) {
    nlohmann::json claims = GoodClaims();
    claims.erase(claim);
    ExpectRejected(Verify(SignHs(claims)), claim);
    claims[claim] = "1700000000";
    ExpectRejected(Verify(SignHs(claims)), claim);
  }
}

TEST_F(AuthTest, Verify_RejectsNotBeforeInTheFuture) {
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  nlohmann::json claims = GoodClaims();
  claims["nbf"] = now + absl::ToInt64Seconds(kLeeway) + 1;
  ExpectRejected(Verify(SignHs(claims)), "not yet valid");
  claims["nbf"] = now;
  EXPECT_TRUE(Verify(SignHs(claims)).ok());
}

TEST_F(AuthTest, Verify_RejectsWrongIssuer) {
  nlohmann::json claims = GoodClaims();
  claims["iss"] = "someone-else";
  ExpectRejected(Verify(SignHs(claims)), "wrong issuer");
  claims.erase("iss");
  ExpectRejected(Verify(SignHs(claims)), "wrong issuer");
}

TEST_F(AuthTest, Verify_AudienceMayBeStringOrArray) {
  nlohmann::json claims = GoodClaims();
  claims["aud"] = "other-service";
  ExpectRejected(Verify(SignHs(claims)), "wrong audience");
  claims["aud"] = {"other-service", "also-other"};
  ExpectRejected(Verify(SignHs(claims)), "wrong audience");
  claims.erase("aud");
  ExpectRejected(Verify(SignHs(claims)), "wrong audience");
  claims["aud"] = {"other-service", kAudience};
  EXPECT_TRUE(Verify(SignHs(claims)).ok());
}

TEST_F(AuthTest, Verify_RejectsMissingSubject) {
  nlohmann::json claims = GoodClaims();
  claims.erase("sub");
  ExpectRejected(Verify(SignHs(claims)), "missing subject");
  claims["sub"] = "";
  ExpectRejected(Verify(SignHs(claims)), "missing subject");
  claims["sub"] = 17;
  ExpectRejected(Verify(SignHs(claims)), "missing subject");
}

TEST_F(AuthTest, Verify_RolesMustBeArrayOfStrings) {
  nlohmann::json claims = GoodClaims();
  claims.erase("roles");
  ExpectRejected(Verify(SignHs(claims)), "missing roles");
  claims["roles"] = "admin";
  ExpectRejected(Verify(SignHs(claims)), "invalid roles");
  claims["roles"] = {"admin", 3};
  ExpectRejected(Verify(SignHs(claims)), "invalid roles");
  claims["roles"] = nlohmann::json::array();
  absl::StatusOr<Principal> p = Verify(SignHs(claims));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->roles.empty());
}

TEST_F(AuthTest, Verify_OrgScopeMustBeStarOrPositiveId) {
  nlohmann::json claims = GoodClaims();
  claims.erase("org_scope");
  ExpectRejected(Verify(SignHs(claims)), "missing org_scope");
  for (const char* bad : {"", "0", "-5", "+5", "12x", " 12", "abc", "**", "99999999999999999999"}) {
    claims["org_scope"] = bad;
    ExpectRejected(Verify(SignHs(claims)), "invalid org_scope");
  }
  claims["org_scope"] = nullptr;
  ExpectRejected(Verify(SignHs(claims)), "invalid org_scope");
  claims["org_scope"] = "9007";
  absl::StatusOr<Principal> p = Verify(SignHs(claims));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->org_scope, 9007);
}

TEST_F(AuthTest, Verify_RejectsUnknownKeyId) {
  ExpectRejected(Verify(SignHs(GoodClaims(), "k2")), "unknown key id");
  ExpectRejected(Verify(SignHs(GoodClaims(), "")), "unknown key id");
}

TEST_F(AuthTest, Verify_EmptyKidMatchesTokenWithoutKid) {
  TokenVerifier verifier(Options({HsKey("", kSecret)}), clock_);
  EXPECT_TRUE(verifier.Verify(SignHs(GoodClaims(), "")).ok());
  ExpectRejected(verifier.Verify(SignHs(GoodClaims(), "k1")), "unknown key id");
}

TEST_F(AuthTest, Verify_RejectsBadSignature) {
  ExpectRejected(Verify(Sign(JWT_ALG_HS256, kOtherSecret, "k1", GoodClaims())),
                 "invalid signature");
  // Signature segment removed.
  std::string token = SignHs(GoodClaims());
  ExpectRejected(Verify(token.substr(0, token.rfind('.') + 1)), "invalid signature");
}

TEST_F(AuthTest, Verify_RejectsTamperedPayload) {
  const std::string token = SignHs(GoodClaims());
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  ASSERT_EQ(parts.size(), 3u);
  nlohmann::json claims = GoodClaims();
  claims["roles"] = {"admin"};
  claims["org_scope"] = "*";
  const std::string forged = absl::StrCat(parts[0], ".", B64Url(claims.dump()), ".", parts[2]);
  ExpectRejected(Verify(forged), "invalid signature");
}

TEST_F(AuthTest, Verify_RejectsMalformedTokens) {
  const std::string good = SignHs(GoodClaims());
  std::vector<std::string> parts = absl::StrSplit(good, '.');
  ExpectRejected(Verify(""), "missing token");
  ExpectRejected(Verify("abc"), "malformed token");
  ExpectRejected(Verify("a.b"), "malformed token");
  ExpectRejected(Verify(good + ".x.y"), "malformed token");
  ExpectRejected(Verify("!!!." + parts[1] + "." + parts[2]), "malformed token");
  ExpectRejected(Verify(B64Url("[1,2]") + "." + parts[1] + "." + parts[2]), "malformed token");
  ExpectRejected(Verify(B64Url(R"({"kid":"k1"})") + "." + parts[1] + "." + parts[2]),
                 "malformed token");
  ExpectRejected(Verify(parts[0] + ".%%%." + parts[2]), "malformed token");
  ExpectRejected(Verify(parts[0] + "." + B64Url("not json") + "." + parts[2]), "malformed token");
  ExpectRejected(Verify(std::string(10000, 'a')), "malformed token");
}

TEST_F(AuthTest, Verify_RejectsAlgNone) {
  // Built by hand: libjwt would refuse to help, which is the point.
  const std::string payload = B64Url(GoodClaims().dump());
  for (const char* header : {R"({"alg":"none","typ":"JWT","kid":"k1"})",
                             R"({"alg":"None","kid":"k1"})", R"({"alg":"none"})"}) {
    ExpectRejected(Verify(B64Url(header) + "." + payload + "."), "algorithm none");
    ExpectRejected(Verify(B64Url(header) + "." + payload + ".c2ln"), "algorithm none");
  }
}

TEST_F(AuthTest, Verify_RejectsOtherHmacAlgorithmWithTheSameKey) {
  for (jwt_alg_t alg : {JWT_ALG_HS384, JWT_ALG_HS512}) {
    ExpectRejected(Verify(Sign(alg, kSecret, "k1", GoodClaims())), "does not match");
  }
}

TEST_F(AuthTest, Verify_RejectsForeignTokenType) {
  const std::string token = SignHs(GoodClaims());
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  const std::string header = B64Url(R"({"alg":"HS256","typ":"JWE","kid":"k1"})");
  ExpectRejected(Verify(header + "." + parts[1] + "." + parts[2]), "unsupported token type");
}

TEST_F(AuthTest, Verify_AcceptsBothKeysDuringRotation) {
  TokenVerifier verifier(Options({HsKey("old", kSecret), HsKey("new", kOtherSecret)}), clock_);
  EXPECT_TRUE(verifier.Verify(Sign(JWT_ALG_HS256, kSecret, "old", GoodClaims())).ok());
  EXPECT_TRUE(verifier.Verify(Sign(JWT_ALG_HS256, kOtherSecret, "new", GoodClaims())).ok());
  // Each kid only verifies with its own key.
  ExpectRejected(verifier.Verify(Sign(JWT_ALG_HS256, kSecret, "new", GoodClaims())),
                 "invalid signature");
  // After the rotation ends, the old key's tokens are refused.
  TokenVerifier rotated(Options({HsKey("new", kOtherSecret)}), clock_);
  ExpectRejected(rotated.Verify(Sign(JWT_ALG_HS256, kSecret, "old", GoodClaims())),
                 "unknown key id");
}

// --- Minting ---

TEST_F(AuthTest, MintHs256_RoundTripsThroughVerify) {
  MintOptions mint;
  mint.issuer = kIssuer;
  mint.audience = kAudience;
  mint.subject = "ops.li";
  mint.roles = {"registry.writer", "audit.reader"};
  mint.org_scope = 7;
  mint.ttl = absl::Hours(8);
  absl::StatusOr<std::string> token = MintHs256(HsKey("k1", kSecret), mint, clock_.Now());
  ASSERT_TRUE(token.ok()) << token.status();
  absl::StatusOr<Principal> p = Verify(*token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "ops.li");
  EXPECT_THAT(p->roles, ElementsAre("registry.writer", "audit.reader"));
  EXPECT_EQ(p->org_scope, 7);

  // The header carries the kid, and the claims are what MintOptions asked for.
  jwt_t* jwt = nullptr;
  ASSERT_EQ(jwt_decode(&jwt, token->c_str(), reinterpret_cast<const unsigned char*>(kSecret),
                       static_cast<int>(sizeof(kSecret) - 1)),
            0);
  EXPECT_STREQ(jwt_get_header(jwt, "kid"), "k1");
  EXPECT_EQ(jwt_get_alg(jwt), JWT_ALG_HS256);
  char* claims_text = jwt_get_grants_json(jwt, nullptr);
  nlohmann::json claims = nlohmann::json::parse(claims_text);
  std::free(claims_text);
  jwt_free(jwt);
  const int64_t now = absl::ToUnixSeconds(clock_.Now());
  EXPECT_EQ(claims["iss"], kIssuer);
  EXPECT_EQ(claims["aud"], kAudience);
  EXPECT_EQ(claims["iat"], now);
  EXPECT_EQ(claims["exp"], now + 8 * 3600);
  EXPECT_EQ(claims["org_scope"], "7");
  EXPECT_EQ(claims["roles"], nlohmann::json({"registry.writer", "audit.reader"}));

  // Eight hours and the leeway later, it has expired.
  clock_.Advance(absl::Hours(8) + kLeeway + absl::Seconds(1));
  ExpectRejected(Verify(*token), "token expired");
}

TEST_F(AuthTest, MintHs256_CityWideScopeIsStar) {
  MintOptions mint;
  mint.issuer = kIssuer;
  mint.audience = kAudience;
  mint.subject = "ops.li";
  mint.roles = {"admin"};
  absl::StatusOr<std::string> token = MintHs256(HsKey("k1", kSecret), mint, clock_.Now());
  ASSERT_TRUE(token.ok()) << token.status();
  absl::StatusOr<Principal> p = Verify(*token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->city_wide());
}

TEST_F(AuthTest, MintHs256_RejectsBadOptions) {
  MintOptions mint;
  mint.issuer = kIssuer;
  mint.audience = kAudience;
  mint.subject = "ops.li";
  mint.roles = {"admin"};
  EXPECT_EQ(MintHs256(JwtKey{"k1", Algorithm::kRs256, "pem"}, mint, clock_.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(MintHs256(HsKey("k1", ""), mint, clock_.Now()).ok());
  MintOptions no_subject = mint;
  no_subject.subject.clear();
  EXPECT_FALSE(MintHs256(HsKey("k1", kSecret), no_subject, clock_.Now()).ok());
  MintOptions zero_ttl = mint;
  zero_ttl.ttl = absl::ZeroDuration();
  EXPECT_FALSE(MintHs256(HsKey("k1", kSecret), zero_ttl, clock_.Now()).ok());
  MintOptions bad_scope = mint;
  bad_scope.org_scope = 0;
  EXPECT_FALSE(MintHs256(HsKey("k1", kSecret), bad_scope, clock_.Now()).ok());
}

// --- Principal ---

TEST(PrincipalTest, HasRole_TrueForOwnRoleOrAdmin) {
  Principal reader{"u", {"registry.reader"}, 1};
  EXPECT_TRUE(reader.HasRole("registry.reader"));
  EXPECT_FALSE(reader.HasRole("registry.writer"));
  EXPECT_FALSE(reader.HasRole(kAdminRole));
  Principal admin{"u", {"admin"}, std::nullopt};
  EXPECT_TRUE(admin.HasRole("registry.writer"));
  EXPECT_TRUE(admin.HasRole(kAdminRole));
  Principal nobody{"u", {}, std::nullopt};
  EXPECT_FALSE(nobody.HasRole("registry.reader"));
}

// --- Asymmetric keys, made with OpenSSL here ---

struct KeyPair {
  std::string private_pem;
  std::string public_pem;
};

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
  return std::string(data, static_cast<size_t>(len));
}

KeyPair GenerateKeyPair(int type) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(type, nullptr), &EVP_PKEY_CTX_free);
  EXPECT_NE(ctx, nullptr);
  EXPECT_EQ(EVP_PKEY_keygen_init(ctx.get()), 1);
  if (type == EVP_PKEY_RSA) {
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), 2048), 1);
  } else {
    EXPECT_EQ(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1), 1);
  }
  EVP_PKEY* raw = nullptr;
  EXPECT_EQ(EVP_PKEY_keygen(ctx.get(), &raw), 1);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(raw, &EVP_PKEY_free);

  KeyPair pair;
  std::unique_ptr<BIO, decltype(&BIO_free)> priv(BIO_new(BIO_s_mem()), &BIO_free);
  EXPECT_EQ(PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr),
            1);
  pair.private_pem = BioContents(priv.get());
  std::unique_ptr<BIO, decltype(&BIO_free)> pub(BIO_new(BIO_s_mem()), &BIO_free);
  EXPECT_EQ(PEM_write_bio_PUBKEY(pub.get(), key.get()), 1);
  pair.public_pem = BioContents(pub.get());
  return pair;
}

// A file in the test's temporary folder, removed when this goes out of scope.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    std::string pattern = ::testing::TempDir() + "dj_auth_test_XXXXXX";
    int fd = mkstemp(pattern.data());
    EXPECT_GE(fd, 0);
    if (fd >= 0) close(fd);
    path_ = pattern;
    std::ofstream(path_, std::ios::binary) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST_F(AuthTest, Verify_Rs256TokenWithPublicKeyFromKeyFile) {
  const KeyPair pair = GenerateKeyPair(EVP_PKEY_RSA);
  TempFile pem(pair.public_pem);
  absl::StatusOr<std::vector<JwtKey>> keys = ParseKeyFile(absl::StrCat("idp1:rs256:", pem.path()));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].algorithm, Algorithm::kRs256);
  TokenVerifier verifier(Options(*keys), clock_);

  const std::string token = Sign(JWT_ALG_RS256, pair.private_pem, "idp1", GoodClaims());
  absl::StatusOr<Principal> p = verifier.Verify(token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject, "zhang.san");

  // Another key pair's signature under the same kid fails.
  const KeyPair other = GenerateKeyPair(EVP_PKEY_RSA);
  ExpectRejected(verifier.Verify(Sign(JWT_ALG_RS256, other.private_pem, "idp1", GoodClaims())),
                 "invalid signature");

  // Algorithm confusion, one way: the same RS256 token against an HS256 key with that kid.
  TokenVerifier hs_only(Options({HsKey("idp1", kSecret)}), clock_);
  ExpectRejected(hs_only.Verify(token), "does not match");

  // ...and the classic way: HS256 "signed" with the public PEM as the HMAC secret, sent to a
  // verifier that holds that PEM as an RS256 key.
  ExpectRejected(verifier.Verify(Sign(JWT_ALG_HS256, pair.public_pem, "idp1", GoodClaims())),
                 "does not match");
}

TEST_F(AuthTest, Verify_Es256TokenWithPublicKeyFromKeyFile) {
  const KeyPair pair = GenerateKeyPair(EVP_PKEY_EC);
  TempFile pem(pair.public_pem);
  absl::StatusOr<std::vector<JwtKey>> keys = ParseKeyFile(absl::StrCat("ec1:es256:", pem.path()));
  ASSERT_TRUE(keys.ok()) << keys.status();
  TokenVerifier verifier(Options(*keys), clock_);
  absl::StatusOr<Principal> p =
      verifier.Verify(Sign(JWT_ALG_ES256, pair.private_pem, "ec1", GoodClaims()));
  ASSERT_TRUE(p.ok()) << p.status();
  const KeyPair other = GenerateKeyPair(EVP_PKEY_EC);
  ExpectRejected(verifier.Verify(Sign(JWT_ALG_ES256, other.private_pem, "ec1", GoodClaims())),
                 "invalid signature");
}

// --- Key files ---

TEST(ParseKeyFileTest, ParsesHmacKeysSkippingCommentsAndBlankLines) {
  absl::StatusOr<std::vector<JwtKey>> keys = ParseKeyFile(
      "# rotation 2024-05\n"
      "\n"
      "old:hs256:0123456789abcdef0123456789abcdef\n"
      "  new:HS256:fedcba9876543210fedcba9876543210:with:colons  \r\n");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].kid, "old");
  EXPECT_EQ((*keys)[0].algorithm, Algorithm::kHs256);
  EXPECT_EQ((*keys)[0].material, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ((*keys)[1].kid, "new");
  EXPECT_EQ((*keys)[1].material, "fedcba9876543210fedcba9876543210:with:colons");
}

TEST(ParseKeyFileTest, ErrorsNameTheLineAndNeverTheSecret) {
  const std::string secret = "0123456789abcdef0123456789abcdef";
  struct Case {
    std::string contents;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"# ok\nk1:hs256:" + secret + "\nbroken line " + secret + "\n", "line 3"},
      {"k1:hs512:" + secret, "line 1: algorithm must be"},
      {"k1:hs256:short", "line 1: hs256 secret must be at least 32 bytes"},
      {"k1:hs256:" + secret + "\nk1:hs256:" + secret + "x", "line 2: duplicate key id"},
      {"\n\nk1:rs256:/nonexistent/dj.pem", "line 3: cannot read PEM file /nonexistent/dj.pem"},
      {"# nothing\n\n", "no keys"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<JwtKey>> keys = ParseKeyFile(c.contents);
    ASSERT_FALSE(keys.ok()) << c.contents;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(keys.status().message()), HasSubstr(c.want));
    EXPECT_THAT(std::string(keys.status().message()), Not(HasSubstr(secret)));
  }
}

TEST(ParseKeyFileTest, RejectsPemOfTheWrongKind) {
  const KeyPair rsa = GenerateKeyPair(EVP_PKEY_RSA);
  TempFile rsa_pem(rsa.public_pem);
  absl::StatusOr<std::vector<JwtKey>> keys = ParseKeyFile("ec1:es256:" + rsa_pem.path());
  ASSERT_FALSE(keys.ok());
  EXPECT_THAT(std::string(keys.status().message()), HasSubstr("line 1"));
  TempFile junk("not a key");
  keys = ParseKeyFile("rs1:rs256:" + junk.path());
  ASSERT_FALSE(keys.ok());
  EXPECT_THAT(std::string(keys.status().message()), HasSubstr("not a PEM public key"));
}

}  // namespace
}  // namespace dangjian::auth
