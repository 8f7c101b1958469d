// Page tokens that a client cannot forge or alter: the server's cursor (what the next page
// continues after) sealed with HMAC-SHA256 under a server key. A client holds the token as an
// opaque string and sends it back; a token that was changed in any character, made up, sealed
// for another purpose (another RPC) or under a key the server does not hold is refused with
// INVALID_ARGUMENT naming the field. The cursor is not secret (it is only authenticated): keep
// what it reveals to what the caller may see anyway.
//
// Keys have ids, so they rotate: a token carries the id of its key; tokens are sealed with the
// key of the highest id and opened with any key held. Every replica of a service must hold the
// same keys: services keep them in their own database, and PageTokenKeyring loads them again when
// a token names a key added since.
//
// Wire form: web-safe base64 (no padding) of
//   version (1 byte, 1) | key id (4 bytes, big-endian) | payload | HMAC-SHA256 (32 bytes)
// where the MAC covers purpose, a 0 byte, and everything before the MAC.
// PageTokenSealer is immutable, so thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

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
  bool Holds(int32_t key_id) const { return secrets_.count(key_id) > 0; }

  // The key id a token names, if it has the form of a token at all (nothing is verified).
  static std::optional<int32_t> KeyIdOf(absl::string_view token);

 private:
  explicit PageTokenSealer(std::map<int32_t, std::string> secrets);

  std::map<int32_t, std::string> secrets_;  // by key id
  int32_t sealing_key_ = 0;
};

// The page token keys of a service whose replicas share them through a store (their database):
// when a token names a key this replica does not hold (a replica that loaded the keys after a
// rotation sealed it), it loads the keys again, so a rotation needs no restart. Loads at most once
// per `min_reload_interval`, so made-up key ids cannot flood the store. Thread-safe; Sealer()
// may block on `load`: call it off gRPC's event threads.
class PageTokenKeyring {
 public:
  using LoadKeys = std::function<absl::StatusOr<std::vector<PageTokenKey>>()>;

  // Loads the keys once; fails as `load` or PageTokenSealer::Create does.
  static absl::StatusOr<std::unique_ptr<PageTokenKeyring>> Create(
      LoadKeys load, absl::Duration min_reload_interval, Clock& clock = RealClock::Get());

  // The sealer to open `token` with and to seal the next one: the current one, after loading the
  // keys again if `token` names a key it does not hold (and the last load is old enough).
  std::shared_ptr<const PageTokenSealer> Sealer(absl::string_view token = "");

 private:
  PageTokenKeyring(LoadKeys load, absl::Duration min_reload_interval, Clock& clock,
                   std::shared_ptr<const PageTokenSealer> sealer);

  const LoadKeys load_;
  const absl::Duration min_reload_interval_;
  Clock& clock_;
  absl::Mutex mu_;
  std::shared_ptr<const PageTokenSealer> sealer_ ABSL_GUARDED_BY(mu_);
  absl::Time last_load_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dangjian
