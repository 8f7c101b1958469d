// Cache on Redis through hiredis: a small pool of connections with connect and command timeouts,
// guarded by a CircuitBreaker, with cache metrics. Keys are prefixed with `key_prefix` (e.g.
// "dj:registry:"). Thread-safe: each command leases one connection.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

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
  absl::Duration breaker_open_interval = absl::Seconds(5);
  std::string key_prefix = "dj:";
};

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
