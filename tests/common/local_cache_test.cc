// Unit tests of the in-process cache tier (LocalCache): generation-guarded fills, invalidation,
// versions, TTL (FakeClock), LRU eviction and a bounded concurrency check. No servers.
#include "common/cache/local_cache.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/cache/cache.h"
#include "common/clock.h"

namespace dangjian::cache {
namespace {

constexpr absl::Duration kTtl = absl::Seconds(60);

CachedValue Value(int64_t version, std::string data) {
  return CachedValue{version, std::move(data)};
}

// Stores with the current generation, as a reader that saw no invalidation would.
bool Put(LocalCache& cache, absl::string_view key, const CachedValue& value) {
  return cache.PutIfUnchanged(key, value, cache.generation());
}

class LocalCacheTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  LocalCache cache_{
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/100, kTtl, /*shards=*/4},
      clock_};
};

TEST_F(LocalCacheTest, Get_ReturnsValueAfterPut) {
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
  ASSERT_TRUE(Put(cache_, "org:1", Value(3, "alpha")));
  EXPECT_EQ(cache_.Get("org:1"), Value(3, "alpha"));
  EXPECT_EQ(cache_.Get("org:2"), std::nullopt);
}

TEST_F(LocalCacheTest, PutIfUnchanged_RefusedAfterInvalidateOfSameKey) {
  const uint64_t generation = cache_.generation();
  cache_.Invalidate("org:1");
  EXPECT_FALSE(cache_.PutIfUnchanged("org:1", Value(1, "old"), generation));
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(LocalCacheTest, PutIfUnchanged_RefusedAfterInvalidateOfAnyOtherKey) {
  // The generation is global: an invalidation of another key (possibly in another shard) also
  // refuses the fill, since the fill cannot tell which key the invalidation was about.
  const uint64_t generation = cache_.generation();
  cache_.Invalidate("unrelated:key");
  EXPECT_FALSE(cache_.PutIfUnchanged("org:1", Value(1, "old"), generation));
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
}

TEST_F(LocalCacheTest, PutIfUnchanged_RefusedAfterClear) {
  const uint64_t generation = cache_.generation();
  cache_.Clear();
  EXPECT_FALSE(cache_.PutIfUnchanged("org:1", Value(1, "old"), generation));
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
}

TEST_F(LocalCacheTest, PutIfUnchanged_RefusedEvenOverExistingEntryAfterInvalidation) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  const uint64_t generation = cache_.generation();
  cache_.Invalidate("org:2");
  EXPECT_FALSE(cache_.PutIfUnchanged("org:1", Value(2, "v2"), generation));
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "v1"));
}

TEST_F(LocalCacheTest, PutIfUnchanged_AcceptedWithFreshGeneration) {
  cache_.Invalidate("org:1");
  cache_.Clear();
  EXPECT_TRUE(cache_.PutIfUnchanged("org:1", Value(1, "v1"), cache_.generation()));
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "v1"));
}

TEST_F(LocalCacheTest, Generation_MovesOnInvalidateAndClearOnly) {
  const uint64_t g0 = cache_.generation();
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  ASSERT_TRUE(cache_.Get("org:1").has_value());
  EXPECT_EQ(cache_.generation(), g0);
  cache_.Invalidate("org:1");
  const uint64_t g1 = cache_.generation();
  EXPECT_NE(g1, g0);
  cache_.Clear();
  EXPECT_NE(cache_.generation(), g1);
}

TEST_F(LocalCacheTest, Invalidate_DropsOnlyThatKey) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "a")));
  ASSERT_TRUE(Put(cache_, "org:2", Value(1, "b")));
  cache_.Invalidate("org:1");
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
  EXPECT_EQ(cache_.Get("org:2"), Value(1, "b"));
  EXPECT_EQ(cache_.size(), 1u);
  cache_.Invalidate("never:stored");  // harmless
  EXPECT_EQ(cache_.size(), 1u);
}

TEST_F(LocalCacheTest, Clear_DropsEverything) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(cache_, absl::StrCat("org:", i), Value(1, "x")));
  ASSERT_EQ(cache_.size(), 20u);
  cache_.Clear();
  EXPECT_EQ(cache_.size(), 0u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(cache_.Get(absl::StrCat("org:", i)), std::nullopt);
  // Still usable afterwards.
  EXPECT_TRUE(Put(cache_, "org:1", Value(2, "y")));
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "y"));
}

