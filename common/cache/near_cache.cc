#include "common/cache/near_cache.h"

namespace dangjian::cache {

NearCache::NearCache(Cache& far, LocalCache& local, const InvalidationFeed& feed,
                     metrics::LocalCacheMetrics* metrics)
    : far_(far), local_(local), feed_(feed), metrics_(metrics) {
  if (metrics_ != nullptr) metrics_->capacity_bytes.Set(static_cast<double>(local_.capacity()));
}

std::optional<CachedValue> NearCache::Lookup(absl::string_view key, bool count_misses) {
  if (local_.capacity() == 0 || !feed_.Covers(key)) return std::nullopt;
  // The feed is asked first: an announcement read before this point has already dropped its key,
  // so the lookup below cannot return what it announced.
  if (!feed_.Current()) {
    if (metrics_ != nullptr && count_misses) metrics_->not_current.Increment();
    return std::nullopt;
  }
  std::optional<CachedValue> value = local_.Get(key);
  if (metrics_ != nullptr && (value || count_misses)) {
    (value ? metrics_->hits : metrics_->misses).Increment();
  }
  return value;
}

std::optional<CachedValue> NearCache::GetLocal(absl::string_view key) {
  return Lookup(key, /*count_misses=*/false);
}

void NearCache::Keep(absl::string_view key, const std::optional<CachedValue>& value,
                     uint64_t generation) {
  if (!value) return;
  // A value read while the feed was not current is not kept: becoming current clears the local
  // tier and so moves the generation, which PutIfUnchanged() checks.
  if (local_.PutIfUnchanged(key, *value, generation)) SampleSize();
}

void NearCache::SampleSize() {
  if (metrics_ == nullptr) return;
  metrics_->entries.Set(static_cast<double>(local_.size()));
  metrics_->bytes.Set(static_cast<double>(local_.bytes()));
}

std::optional<CachedValue> NearCache::Get(absl::string_view key) {
  if (std::optional<CachedValue> local = Lookup(key, /*count_misses=*/true)) return local;
  const bool local_tier = local_.capacity() > 0 && feed_.Covers(key);
  const uint64_t generation = local_.generation();
  std::optional<CachedValue> value = far_.Get(key);
  if (local_tier) Keep(key, value, generation);
  return value;
}

std::vector<std::optional<CachedValue>> NearCache::MultiGet(const std::vector<std::string>& keys) {
  std::vector<std::optional<CachedValue>> values(keys.size());
  std::vector<std::string> far_keys;
  std::vector<size_t> far_index;
  for (size_t i = 0; i < keys.size(); ++i) {
    values[i] = Lookup(keys[i], /*count_misses=*/true);
    if (!values[i]) {
      far_keys.push_back(keys[i]);
      far_index.push_back(i);
    }
  }
  if (far_keys.empty()) return values;
  const uint64_t generation = local_.generation();
  std::vector<std::optional<CachedValue>> far_values = far_.MultiGet(far_keys);
  for (size_t j = 0; j < far_index.size() && j < far_values.size(); ++j) {
    values[far_index[j]] = std::move(far_values[j]);
    if (local_.capacity() > 0 && feed_.Covers(far_keys[j])) {
      Keep(far_keys[j], values[far_index[j]], generation);
    }
  }
  return values;
}

void NearCache::Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl) {
  // Not kept locally: the caller read it from PostgreSQL at a time this class cannot see, so no
  // generation can vouch for it. The next Get() keeps it once Redis holds it.
  far_.Fill(key, value, ttl);
}

void NearCache::SetAfterWrite(absl::string_view key, const CachedValue& value, absl::Duration ttl) {
  // Dropped before (no read of ours keeps the old copy while Redis is updated) and after (a read
  // that fetched the old value from Redis meanwhile cannot keep it: the generation moved).
  local_.Invalidate(key);
  far_.SetAfterWrite(key, value, ttl);
  local_.Invalidate(key);
  SampleSize();
}

void NearCache::Invalidate(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) local_.Invalidate(key);
  far_.Invalidate(keys);
  for (const std::string& key : keys) local_.Invalidate(key);
  SampleSize();
}

std::optional<int64_t> NearCache::GetCounter(absl::string_view key) { return far_.GetCounter(key); }

void NearCache::RaiseCounter(absl::string_view key, int64_t value, bool after_write) {
  far_.RaiseCounter(key, value, after_write);
}

}  // namespace dangjian::cache
