// Page tokens that a client cannot forge or alter: the server's cursor (what the next page
// continues after) sealed with HMAC-SHA256 under a server key. A client holds the token as an
// opaque string and sends it back; a token that was changed in any character, made up, sealed
// for another purpose (another RPC) or under a key the server does not hold is refused with
// INVALID_ARGUMENT naming the field. The cursor is not secret (it is only authenticated): keep
// what it reveals to what the caller may see anyway.
//
// Keys have ids, so they rotate: a token carries the id of its key; tokens are sealed with the
// key of the highest id and opened with any key held. Every replica of a service must hold the
// same keys (services keep them in their own database; see PageTokenSealer's users).
//
// Wire form: web-safe base64 (no padding) of
//   version (1 byte, 1) | key id (4 bytes, big-endian) | payload | HMAC-SHA256 (32 bytes)
// where the MAC covers purpose, a 0 byte, and everything before the MAC.
// Thread-safe (immutable after construction).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dangjian {

inline constexpr size_t kPageTokenSecretBytes = 32;

struct PageTokenKey {
  int32_t id = 0;      // positive
  std::string secret;  // at least kPageTokenSecretBytes random bytes
};

class PageTokenSealer {
 public:
  // INVALID_ARGUMENT if `keys` is empty, or a key has a non-positive or repeated id or a short
  // secret.
  static absl::StatusOr<PageTokenSealer> Create(const std::vector<PageTokenKey>& keys);

  // A new random secret of kPageTokenSecretBytes (OpenSSL's RAND_bytes); INTERNAL if the
  // generator fails.
  static absl::StatusOr<std::string> NewSecret();

  // `payload` sealed for `purpose` (e.g. the full RPC name) under the newest key.
  std::string Seal(absl::string_view purpose, absl::string_view payload) const;

  // The payload of `token`, if this sealer sealed it for `purpose`; else INVALID_ARGUMENT with a
  // violation on `field`.
  absl::StatusOr<std::string> Open(absl::string_view purpose, absl::string_view token,
                                   const std::string& field = "page_token") const;

  int32_t sealing_key_id() const { return sealing_key_; }

 private:
  explicit PageTokenSealer(std::map<int32_t, std::string> secrets);

  std::map<int32_t, std::string> secrets_;  // by key id
  int32_t sealing_key_ = 0;
};

}  // namespace dangjian
