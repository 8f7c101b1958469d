// PageTokenSealer (common/page_token.h): a sealed token opens to its payload; any changed
// character, a token made up by a client, a token sealed for another purpose or under a key the
// server does not hold is INVALID_ARGUMENT on the field; keys rotate by id.
#include "common/page_token.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/escaping.h"
#include "common/clock.h"
#include "common/status.h"

namespace dangjian {
namespace {

using ::testing::HasSubstr;

constexpr char kPurpose[] = "test.v1.Things/ListThings";

PageTokenKey Key(int32_t id, char fill) {
  return PageTokenKey{id, std::string(kPageTokenSecretBytes, fill)};
}

PageTokenSealer Sealer(const std::vector<PageTokenKey>& keys) {
  absl::StatusOr<PageTokenSealer> sealer = PageTokenSealer::Create(keys);
  EXPECT_TRUE(sealer.ok()) << sealer.status();
  return *std::move(sealer);
}

void ExpectRefused(const absl::StatusOr<std::string>& opened, const std::string& field) {
  ASSERT_FALSE(opened.ok()) << "opened to '" << *opened << "'";
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<FieldViolation> violations = GetFieldViolations(opened.status());
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_EQ(violations[0].field, field);
}

TEST(PageTokenSealer, OpensWhatItSealed) {
  const PageTokenSealer sealer = Sealer({Key(1, 'a')});
  for (const std::string& payload : {std::string(), std::string("ff:/1/5/23/"),
                                     std::string("\0binary\xff", 8), std::string(1000, 'x')}) {
    const absl::StatusOr<std::string> opened =
        sealer.Open(kPurpose, sealer.Seal(kPurpose, payload));
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, payload);
  }
}

TEST(PageTokenSealer, TokensAreUrlSafeText) {
  const std::string token = Sealer({Key(1, 'a')}).Seal(kPurpose, "ff:/1/2/");
  for (char c : token) EXPECT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
}

TEST(PageTokenSealer, RefusesEveryOneCharacterChange) {
  const PageTokenSealer sealer = Sealer({Key(1, 'a')});
  const std::string token = sealer.Seal(kPurpose, "ff:/1/5/23/");
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (size_t i = 0; i < token.size(); ++i) {
    // Two substitutes per position: the next and the previous letter of the alphabet, so the
    // bits base64 leaves unused in the last character are tried too.
    for (int step : {1, 63}) {
      std::string changed = token;
      changed[i] = alphabet[(alphabet.find(token[i]) + step) % alphabet.size()];
      SCOPED_TRACE(changed);
      ExpectRefused(sealer.Open(kPurpose, changed), "page_token");
    }
  }
  ExpectRefused(sealer.Open(kPurpose, token.substr(0, token.size() - 1)), "page_token");
  ExpectRefused(sealer.Open(kPurpose, token + "A"), "page_token");
  ExpectRefused(sealer.Open(kPurpose, token + "="), "page_token");
}

TEST(PageTokenSealer, RefusesATokenMadeUpWithoutTheKey) {
  const PageTokenSealer sealer = Sealer({Key(1, 'a')});
  const PageTokenSealer forger = Sealer({Key(1, 'b')});  // same id, another secret
  ExpectRefused(sealer.Open(kPurpose, forger.Seal(kPurpose, "ff:/1/")), "page_token");
  // The payload in the clear, as unsigned tokens were.
  ExpectRefused(sealer.Open(kPurpose, absl::WebSafeBase64Escape("v1:ff:/1/")), "page_token");
  // A real token with its payload replaced and the MAC kept.
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(sealer.Seal(kPurpose, "ff:/1/5/"), &raw));
  raw.replace(5, 8, "ff:/1/9/");
  ExpectRefused(sealer.Open(kPurpose, absl::WebSafeBase64Escape(raw)), "page_token");
  ExpectRefused(sealer.Open(kPurpose, ""), "page_token");
  ExpectRefused(sealer.Open(kPurpose, "!!!"), "page_token");
}

TEST(PageTokenSealer, RefusesATokenSealedForAnotherPurpose) {
  const PageTokenSealer sealer = Sealer({Key(1, 'a')});
  ExpectRefused(sealer.Open(kPurpose, sealer.Seal("test.v1.Things/ListOthers", "ff:/1/")),
                "page_token");
}

TEST(PageTokenSealer, NamesTheFieldItIsGiven) {
  const PageTokenSealer sealer = Sealer({Key(1, 'a')});
  ExpectRefused(sealer.Open(kPurpose, "garbage", "cursor"), "cursor");
}

TEST(PageTokenSealer, SealsWithTheNewestKeyAndOpensWithEveryKeyHeld) {
  const PageTokenSealer before = Sealer({Key(1, 'a')});
  const PageTokenSealer after = Sealer({Key(2, 'b'), Key(1, 'a')});
  EXPECT_EQ(before.sealing_key_id(), 1);
  EXPECT_EQ(after.sealing_key_id(), 2);
  const std::string old_token = before.Seal(kPurpose, "old");
  const std::string new_token = after.Seal(kPurpose, "new");
  EXPECT_EQ(*after.Open(kPurpose, old_token), "old");
  EXPECT_EQ(*after.Open(kPurpose, new_token), "new");
  // Key 1 retired: its tokens are refused, with a hint to start again.
  const PageTokenSealer retired = Sealer({Key(2, 'b')});
  const absl::StatusOr<std::string> opened = retired.Open(kPurpose, old_token);
  ExpectRefused(opened, "page_token");
  EXPECT_THAT(opened.status().message(), HasSubstr("no longer holds"));
}

