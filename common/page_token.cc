#include "common/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
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

std::optional<int32_t> PageTokenSealer::KeyIdOf(absl::string_view token) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.size() < kHeaderBytes + kMacBytes ||
      raw[0] != kVersion) {
    return std::nullopt;
  }
  uint32_t id = 0;
  for (size_t i = 1; i < kHeaderBytes; ++i) id = (id << 8) | static_cast<unsigned char>(raw[i]);
  return static_cast<int32_t>(id);
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
  auto key = secrets_.find(*KeyIdOf(token));
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

PageTokenKeyring::PageTokenKeyring(LoadKeys load, absl::Duration min_reload_interval, Clock& clock,
                                   std::shared_ptr<const PageTokenSealer> sealer)
    : load_(std::move(load)),
      min_reload_interval_(min_reload_interval),
      clock_(clock),
      sealer_(std::move(sealer)),
      last_load_(absl::InfinitePast()) {}  // the first unknown key may load at once

absl::StatusOr<std::unique_ptr<PageTokenKeyring>> PageTokenKeyring::Create(
    LoadKeys load, absl::Duration min_reload_interval, Clock& clock) {
  DJ_ASSIGN_OR_RETURN(std::vector<PageTokenKey> keys, load());
  DJ_ASSIGN_OR_RETURN(PageTokenSealer sealer, PageTokenSealer::Create(keys));
  return std::unique_ptr<PageTokenKeyring>(
      new PageTokenKeyring(std::move(load), min_reload_interval, clock,
                           std::make_shared<const PageTokenSealer>(std::move(sealer))));
}

std::shared_ptr<const PageTokenSealer> PageTokenKeyring::Sealer(absl::string_view token) {
  std::shared_ptr<const PageTokenSealer> current;
  {
    absl::MutexLock lock(&mu_);
    current = sealer_;
    const std::optional<int32_t> id = PageTokenSealer::KeyIdOf(token);
    if (!id || *id <= 0 || current->Holds(*id) ||
        clock_.Now() - last_load_ < min_reload_interval_) {
      return current;
    }
    last_load_ = clock_.Now();  // one reload per interval, by whichever caller comes first
  }
  absl::StatusOr<std::vector<PageTokenKey>> keys = load_();
  if (!keys.ok()) {
    log::Warn("page token keys could not be loaded again; keeping the keys held",
              {{"error", keys.status().ToString()}});
    return current;
  }
  absl::StatusOr<PageTokenSealer> loaded = PageTokenSealer::Create(*keys);
  if (!loaded.ok()) {
    log::Warn("page token keys loaded again are unusable; keeping the keys held",
              {{"error", loaded.status().ToString()}});
    return current;
  }
  auto fresh = std::make_shared<const PageTokenSealer>(*std::move(loaded));
  log::Info("page token keys loaded again", {{"sealing_key_id", fresh->sealing_key_id()}});
  absl::MutexLock lock(&mu_);
  sealer_ = fresh;
  return fresh;
}

}  // namespace dangjian