TEST_F(LocalCacheTest, PutIfUnchanged_OlderVersionNeverReplacesNewer) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(5, "new")));
  EXPECT_FALSE(Put(cache_, "org:1", Value(4, "old")));
  EXPECT_EQ(cache_.Get("org:1"), Value(5, "new"));
}

TEST_F(LocalCacheTest, PutIfUnchanged_EqualVersionReplaces) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(5, "first")));
  EXPECT_TRUE(Put(cache_, "org:1", Value(5, "second")));
  EXPECT_EQ(cache_.Get("org:1"), Value(5, "second"));
  EXPECT_EQ(cache_.size(), 1u);
}

TEST_F(LocalCacheTest, PutIfUnchanged_NewerVersionReplaces) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(5, "old")));
  EXPECT_TRUE(Put(cache_, "org:1", Value(6, "new")));
  EXPECT_EQ(cache_.Get("org:1"), Value(6, "new"));
  EXPECT_EQ(cache_.size(), 1u);
}

TEST_F(LocalCacheTest, Ttl_EntryPresentJustBeforeTtl) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  clock_.Advance(kTtl - absl::Nanoseconds(1));
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "v1"));
}

TEST_F(LocalCacheTest, Ttl_EntryGoneAtTtl) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  clock_.Advance(kTtl);
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
  EXPECT_EQ(cache_.size(), 0u);  // the expired entry was dropped, not just hidden
}

TEST_F(LocalCacheTest, Ttl_ReadDoesNotExtendLife) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  clock_.Advance(kTtl / 2);
  ASSERT_TRUE(cache_.Get("org:1").has_value());
  clock_.Advance(kTtl / 2);
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
}

TEST_F(LocalCacheTest, Ttl_RefillRestartsLife) {
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  clock_.Advance(kTtl / 2);
  ASSERT_TRUE(Put(cache_, "org:1", Value(1, "v1")));
  clock_.Advance(kTtl - absl::Nanoseconds(1));
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "v1"));
  clock_.Advance(absl::Nanoseconds(1));
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);
}

// With jitter 0.25, every entry lives between 0.75 and 1.0 of the TTL, and not all alike.
TEST(LocalCacheJitterTest, Ttl_JitterSpreadsExpiryWithinItsBounds) {
  FakeClock clock;
  LocalCacheOptions options{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/1000, kTtl,
                            /*shards=*/4};
  options.ttl_jitter = 0.25;
  LocalCache cache(options, clock);
  constexpr int kEntries = 400;
  for (int i = 0; i < kEntries; ++i) ASSERT_TRUE(Put(cache, absl::StrCat("k", i), Value(1, "x")));
  auto held = [&] {
    int n = 0;
    for (int i = 0; i < kEntries; ++i) n += cache.Get(absl::StrCat("k", i)).has_value() ? 1 : 0;
    return n;
  };
  clock.Advance(kTtl * 0.75 - absl::Nanoseconds(1));
  EXPECT_EQ(held(), kEntries) << "an entry expired before 0.75 of the TTL";
  clock.Advance(kTtl * 0.125);
  const int midway = held();
  EXPECT_GT(midway, 0) << "all expired at once: no spread";
  EXPECT_LT(midway, kEntries) << "none expired by 0.875 of the TTL: no spread";
  clock.Advance(kTtl * 0.125 + absl::Nanoseconds(1));
  EXPECT_EQ(held(), 0) << "an entry outlived the TTL";
}

TEST(LocalCacheLruTest, Lru_EvictsLeastRecentlyPutWhenNothingRead) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/2, kTtl, /*shards=*/1},
      clock);
  ASSERT_TRUE(Put(cache, "a", Value(1, "a")));
  ASSERT_TRUE(Put(cache, "b", Value(1, "b")));
  ASSERT_TRUE(Put(cache, "c", Value(1, "c")));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Get("a"), std::nullopt);
  EXPECT_EQ(cache.Get("b"), Value(1, "b"));
  EXPECT_EQ(cache.Get("c"), Value(1, "c"));
}

