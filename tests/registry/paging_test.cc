// Pure unit tests of ListOrgs' page tokens (services/registry/domain/paging.h): a token carries the
// last path of a page, is bound to the fingerprint of the filters it was issued for and sealed by
// the service's key; anything else is INVALID_ARGUMENT on field page_token. Fingerprint64 is
// pinned to fixed values, since tokens outlive a deploy and a changed hash would invalidate every
// token in flight.
#include "services/registry/domain/paging.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "common/status.h"
#include "gtest/gtest.h"

namespace dangjian::registry {
namespace {

// Expects `result` to be INVALID_ARGUMENT with exactly one violation, on field page_token.
void ExpectPageTokenError(const absl::StatusOr<std::string>& result) {
  ASSERT_FALSE(result.ok()) << "decoded to '" << *result << "'";
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  const auto violations = GetFieldViolations(result.status());
  ASSERT_EQ(violations.size(), 1u) << result.status();
  EXPECT_EQ(violations[0].field, "page_token");
}

const PageTokenSealer& Sealer() {
  static const PageTokenSealer* const sealer =
      new PageTokenSealer(*PageTokenSealer::Create({{1, std::string(kPageTokenSecretBytes, 'k')}}));
  return *sealer;
}

std::string Encode(uint64_t fp, absl::string_view path) {
  return EncodePageToken(Sealer(), fp, path);
}
absl::StatusOr<std::string> Decode(absl::string_view token, uint64_t fp) {
  return DecodePageToken(Sealer(), token, fp);
}

// A token sealed by the service's key with the given payload (what a bug could write).
std::string SealedPayload(absl::string_view payload) {
  return Sealer().Seal(kListOrgsTokenPurpose, payload);
}

TEST(PageToken, RoundTripsThePath) {
  const uint64_t fp = Fingerprint64("1|3||1|0");
  const absl::StatusOr<std::string> path = Decode(Encode(fp, "/1/5/23/"), fp);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, "/1/5/23/");
}

TEST(PageToken, RoundTripsExtremeFingerprintsAndLongPaths) {
  const std::string long_path = "/1/22/333/4444/55555/666666/7777777/88888888/999999999/";
  for (uint64_t fp : {uint64_t{0}, uint64_t{1}, std::numeric_limits<uint64_t>::max()}) {
    SCOPED_TRACE(fp);
    const absl::StatusOr<std::string> path = Decode(Encode(fp, long_path), fp);
    ASSERT_TRUE(path.ok()) << path.status();
    EXPECT_EQ(*path, long_path);
  }
}

TEST(PageToken, IsUrlSafeText) {
  const std::string token = Encode(std::numeric_limits<uint64_t>::max(), "/1/2/3/");
  ASSERT_FALSE(token.empty());
  for (char c : token) {
    EXPECT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')
        << "character '" << c << "' in " << token;
  }
}

TEST(PageToken, RefusedForOtherFilters) {
  const uint64_t issued_for = Fingerprint64("1|3||1|0");
  const uint64_t replayed_with = Fingerprint64("1|4||1|0");
  ASSERT_NE(issued_for, replayed_with);
  const absl::StatusOr<std::string> path = Decode(Encode(issued_for, "/1/5/"), replayed_with);
  ExpectPageTokenError(path);
  EXPECT_NE(GetFieldViolations(path.status())[0].description.find("filters"), std::string::npos);
}

TEST(PageToken, RefusedForAFingerprintOffByOne) {
  const std::string token = Encode(1000, "/1/");
  EXPECT_TRUE(Decode(token, 1000).ok());
  ExpectPageTokenError(Decode(token, 1001));
  ExpectPageTokenError(Decode(token, 999));
}

TEST(PageToken, RefusesGarbageAndEmptyTokens) {
  ExpectPageTokenError(Decode("!!!not a token!!!", 0));
  ExpectPageTokenError(Decode("%%%", 0));
  ExpectPageTokenError(Decode(absl::WebSafeBase64Escape("hello world"), 0));
  ExpectPageTokenError(Decode("", 0));
}

TEST(PageToken, RefusesTheOldUnsignedFormAndHandMadeTokens) {
  // Before tokens were sealed, "v1:<hex fingerprint>:<path>" in base64 was a valid token, so a
  // client could list from any path of its choosing: no longer.
  ExpectPageTokenError(Decode(absl::WebSafeBase64Escape("v1:ff:/1/2/"), 255));
  // Sealed with a key the service does not hold.
  const PageTokenSealer other =
      *PageTokenSealer::Create({{1, std::string(kPageTokenSecretBytes, 'x')}});
  ExpectPageTokenError(DecodePageToken(Sealer(), EncodePageToken(other, 255, "/1/2/"), 255));
  // Sealed by the service for another RPC.
  ExpectPageTokenError(
      Decode(Sealer().Seal("dangjian.registry.v1.OrgRegistry/Other", "ff:/1/"), 255));
}

TEST(PageToken, RefusesMalformedPayloadsEvenWhenSealed) {
  ExpectPageTokenError(Decode(SealedPayload("/1/"), 0));                    // no fingerprint
  ExpectPageTokenError(Decode(SealedPayload("zz:/1/"), 0));                 // not hex
  ExpectPageTokenError(Decode(SealedPayload(""), 0));                       // nothing at all
  ExpectPageTokenError(Decode(SealedPayload("0"), 0));                      // no path separator
  ExpectPageTokenError(Decode(SealedPayload("1ffffffffffffffff:/1/"), 0));  // > 64 bits
}

TEST(PageToken, RefusesEmptyOrRelativePath) {
  ExpectPageTokenError(Decode(Encode(7, ""), 7));
  ExpectPageTokenError(Decode(Encode(7, "1/5/"), 7));
  // Just inside: the shortest path that is one.
  EXPECT_TRUE(Decode(Encode(7, "/"), 7).ok());
}

TEST(Fingerprint64, IsPinnedFnv1a) {
  // FNV-1a 64-bit published test vectors; computed once, pinned.
  EXPECT_EQ(Fingerprint64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fingerprint64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(Fingerprint64("foobar"), 0x85944171f73967e8ULL);
  EXPECT_EQ(Fingerprint64("root=1;kinds=3"), 0x1e1106d2068b374bULL);
}

TEST(Fingerprint64, IsStableAcrossCalls) {
  EXPECT_EQ(Fingerprint64("1|3,4|6,7|1|2"), Fingerprint64("1|3,4|6,7|1|2"));
}

TEST(Fingerprint64, DiffersForDifferentInputs) {
  EXPECT_NE(Fingerprint64("1|3||1|0"), Fingerprint64("1|3||1|1"));
  EXPECT_NE(Fingerprint64("ab"), Fingerprint64("ba"));  // order matters
  EXPECT_NE(Fingerprint64(""), Fingerprint64(std::string(1, '\0')));
  EXPECT_NE(Fingerprint64("1|3"), Fingerprint64("13|"));
}

}  // namespace
}  // namespace dangjian::registry
