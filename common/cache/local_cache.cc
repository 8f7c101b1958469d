#include "common/cache/local_cache.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/hash/hash.h"

namespace dangjian::cache {

namespace {
// Fewer shards than entries, so the per-shard limits add up to at most max_entries.
size_t ShardCount(const LocalCacheOptions& o) {
  return std::max<size_t>(1, std::min(o.shards, std::max<size_t>(1, o.max_entries)));
}

// glibc's malloc: each block carries an 8-byte header and is rounded up to 16 bytes, at least 32.
size_t HeapBlock(size_t n) { return std::max<size_t>(32, (n + 8 + 15) & ~size_t{15}); }

// A std::string's heap block: none while it fits the small-string buffer (15 chars in libstdc++).
size_t StringHeap(size_t capacity) { return capacity > 15 ? HeapBlock(capacity + 1) : 0; }
}  // namespace

size_t LocalCache::EntryBytes(absl::string_view key, const CachedValue& value) {
  using Slot = std::pair<const std::string, Entry>;
  // flat_hash_map: a slot and a control byte per bucket, at a load factor between 7/16 (just
  // after growing) and 7/8; charged at the midpoint, 21/32.
  const size_t slot = (sizeof(Slot) + 1) * 32 / 21;
  // std::list node: two links and the key's copy.
  const size_t node = HeapBlock(2 * sizeof(void*) + sizeof(std::string));
  return slot + node + 2 * StringHeap(key.size()) + StringHeap(value.data.size());
}

LocalCache::LocalCache(LocalCacheOptions options, Clock& clock)
    : options_(options),
      per_shard_entries_(options.max_bytes == 0 ? 0 : options.max_entries / ShardCount(options)),
      per_shard_bytes_(options.max_bytes / ShardCount(options)),
      clock_(clock) {
  const size_t n = ShardCount(options_);
  shards_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    absl::MutexLock lock(&shards_.back()->mu);
    shards_.back()->jitter.seed(static_cast<std::minstd_rand::result_type>(i + 1));
  }
}

absl::Time LocalCache::ExpiryLocked(Shard& shard, absl::Time now) {
  if (options_.ttl_jitter <= 0) return now + options_.ttl;
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(shard.jitter);
  return now + options_.ttl * (1.0 - std::min(options_.ttl_jitter, 1.0) * u);
}

LocalCache::Shard& LocalCache::ShardOf(absl::string_view key) {
  return *shards_[absl::Hash<absl::string_view>{}(key) % shards_.size()];
}

void LocalCache::EraseLocked(Shard& shard, absl::string_view key) {
  auto it = shard.entries.find(key);
  if (it == shard.entries.end()) return;
  shard.bytes -= it->second.bytes;
  bytes_.fetch_sub(it->second.bytes, std::memory_order_relaxed);
  entries_.fetch_sub(1, std::memory_order_relaxed);
  shard.lru.erase(it->second.lru);
  shard.entries.erase(it);
}

std::optional<CachedValue> LocalCache::Get(absl::string_view key) {
  if (per_shard_entries_ == 0) return std::nullopt;
  Shard& shard = ShardOf(key);
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&shard.mu);
  auto it = shard.entries.find(key);
  if (it == shard.entries.end()) return std::nullopt;
  if (now >= it->second.expires) {
    EraseLocked(shard, key);
    return std::nullopt;
  }
  shard.lru.splice(shard.lru.begin(), shard.lru, it->second.lru);
  return it->second.value;
}

bool LocalCache::PutIfUnchanged(absl::string_view key, const CachedValue& value,
                                uint64_t generation) {
  if (per_shard_entries_ == 0) return false;
  const size_t bytes = EntryBytes(key, value);
  if (bytes > per_shard_bytes_) return false;  // would not fit even alone
  Shard& shard = ShardOf(key);
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&shard.mu);
  const absl::Time expires = ExpiryLocked(shard, now);
  // Checked under the shard's lock: Invalidate() bumps the generation before it takes the lock,
  // so an invalidation of this key either sees our entry (and erases it) or we see its bump.
  if (generation_.load() != generation) return false;
  auto it = shard.entries.find(key);
  if (it != shard.entries.end()) {
    if (it->second.value.version > value.version) return false;
    // Replaced in place: drop the old one's charge, then make room as for a new entry.
    EraseLocked(shard, key);
  }
  while ((shard.entries.size() >= per_shard_entries_ || shard.bytes + bytes > per_shard_bytes_) &&
         !shard.lru.empty()) {
    const std::string oldest = shard.lru.back();
    EraseLocked(shard, oldest);
  }
  shard.lru.emplace_front(key);
  shard.entries.emplace(key, Entry{value, expires, shard.lru.begin(), bytes});
  shard.bytes += bytes;
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  entries_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void LocalCache::Invalidate(absl::string_view key) {
  generation_.fetch_add(1);
  Shard& shard = ShardOf(key);
  absl::MutexLock lock(&shard.mu);
  EraseLocked(shard, key);
}

void LocalCache::Clear() {
  generation_.fetch_add(1);
  for (const std::unique_ptr<Shard>& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    bytes_.fetch_sub(shard->bytes, std::memory_order_relaxed);
    entries_.fetch_sub(shard->entries.size(), std::memory_order_relaxed);
    shard->bytes = 0;
    shard->entries.clear();
    shard->lru.clear();
  }
}

}  // namespace dangjian::cache