TEST(LocalCacheLruTest, Lru_GetRefreshesRecencySoLeastRecentlyReadGoesFirst) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/2, kTtl, /*shards=*/1},
      clock);
  ASSERT_TRUE(Put(cache, "a", Value(1, "a")));
  ASSERT_TRUE(Put(cache, "b", Value(1, "b")));
  ASSERT_TRUE(cache.Get("a").has_value());  // "b" is now the least recently used
  ASSERT_TRUE(Put(cache, "c", Value(1, "c")));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Get("b"), std::nullopt);
  EXPECT_EQ(cache.Get("a"), Value(1, "a"));
  EXPECT_EQ(cache.Get("c"), Value(1, "c"));
}

TEST(LocalCacheLruTest, Lru_ReplacingAnEntryDoesNotEvictAnother) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/2, kTtl, /*shards=*/1},
      clock);
  ASSERT_TRUE(Put(cache, "a", Value(1, "a")));
  ASSERT_TRUE(Put(cache, "b", Value(1, "b")));
  ASSERT_TRUE(Put(cache, "a", Value(2, "a2")));  // refreshes "a"; "b" is now the oldest
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Get("b"), Value(1, "b"));
  ASSERT_TRUE(Put(cache, "c", Value(1, "c")));  // "a" was read less recently than "b" now
  EXPECT_EQ(cache.Get("a"), std::nullopt);
  EXPECT_EQ(cache.Get("b"), Value(1, "b"));
  EXPECT_EQ(cache.Get("c"), Value(1, "c"));
}

TEST(LocalCacheLruTest, Lru_InvalidatedSlotIsReusedWithoutEviction) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/2, kTtl, /*shards=*/1},
      clock);
  ASSERT_TRUE(Put(cache, "a", Value(1, "a")));
  ASSERT_TRUE(Put(cache, "b", Value(1, "b")));
  cache.Invalidate("a");
  ASSERT_TRUE(Put(cache, "c", Value(1, "c")));
  EXPECT_EQ(cache.Get("b"), Value(1, "b"));
  EXPECT_EQ(cache.Get("c"), Value(1, "c"));
}

TEST(LocalCacheLruTest, Size_NeverExceedsMaxEntriesWithOneShard) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/5, kTtl, /*shards=*/1},
      clock);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(Put(cache, absl::StrCat("k", i), Value(1, "x")));
    EXPECT_EQ(cache.size(), std::min<size_t>(i + 1, 5));
  }
  // The five most recent survive.
  for (int i = 45; i < 50; ++i) EXPECT_TRUE(cache.Get(absl::StrCat("k", i)).has_value()) << i;
  EXPECT_EQ(cache.capacity(), size_t{1} << 30);  // the byte budget
}

TEST(LocalCacheLruTest, Size_WithManyShardsStaysWithinMaxEntries) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/64, kTtl, /*shards=*/16},
      clock);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(Put(cache, absl::StrCat("k", i), Value(1, "x")));
  EXPECT_LE(cache.size(), 64u);
  EXPECT_GT(cache.size(), 0u);
}

TEST(LocalCacheLruTest, Size_FewerEntriesThanShardsStillBounded) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/4, kTtl, /*shards=*/16},
      clock);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(Put(cache, absl::StrCat("k", i), Value(1, "x")));
  EXPECT_LE(cache.size(), 4u);
  EXPECT_GT(cache.size(), 0u);
}

// --- The memory budget -------------------------------------------------------------------------

// An org-sized entry: a short key, ~0.4 KB of data.
CachedValue OrgSized(int64_t version) { return Value(version, std::string(400, 'o')); }

