#include "common/cache/local_cache.h"

#include <algorithm>
#include <functional>

#include "absl/hash/hash.h"

namespace dangjian::cache {

namespace {
// Fewer shards than entries, so the per-shard limits add up to at most max_entries.
size_t ShardCount(const LocalCacheOptions& o) {
  return std::max<size_t>(1, std::min(o.shards, std::max<size_t>(1, o.max_entries)));
}
}  // namespace

LocalCache::LocalCache(LocalCacheOptions options, Clock& clock)
    : options_(options), per_shard_(options.max_entries / ShardCount(options)), clock_(clock) {
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
  shard.lru.erase(it->second.lru);
  shard.entries.erase(it);
}

std::optional<CachedValue> LocalCache::Get(absl::string_view key) {
  if (per_shard_ == 0) return std::nullopt;
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
  if (per_shard_ == 0) return false;
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
    it->second.value = value;
    it->second.expires = expires;
    shard.lru.splice(shard.lru.begin(), shard.lru, it->second.lru);
    return true;
  }
  while (shard.entries.size() >= per_shard_ && !shard.lru.empty()) {
    const std::string oldest = shard.lru.back();
    EraseLocked(shard, oldest);
  }
  shard.lru.emplace_front(key);
  shard.entries.emplace(key, Entry{value, expires, shard.lru.begin()});
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
    shard->entries.clear();
    shard->lru.clear();
  }
}

size_t LocalCache::size() const {
  size_t n = 0;
  for (const std::unique_ptr<Shard>& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    n += shard->entries.size();
  }
  return n;
}

}  // namespace dangjian::cache
