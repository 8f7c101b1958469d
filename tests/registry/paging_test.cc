// Pure unit tests of ListOrgs' page tokens (services/registry/domain/paging.h): a token carries the
// last path of a page and is bound to the fingerprint of the filters it was issued for; anything
// else is INVALID_ARGUMENT on field page_token. Fingerprint64 is pinned to fixed values, since
// tokens outlive a deploy and a changed hash would invalidate every token in flight.
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

// A token with the given raw text, encoded as the service encodes its tokens.
std::string RawToken(absl::string_view raw) { return absl::WebSafeBase64Escape(raw); }

TEST(PageToken, RoundTripsThePath) {
  const uint64_t fp = Fingerprint64("1|3||1|0");
  const std::string token = EncodePageToken(fp, "/1/5/23/");
  const absl::StatusOr<std::string> path = DecodePageToken(token, fp);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, "/1/5/23/");
}

TEST(PageToken, RoundTripsExtremeFingerprintsAndLongPaths) {
  const std::string long_path = "/1/22/333/4444/55555/666666/7777777/88888888/999999999/";
  for (uint64_t fp : {uint64_t{0}, uint64_t{1}, std::numeric_limits<uint64_t>::max()}) {
    SCOPED_TRACE(fp);
    const absl::StatusOr<std::string> path = DecodePageToken(EncodePageToken(fp, long_path), fp);
    ASSERT_TRUE(path.ok()) << path.status();
    EXPECT_EQ(*path, long_path);
  }
}

TEST(PageToken, IsUrlSafeText) {
  const std::string token = EncodePageToken(std::numeric_limits<uint64_t>::max(), "/1/2/3/");
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
  const absl::StatusOr<std::string> path =
      DecodePageToken(EncodePageToken(issued_for, "/1/5/"), replayed_with);
  ExpectPageTokenError(path);
  EXPECT_NE(GetFieldViolations(path.status())[0].description.find("filters"), std::string::npos);
}

TEST(PageToken, RefusedForAFingerprintOffByOne) {
  const std::string token = EncodePageToken(1000, "/1/");
  EXPECT_TRUE(DecodePageToken(token, 1000).ok());
  ExpectPageTokenError(DecodePageToken(token, 1001));
  ExpectPageTokenError(DecodePageToken(token, 999));
}

TEST(PageToken, RefusesGarbage) {
  ExpectPageTokenError(DecodePageToken("!!!not a token!!!", 0));
  ExpectPageTokenError(DecodePageToken("%%%", 0));
  // Valid base64, but not our text.
  ExpectPageTokenError(DecodePageToken(RawToken("hello world"), 0));
  ExpectPageTokenError(DecodePageToken(RawToken("v2:0:/1/"), 0));
}

TEST(PageToken, RefusesEmptyToken) { ExpectPageTokenError(DecodePageToken("", 0)); }

TEST(PageToken, RefusesMalformedFingerprint) {
  ExpectPageTokenError(DecodePageToken(RawToken("v1:/1/"), 0));     // no fingerprint at all
  ExpectPageTokenError(DecodePageToken(RawToken("v1:zz:/1/"), 0));  // not hex
  ExpectPageTokenError(DecodePageToken(RawToken("v1:"), 0));        // nothing after the version
  ExpectPageTokenError(DecodePageToken(RawToken("v1:0"), 0));       // no path separator
  ExpectPageTokenError(DecodePageToken(RawToken("v1:1ffffffffffffffff:/1/"), 0));  // > 64 bits
}

TEST(PageToken, RefusesEmptyOrRelativePath) {
  ExpectPageTokenError(DecodePageToken(EncodePageToken(7, ""), 7));
  ExpectPageTokenError(DecodePageToken(EncodePageToken(7, "1/5/"), 7));
  // Just inside: the shortest path that is one.
  EXPECT_TRUE(DecodePageToken(EncodePageToken(7, "/"), 7).ok());
}

TEST(PageToken, HandWrittenTokenOfTheSameFormIsAccepted) {
  // Pins the wire form "v1:<hex fingerprint>:<path>" so a change of format is a visible decision.
  const absl::StatusOr<std::string> path = DecodePageToken(RawToken("v1:ff:/1/2/"), 255);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, "/1/2/");
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