TEST(LocalCacheBytesTest, Bytes_ChargesEachEntryAndReleasesOnEveryRemoval) {
  FakeClock clock;
  LocalCache cache(LocalCacheOptions{/*max_bytes=*/size_t{1} << 20}, clock);
  const size_t one = LocalCache::EntryBytes("org:1", OrgSized(1));
  EXPECT_GT(one, 400u);
  ASSERT_TRUE(Put(cache, "org:1", OrgSized(1)));
  ASSERT_TRUE(Put(cache, "org:2", OrgSized(1)));
  EXPECT_EQ(cache.bytes(), 2 * one);
  EXPECT_EQ(cache.size(), 2u);
  ASSERT_TRUE(Put(cache, "org:1", Value(2, "short")));  // replaced: charged anew
  EXPECT_EQ(cache.bytes(), one + LocalCache::EntryBytes("org:1", Value(2, "short")));
  cache.Invalidate("org:1");
  EXPECT_EQ(cache.bytes(), one);
  clock.Advance(LocalCacheOptions().ttl);
  EXPECT_EQ(cache.Get("org:2"), std::nullopt);  // expired
  EXPECT_EQ(cache.bytes(), 0u);
  ASSERT_TRUE(Put(cache, "org:3", OrgSized(1)));
  cache.Clear();
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(LocalCacheBytesTest, Lru_EvictsByBytesLeastRecentlyUsedFirst) {
  FakeClock clock;
  const size_t one = LocalCache::EntryBytes("org:1", OrgSized(1));
  // Room for three org-sized entries (one shard), not four.
  LocalCache cache(LocalCacheOptions{/*max_bytes=*/3 * one + one / 2,
                                     /*max_entries=*/std::numeric_limits<size_t>::max(), kTtl,
                                     /*shards=*/1},
                   clock);
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(Put(cache, absl::StrCat("org:", i), OrgSized(1)));
  ASSERT_TRUE(cache.Get("org:1").has_value());  // org:2 is now the least recently used
  ASSERT_TRUE(Put(cache, "org:4", OrgSized(1)));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_LE(cache.bytes(), 3 * one + one / 2);
  EXPECT_EQ(cache.Get("org:2"), std::nullopt);
  EXPECT_TRUE(cache.Get("org:1").has_value());
  EXPECT_TRUE(cache.Get("org:3").has_value());
  EXPECT_TRUE(cache.Get("org:4").has_value());
  // A big entry pushes out as many small ones as it needs.
  ASSERT_TRUE(Put(cache, "org:big", Value(1, std::string(2 * 400, 'b'))));
  EXPECT_LE(cache.bytes(), 3 * one + one / 2);
  EXPECT_EQ(cache.size(), 2u);
  // One that could never fit is not kept, and evicts nothing.
  EXPECT_FALSE(Put(cache, "org:huge", Value(1, std::string(4 * one, 'h'))));
  EXPECT_EQ(cache.size(), 2u);
}

TEST(LocalCacheBytesTest, Bytes_NeverExceedBudgetAcrossShards) {
  FakeClock clock;
  const size_t budget = 64 * LocalCache::EntryBytes("org:100000", OrgSized(1));
  LocalCache cache(LocalCacheOptions{/*max_bytes=*/budget}, clock);
  for (int i = 0; i < 1000; ++i) {
    Put(cache, absl::StrCat("org:", 100000 + i), OrgSized(1));
    ASSERT_LE(cache.bytes(), budget);
  }
  EXPECT_GT(cache.size(), 32u);  // the shards' shares are used, not wasted
}

// The charge is honest: what the allocator hands out for the entries is close to what they are
// charged. glibc's mallinfo2() counts the bytes in use; the sanitizers' allocators do not keep it.
TEST(LocalCacheBytesTest, EntryBytes_MatchesTheHeapTheEntriesTake) {
  constexpr int kEntries = 20000;
  LocalCache cache(LocalCacheOptions{/*max_bytes=*/size_t{1} << 30});
  std::vector<std::pair<std::string, CachedValue>> items;
  items.reserve(kEntries);
  for (int i = 0; i < kEntries; ++i) {
    items.emplace_back(absl::StrCat("org:", 100000 + i), OrgSized(i + 1));
  }
  // In use: small blocks (uordblks) and large ones, such as the maps' slot arrays (hblkhd).
  const auto in_use = [] {
    const struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
  };
  const size_t before = in_use();
  for (const auto& [key, value] : items) ASSERT_TRUE(Put(cache, key, value));
  const size_t after = in_use();
  if (after <= before) GTEST_SKIP() << "this allocator does not report bytes in use";
  const double heap = static_cast<double>(after - before);
  const double charged = static_cast<double>(cache.bytes());
  EXPECT_GT(charged, 0.85 * heap) << "charged " << charged << " for " << heap << " of heap";
  EXPECT_LT(charged, 1.15 * heap) << "charged " << charged << " for " << heap << " of heap";
  std::printf("per entry: charged %.0f bytes, heap %.0f bytes (data %zu bytes)\n",
              charged / kEntries, heap / kEntries, items[0].second.data.size());
}

TEST(LocalCacheZeroTest, ZeroMaxBytes_HoldsNothing) {
  FakeClock clock;
  LocalCache cache(LocalCacheOptions{/*max_bytes=*/0}, clock);
  EXPECT_EQ(cache.capacity(), 0u);
  EXPECT_FALSE(Put(cache, "org:1", Value(1, "x")));
  EXPECT_EQ(cache.Get("org:1"), std::nullopt);
}

TEST(LocalCacheZeroTest, ZeroMaxEntries_HoldsNothing) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/0, kTtl, /*shards=*/4},
      clock);
  EXPECT_EQ(cache.capacity(), 0u);
  EXPECT_FALSE(Put(cache, "org:1", Value(1, "v1")));
  EXPECT_EQ(cache.Get("org:1"), std::nullopt);
  EXPECT_EQ(cache.size(), 0u);
  cache.Invalidate("org:1");  // harmless
  cache.Clear();
  EXPECT_EQ(cache.size(), 0u);
}

