#include "common/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace dangjian {
namespace {

constexpr char kVersion = 1;
constexpr size_t kHeaderBytes = 1 + 4;  // version, key id
constexpr size_t kMacBytes = 32;        // SHA-256

std::string Mac(const std::string& secret, absl::string_view purpose, absl::string_view sealed) {
  std::string input = absl::StrCat(purpose, absl::string_view("\0", 1), sealed);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len);
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

absl::Status NotOurs(const std::string& field) {
  return InvalidFieldError(field,
                           "is not a token this service issued for this call, or was altered; "
                           "send the next_page_token of the previous page unchanged, or start "
                           "again without one");
}

}  // namespace

PageTokenSealer::PageTokenSealer(std::map<int32_t, std::string> secrets)
    : secrets_(std::move(secrets)), sealing_key_(secrets_.rbegin()->first) {}

absl::StatusOr<PageTokenSealer> PageTokenSealer::Create(const std::vector<PageTokenKey>& keys) {
  if (keys.empty()) return absl::InvalidArgumentError("no page token key");
  std::map<int32_t, std::string> secrets;
  for (const PageTokenKey& key : keys) {
    if (key.id <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("page token key id ", key.id, " is not positive"));
    }
    if (key.secret.size() < kPageTokenSecretBytes) {
      return absl::InvalidArgumentError(absl::StrCat("page token key ", key.id, " has ",
                                                     key.secret.size(), " bytes; at least ",
                                                     kPageTokenSecretBytes));
    }
    if (!secrets.emplace(key.id, key.secret).second) {
      return absl::InvalidArgumentError(absl::StrCat("page token key id ", key.id, " repeated"));
    }
  }
  return PageTokenSealer(std::move(secrets));
}

absl::StatusOr<std::string> PageTokenSealer::NewSecret() {
  std::string secret(kPageTokenSecretBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()),
                 static_cast<int>(secret.size())) != 1) {
    return absl::InternalError("the random generator failed to make a page token key");
  }
  return secret;
}

std::string PageTokenSealer::Seal(absl::string_view purpose, absl::string_view payload) const {
  const auto id = static_cast<uint32_t>(sealing_key_);
  std::string sealed;
  sealed.reserve(kHeaderBytes + payload.size() + kMacBytes);
  sealed.push_back(kVersion);
  for (int shift = 24; shift >= 0; shift -= 8) sealed.push_back(static_cast<char>(id >> shift));
  sealed.append(payload.data(), payload.size());
  sealed += Mac(secrets_.at(sealing_key_), purpose, sealed);
  return absl::WebSafeBase64Escape(sealed);
}

absl::StatusOr<std::string> PageTokenSealer::Open(absl::string_view purpose,
                                                  absl::string_view token,
                                                  const std::string& field) const {
  std::string raw;
  // Re-encoding must give the token back: base64 leaves a few bits of the last character
  // unused, and a token with them changed is still a changed token.
  if (!absl::WebSafeBase64Unescape(token, &raw) || absl::WebSafeBase64Escape(raw) != token ||
      raw.size() < kHeaderBytes + kMacBytes || raw[0] != kVersion) {
    return NotOurs(field);
  }
  uint32_t id = 0;
  for (size_t i = 1; i < kHeaderBytes; ++i) id = (id << 8) | static_cast<unsigned char>(raw[i]);
  auto key = secrets_.find(static_cast<int32_t>(id));
  if (key == secrets_.end()) {
    return InvalidFieldError(field,
                             "was sealed with a key this server no longer holds; start the "
                             "listing again without a page token");
  }
  const absl::string_view sealed = absl::string_view(raw).substr(0, raw.size() - kMacBytes);
  const std::string expected = Mac(key->second, purpose, sealed);
  if (CRYPTO_memcmp(expected.data(), raw.data() + sealed.size(), kMacBytes) != 0) {
    return NotOurs(field);
  }
  return std::string(sealed.substr(kHeaderBytes));
}

}  // namespace dangjian
