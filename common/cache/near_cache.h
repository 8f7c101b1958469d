// A two-tier cache: copies of hot Redis entries in this process (LocalCache) in front of Redis.
//
// Why: a hot read served from memory costs no round trip and no thread hop, which is what lets a
// cached GetOrg run at a good fraction of a bare gRPC echo. Why it stays correct: a local copy is
// only served while an InvalidationFeed vouches for it. The feed (redis_invalidations.h) is Redis'
// own client-side-caching protocol: Redis announces every change of a tracked key to every
// replica, and announces it before it acknowledges the write to the writer; a replica drops the
// key on the announcement, and drops everything (and asks Redis again) while it cannot hear
// announcements or has one not yet read. Writes through this cache drop the key locally before
// and after they reach Redis, so this process reads its own writes at once.
//
// What is not promised: between replicas, the announcement travels on its own connection, so a
// read on replica B that a client sends after replica A acknowledged a write can, in principle,
// beat the announcement to B (on one host both are loopback writes microseconds apart). Set
// local entries to 0 where that window is unacceptable.
//
// Only keys the feed covers (its tracked prefixes) use the local tier; counters never do.
// Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/cache/cache.h"
#include "common/cache/local_cache.h"
#include "common/metrics.h"

namespace dangjian::cache {

// The source of "this key changed" for a LocalCache.
class InvalidationFeed {
 public:
  virtual ~InvalidationFeed() = default;
  // True while the feed is subscribed and has applied every announcement it has received, so a
  // local copy that was not dropped is still what Redis holds. Becoming current always empties
  // the local cache first. Cheap and non-blocking (at most one ioctl).
  virtual bool Current() const = 0;
  // Whether changes of `key` (a logical key, without the Redis key prefix) are announced.
  virtual bool Covers(absl::string_view key) const = 0;
};

class NearCache final : public Cache {
 public:
  // `far` (Redis), `local` and `feed` must outlive this; `feed` writes its invalidations into
  // `local`. `metrics` may be null.
  NearCache(Cache& far, LocalCache& local, const InvalidationFeed& feed,
            metrics::LocalCacheMetrics* metrics);

  // The local tier only: no I/O, never blocks on the network. Counts its hits only: a caller
  // that falls back to Get() on a miss has that miss counted once, by Get().
  std::optional<CachedValue> GetLocal(absl::string_view key) override;

  std::optional<CachedValue> Get(absl::string_view key) override;
  std::vector<std::optional<CachedValue>> MultiGet(const std::vector<std::string>& keys) override;
  void Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl) override;
  void SetAfterWrite(absl::string_view key, const CachedValue& value, absl::Duration ttl) override;
  void Invalidate(const std::vector<std::string>& keys) override;
  std::optional<int64_t> GetCounter(absl::string_view key) override;
  void RaiseCounter(absl::string_view key, int64_t value, bool after_write) override;

 private:
  // The local lookup of GetLocal(), Get() and MultiGet(); counts hits, and misses and
  // not-current answers if `count_misses`.
  std::optional<CachedValue> Lookup(absl::string_view key, bool count_misses);
  // Keeps what Redis returned for `key`, if no invalidation happened since `generation`.
  void Keep(absl::string_view key, const std::optional<CachedValue>& value, uint64_t generation);
  // Sets the size gauges (entries, bytes) from the local tier.
  void SampleSize();

  Cache& far_;
  LocalCache& local_;
  const InvalidationFeed& feed_;
  metrics::LocalCacheMetrics* const metrics_;
};

}  // namespace dangjian::cache