TEST(LocalCacheZeroTest, ZeroShards_TreatedAsOneShard) {
  FakeClock clock;
  LocalCache cache(
      LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/2, kTtl, /*shards=*/0},
      clock);
  ASSERT_TRUE(Put(cache, "a", Value(1, "a")));
  ASSERT_TRUE(Put(cache, "b", Value(1, "b")));
  ASSERT_TRUE(Put(cache, "c", Value(1, "c")));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Get("c"), Value(1, "c"));
}

// A stand-in for Redis in the concurrency test: versions per key only rise.
class VersionedStore {
 public:
  explicit VersionedStore(size_t keys) : versions_(keys, 0) {}
  int64_t Bump(size_t k) {
    absl::MutexLock lock(&mu_);
    return ++versions_[k];
  }
  int64_t Read(size_t k) const {
    absl::MutexLock lock(&mu_);
    return versions_[k];
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<int64_t> versions_ ABSL_GUARDED_BY(mu_);
};

std::string KeyOf(size_t k) { return absl::StrCat("org:", k); }
std::string DataOf(size_t k, int64_t version) { return absl::StrCat(k, "@", version); }

// Writers bump a key's version in the store, then Invalidate() it, then publish the version as the
// key's floor. Readers fill through generation() + PutIfUnchanged(), as NearCache does, and check
// every local hit against the floor read before the lookup: a hit below it would be a stale value
// served after its invalidation had returned.
TEST(LocalCacheConcurrencyTest, Concurrent_NoStaleValueAfterInvalidateReturns) {
  constexpr size_t kKeys = 8;
  constexpr int kWriters = 2;
  constexpr int kReaders = 3;
  constexpr int kIterations = 20000;

  // Small capacity and several shards, so eviction runs concurrently as well.
  LocalCache cache(LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/6,
                                     absl::Minutes(5), /*shards=*/3});
  VersionedStore store(kKeys);
  std::vector<std::atomic<int64_t>> floors(kKeys);
  for (auto& f : floors) f.store(0);
  std::atomic<int> stale{0};
  std::atomic<int> corrupt{0};

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kIterations; ++i) {
        const size_t k = static_cast<size_t>(i * 7 + w) % kKeys;
        const int64_t version = store.Bump(k);
        cache.Invalidate(KeyOf(k));
        int64_t seen = floors[k].load();
        while (seen < version && !floors[k].compare_exchange_weak(seen, version)) {
        }
        if (i % 500 == 499) cache.Clear();
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < kIterations; ++i) {
        const size_t k = static_cast<size_t>(i * 3 + r) % kKeys;
        const int64_t floor = floors[k].load();
        if (std::optional<CachedValue> hit = cache.Get(KeyOf(k))) {
          if (hit->version < floor) stale.fetch_add(1);
          if (hit->data != DataOf(k, hit->version)) corrupt.fetch_add(1);
          continue;
        }
        const uint64_t generation = cache.generation();
        const int64_t version = store.Read(k);
        std::this_thread::yield();  // widens the window in which a writer can invalidate
        cache.PutIfUnchanged(KeyOf(k), CachedValue{version, DataOf(k, version)}, generation);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(stale.load(), 0);
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_LE(cache.size(), 6u);

  // Quiescent now: every key holds at most its latest version, and Invalidate() drops it.
  for (size_t k = 0; k < kKeys; ++k) {
    if (std::optional<CachedValue> hit = cache.Get(KeyOf(k))) {
      EXPECT_EQ(hit->version, store.Read(k)) << KeyOf(k);
    }
    cache.Invalidate(KeyOf(k));
    EXPECT_EQ(cache.Get(KeyOf(k)), std::nullopt) << KeyOf(k);
  }
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace dangjian::cache
