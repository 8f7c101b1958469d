// The in-process tier of the cache: a bounded map of recently read entries, kept in each
// replica's memory so a hot read is answered without a network round trip.
//
// It holds copies of what Redis holds, never anything newer, and is only as good as the feed that
// tells it what changed (see near_cache.h): Invalidate() drops a key, Clear() drops everything.
// A generation number makes fills safe against invalidations that race them: a reader takes
// generation() before it asks Redis and passes it to PutIfUnchanged(), which stores nothing if any
// invalidation happened in between (it may have concerned the value just read).
//
// Its size is a memory budget (`max_bytes`): each entry is charged what it costs on the heap
// (EntryBytes: key and data, the map slot and the LRU node, with allocator overhead), and entries
// are evicted least recently used first per shard once the shard's share of the budget is spent.
// `max_entries` can cap the count as well. Entries expire after `ttl` (a backstop in case an
// invalidation was lost). Thread-safe; each shard has its own mutex; size() and bytes() are
// lock-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
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
  // The memory budget across all shards (see EntryBytes); 0 holds nothing.
  size_t max_bytes = size_t{256} << 20;
  // A cap on the count across all shards, besides the budget; 0 holds nothing.
  size_t max_entries = std::numeric_limits<size_t>::max();
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

  size_t size() const { return entries_.load(std::memory_order_relaxed); }
  // What the entries held cost, as charged against max_bytes.
  size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  // 0 when the tier holds nothing (either bound 0); else the byte budget.
  size_t capacity() const { return per_shard_entries_ == 0 ? 0 : options_.max_bytes; }

  // The heap an entry of `key` and `value` costs here: both strings' allocations, the map slot
  // (at the map's worst load factor) and the LRU list node with its copy of the key, each heap
  // block with the allocator's overhead. tests/common/local_cache_test.cc checks it against the
  // allocator's own count.
  static size_t EntryBytes(absl::string_view key, const CachedValue& value);

 private:
  struct Entry {
    CachedValue value;
    absl::Time expires;
    std::list<std::string>::iterator lru;  // position in Shard::lru (front: most recent)
    size_t bytes = 0;                      // EntryBytes() when stored
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
    std::list<std::string> lru ABSL_GUARDED_BY(mu);
    size_t bytes ABSL_GUARDED_BY(mu) = 0;
    std::minstd_rand jitter ABSL_GUARDED_BY(mu);
  };
  absl::Time ExpiryLocked(Shard& shard, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  Shard& ShardOf(absl::string_view key);
  void EraseLocked(Shard& shard, absl::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const LocalCacheOptions options_;
  const size_t per_shard_entries_;
  const size_t per_shard_bytes_;
  Clock& clock_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<size_t> entries_{0};
  std::atomic<size_t> bytes_{0};
};

}  // namespace dangjian::cache
