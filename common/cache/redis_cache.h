// Cache on Redis through hiredis: a small pool of connections with connect and command timeouts,
// guarded by a CircuitBreaker, with cache metrics. Keys are prefixed with `key_prefix` (e.g.
// "dj:registry:"). With a password, every connection authenticates (AUTH) before its first
// command; a refused password is a failure like any other (counted, logged as an authentication
// failure, reads fall through to PostgreSQL). The password is never logged. dj_cache_breaker_open
// is 1 only while the breaker is open: a thread of its own sets it back to 0 when the open interval
// ends, even if no call comes. Thread-safe: each command leases one connection.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/cache/cache.h"
#include "common/cache/circuit_breaker.h"
#include "common/clock.h"
#include "common/metrics.h"

struct redisContext;

namespace dangjian::cache {

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  int pool_size = 4;
  absl::Duration connect_timeout = absl::Milliseconds(200);
  absl::Duration command_timeout = absl::Milliseconds(100);
  // Sent with AUTH on every connection when not empty (Redis' requirepass, or an ACL user's).
  std::string password;
  // The breaker (circuit_breaker.h): how long it stays open, and when it trips.
  absl::Duration breaker_open_interval = absl::Seconds(5);
  absl::Duration breaker_window = absl::Seconds(10);
  int breaker_min_calls = 20;
  double breaker_failure_ratio = 0.5;
  std::string key_prefix = "dj:";
  // Counters (RaiseCounter) expire this long after they last rose; every other entry has the TTL
  // its writer gives (at most a day). Nothing we write lives for ever.
  absl::Duration counter_ttl = absl::Hours(1);
};

// The password in `path` (a secret file, as Kubernetes and podman mount them): its contents less
// one trailing newline. INVALID_ARGUMENT naming the file, never quoting it, when the file cannot
// be read or holds no password.
absl::StatusOr<std::string> ReadRedisPasswordFile(const std::string& path);

// Authenticates a fresh hiredis connection with `options.password` (if any) and checks that
// Redis takes commands on it (PING). Returns an empty string, or why not; an authentication
// problem says "authentication". Never includes the password. For every connection of ours.
std::string AuthenticateRedis(redisContext* ctx, const RedisOptions& options);

class RedisCache final : public Cache {
 public:
  // Never fails: connections are opened lazily, so the service starts with Redis down.
  RedisCache(RedisOptions options, metrics::CacheMetrics* metrics, Clock& clock = RealClock::Get());
  ~RedisCache() override;

  std::optional<CachedValue> Get(absl::string_view key) override;
  std::vector<std::optional<CachedValue>> MultiGet(const std::vector<std::string>& keys) override;
  void Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl) override;
  void SetAfterWrite(absl::string_view key, const CachedValue& value, absl::Duration ttl) override;
  void Invalidate(const std::vector<std::string>& keys) override;
  std::optional<int64_t> GetCounter(absl::string_view key) override;
  void RaiseCounter(absl::string_view key, int64_t value, bool after_write) override;

  CircuitBreaker::State breaker_state() const { return breaker_.state(); }
  // Write-side operations waiting to be replayed. A pending "flush the prefix" (after the queue
  // overflowed) and each timed-out connection still to be killed (a fence) count as one each.
  size_t pending() const;

 private:
  struct Pending;  // a remembered write-side operation
  class Impl;      // the pool, the pending queue and the hiredis calls (keeps hiredis out of here)
  // Declared before impl_, which holds a reference to it.
  CircuitBreaker breaker_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dangjian::cache