TEST(PageTokenSealer, CreateRefusesBadKeys) {
  EXPECT_FALSE(PageTokenSealer::Create({}).ok());
  EXPECT_FALSE(PageTokenSealer::Create({Key(0, 'a')}).ok());
  EXPECT_FALSE(PageTokenSealer::Create({Key(1, 'a'), Key(1, 'b')}).ok());
  EXPECT_FALSE(PageTokenSealer::Create({{1, std::string(kPageTokenSecretBytes - 1, 'a')}}).ok());
  EXPECT_TRUE(PageTokenSealer::Create({{1, std::string(kPageTokenSecretBytes, 'a')}}).ok());
}

TEST(PageTokenSealer, NewSecretsAreRandomAndFullLength) {
  const absl::StatusOr<std::string> a = PageTokenSealer::NewSecret();
  const absl::StatusOr<std::string> b = PageTokenSealer::NewSecret();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), kPageTokenSecretBytes);
  EXPECT_NE(*a, *b);
}

TEST(PageTokenSealer, KeyIdOfReadsTheIdWithoutVerifying) {
  EXPECT_EQ(PageTokenSealer::KeyIdOf(Sealer({Key(7, 'a')}).Seal(kPurpose, "x")), 7);
  EXPECT_EQ(PageTokenSealer::KeyIdOf(""), std::nullopt);
  EXPECT_EQ(PageTokenSealer::KeyIdOf("garbage"), std::nullopt);
}

// A keyring over a store of keys that a test changes, counting the loads.
struct KeyStore {
  std::vector<PageTokenKey> keys = {Key(1, 'a')};
  int loads = 0;
  PageTokenKeyring::LoadKeys Loader() {
    return [this]() -> absl::StatusOr<std::vector<PageTokenKey>> {
      ++loads;
      return keys;
    };
  }
};

TEST(PageTokenKeyring, LoadsAgainOnlyForATokenUnderAKeyItDoesNotHold) {
  KeyStore store;
  FakeClock clock;
  auto keyring = PageTokenKeyring::Create(store.Loader(), absl::Seconds(10), clock);
  ASSERT_TRUE(keyring.ok()) << keyring.status();
  EXPECT_EQ(store.loads, 1);
  const std::string old_token = (*keyring)->Sealer()->Seal(kPurpose, "old");
  EXPECT_EQ((*keyring)->Sealer(old_token)->sealing_key_id(), 1);
  EXPECT_EQ((*keyring)->Sealer("garbage")->sealing_key_id(), 1);
  EXPECT_EQ(store.loads, 1) << "nothing unknown: no load";

  // A rotation: another replica, started since, seals with key 2.
  store.keys.push_back(Key(2, 'b'));
  const std::string new_token = Sealer(store.keys).Seal(kPurpose, "new");
  std::shared_ptr<const PageTokenSealer> sealer = (*keyring)->Sealer(new_token);
  EXPECT_EQ(store.loads, 2);
  EXPECT_EQ(sealer->sealing_key_id(), 2);
  EXPECT_EQ(*sealer->Open(kPurpose, new_token), "new");
  EXPECT_EQ(*sealer->Open(kPurpose, old_token), "old");
}

TEST(PageTokenKeyring, MadeUpKeyIdsLoadAtMostOncePerInterval) {
  KeyStore store;
  FakeClock clock;
  auto keyring = PageTokenKeyring::Create(store.Loader(), absl::Seconds(10), clock);
  ASSERT_TRUE(keyring.ok());
  const std::string unknown = Sealer({Key(99, 'z')}).Seal(kPurpose, "x");
  (*keyring)->Sealer(unknown);
  EXPECT_EQ(store.loads, 2);  // the first unknown key loads at once
  clock.Advance(absl::Seconds(9));
  for (int i = 0; i < 100; ++i) (*keyring)->Sealer(unknown);
  EXPECT_EQ(store.loads, 2);
  clock.Advance(absl::Seconds(1));
  (*keyring)->Sealer(unknown);
  EXPECT_EQ(store.loads, 3);
  EXPECT_FALSE((*keyring)->Sealer(unknown)->Open(kPurpose, unknown).ok());
}

TEST(PageTokenKeyring, KeepsItsKeysWhenALoadFails) {
  bool fail = false;
  int loads = 0;
  FakeClock clock;
  auto keyring = PageTokenKeyring::Create(
      [&]() -> absl::StatusOr<std::vector<PageTokenKey>> {
        ++loads;
        if (fail) return absl::UnavailableError("database down");
        return std::vector<PageTokenKey>{Key(1, 'a')};
      },
      absl::Seconds(10), clock);
  ASSERT_TRUE(keyring.ok());
  fail = true;
  const std::string token = (*keyring)->Sealer()->Seal(kPurpose, "x");
  std::shared_ptr<const PageTokenSealer> sealer =
      (*keyring)->Sealer(Sealer({Key(2, 'b')}).Seal(kPurpose, "y"));
  EXPECT_EQ(loads, 2);
  EXPECT_EQ(*sealer->Open(kPurpose, token), "x");
  // A store that fails at the start fails the start.
  EXPECT_FALSE(PageTokenKeyring::Create(
                   []() -> absl::StatusOr<std::vector<PageTokenKey>> {
                     return absl::UnavailableError("database down");
                   },
                   absl::Seconds(10), clock)
                   .ok());
}

}  // namespace
}  // namespace dangjian
