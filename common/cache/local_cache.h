// The in-process tier of the cache: a bounded map of recently read entries, kept in each
// replica's memory so a hot read is answered without a network round trip.
//
// It holds copies of what Redis holds, never anything newer, and is only as good as the feed that
// tells it what changed (see near_cache.h): Invalidate() drops a key, Clear() drops everything.
// A generation number makes fills safe against invalidations that race them: a reader takes
// generation() before it asks Redis and passes it to PutIfUnchanged(), which stores nothing if any
// invalidation happened in between (it may have concerned the value just read).
//
// Entries are evicted least recently used first per shard once the shard is full, and expire after
// `ttl` (a backstop in case an invalidation was lost). Thread-safe; each shard has its own mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cache/cache.h"
#include "common/clock.h"

namespace dangjian::cache {

struct LocalCacheOptions {
  size_t max_entries = 50000;  // across all shards; 0 holds nothing
  absl::Duration ttl = absl::Minutes(1);
  size_t shards = 16;
  // Each entry lives ttl * (1 - ttl_jitter * u), u uniform in [0, 1), so entries filled together
  // (a warm-up, a bulk read) do not all expire together and send one burst of reads to Redis.
  double ttl_jitter = 0;
};

class LocalCache {
 public:
  explicit LocalCache(LocalCacheOptions options, Clock& clock = RealClock::Get());

  std::optional<CachedValue> Get(absl::string_view key);
  uint64_t generation() const { return generation_.load(); }
  // Stores `value` unless an invalidation happened since `generation` was read, or the entry
  // held is newer (a higher version). Returns whether it stored.
  bool PutIfUnchanged(absl::string_view key, const CachedValue& value, uint64_t generation);
  void Invalidate(absl::string_view key);
  void Clear();

  size_t size() const;
  size_t capacity() const { return options_.max_entries; }

 private:
  struct Entry {
    CachedValue value;
    absl::Time expires;
    std::list<std::string>::iterator lru;  // position in Shard::lru (front: most recent)
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
    std::list<std::string> lru ABSL_GUARDED_BY(mu);
    std::minstd_rand jitter ABSL_GUARDED_BY(mu);
  };
  absl::Time ExpiryLocked(Shard& shard, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  Shard& ShardOf(absl::string_view key);
  static void EraseLocked(Shard& shard, absl::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const LocalCacheOptions options_;
  const size_t per_shard_;
  Clock& clock_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace dangjian::cache
