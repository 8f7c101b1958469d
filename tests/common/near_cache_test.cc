// Unit tests of NearCache (the in-process tier in front of Redis). The far tier is a small
// in-test Cache that records its calls and holds a map; the InvalidationFeed is a fake whose
// "current" flag the test sets. Both are mocks of interfaces only; no servers.
#include "common/cache/near_cache.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/cache/cache.h"
#include "common/cache/local_cache.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace dangjian::cache {
namespace {

constexpr absl::Duration kTtl = absl::Minutes(10);

CachedValue Value(int64_t version, std::string data) {
  return CachedValue{version, std::move(data)};
}

// Redis as seen through the Cache interface: a map, plus a record of every call. The hooks run
// inside a call, to let a test interleave an invalidation or another read with it.
class FakeFarCache final : public Cache {
 public:
  std::optional<CachedValue> Get(absl::string_view key) override {
    get_keys.emplace_back(key);
    std::optional<CachedValue> value = Lookup(key);
    if (during_get) during_get(key);
    return value;
  }
  std::vector<std::optional<CachedValue>> MultiGet(const std::vector<std::string>& keys) override {
    multi_get_calls.push_back(keys);
    std::vector<std::optional<CachedValue>> result;
    for (const std::string& key : keys) result.push_back(Lookup(key));
    if (during_multi_get) during_multi_get(keys);
    return result;
  }
  void Fill(absl::string_view key, const CachedValue& value, absl::Duration) override {
    fills.emplace_back(std::string(key), value);
    values[std::string(key)] = value;
  }
  void SetAfterWrite(absl::string_view key, const CachedValue& value, absl::Duration) override {
    if (before_write) before_write();
    set_after_writes.emplace_back(std::string(key), value);
    values[std::string(key)] = value;
    if (after_write) after_write();
  }
  void Invalidate(const std::vector<std::string>& keys) override {
    if (before_write) before_write();
    invalidations.push_back(keys);
    for (const std::string& key : keys) values.erase(key);
  }
  std::optional<int64_t> GetCounter(absl::string_view key) override {
    counter_gets.emplace_back(key);
    auto it = counters.find(std::string(key));
    if (it == counters.end()) return std::nullopt;
    return it->second;
  }
  void RaiseCounter(absl::string_view key, int64_t value, bool after_write) override {
    raises.emplace_back(std::string(key), value, after_write);
    int64_t& counter = counters[std::string(key)];
    counter = std::max(counter, value);
  }

  std::map<std::string, CachedValue> values;
  std::map<std::string, int64_t> counters;

  std::vector<std::string> get_keys;
  std::vector<std::vector<std::string>> multi_get_calls;
  std::vector<std::pair<std::string, CachedValue>> fills;
  std::vector<std::pair<std::string, CachedValue>> set_after_writes;
  std::vector<std::vector<std::string>> invalidations;
  std::vector<std::string> counter_gets;
  std::vector<std::tuple<std::string, int64_t, bool>> raises;

  std::function<void(absl::string_view)> during_get;
  std::function<void(const std::vector<std::string>&)> during_multi_get;
  std::function<void()> before_write;
  std::function<void()> after_write;  // SetAfterWrite only: Redis holds the new value already

 private:
  std::optional<CachedValue> Lookup(absl::string_view key) const {
    auto it = values.find(std::string(key));
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
};

// Covers keys with one prefix. BecomeCurrent() empties the local tier before it turns current, as
// the real feed does (see InvalidationFeed::Current()).
class FakeFeed final : public InvalidationFeed {
 public:
  explicit FakeFeed(std::string prefix) : prefix_(std::move(prefix)) {}
  bool Current() const override { return current_.load(); }
  bool Covers(absl::string_view key) const override { return absl::StartsWith(key, prefix_); }

  void Lose() { current_.store(false); }
  void BecomeCurrent(LocalCache& local) {
    local.Clear();
    current_.store(true);
  }

 private:
  const std::string prefix_;
  std::atomic<bool> current_{true};
};

class NearCacheTest : public ::testing::Test {
 protected:
  size_t FarGets(absl::string_view key) const {
    size_t n = 0;
    for (const std::string& k : far_.get_keys) n += (k == key) ? 1 : 0;
    return n;
  }

  FakeClock clock_;
  FakeFarCache far_;
  LocalCache local_{LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/100,
                                      absl::Minutes(1), /*shards=*/4},
                    clock_};
  FakeFeed feed_{"org:"};
  prometheus::Registry registry_;
  metrics::LocalCacheMetrics metrics_{registry_};
  NearCache cache_{far_, local_, feed_, &metrics_};
};

TEST_F(NearCacheTest, Get_FirstFromFarThenServedLocally) {
  far_.values["org:1"] = Value(1, "alpha");
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "alpha"));
  EXPECT_EQ(FarGets("org:1"), 1u);
  EXPECT_EQ(local_.size(), 1u);

  // Redis changes behind our back without an announcement: only the local copy can answer this.
  far_.values["org:1"] = Value(2, "changed-in-far");
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "alpha"));
  EXPECT_EQ(cache_.GetLocal("org:1"), Value(1, "alpha"));
  EXPECT_EQ(FarGets("org:1"), 1u);

  EXPECT_EQ(metrics_.misses.Value(), 1.0);
  EXPECT_EQ(metrics_.hits.Value(), 2.0);
  EXPECT_EQ(metrics_.entries.Value(), 1.0);
}

TEST_F(NearCacheTest, Get_MissInFarIsNotKept) {
  EXPECT_EQ(cache_.Get("org:404"), std::nullopt);
  EXPECT_EQ(cache_.Get("org:404"), std::nullopt);
  EXPECT_EQ(FarGets("org:404"), 2u);
  EXPECT_EQ(local_.size(), 0u);
}

TEST_F(NearCacheTest, GetLocal_NulloptWhenFeedNotCurrent) {
  far_.values["org:1"] = Value(1, "alpha");
  ASSERT_EQ(cache_.Get("org:1"), Value(1, "alpha"));
  ASSERT_EQ(local_.size(), 1u);

  feed_.Lose();
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  // GetLocal counts hits only: its caller's fallback, Get(), counts the outcome once.
  EXPECT_EQ(metrics_.not_current.Value(), 0.0);
  // Get falls through to the far tier although a local copy exists.
  far_.values["org:1"] = Value(2, "beta");
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "beta"));
  EXPECT_EQ(FarGets("org:1"), 2u);
  EXPECT_EQ(metrics_.not_current.Value(), 1.0);
  EXPECT_EQ(metrics_.hits.Value(), 0.0);
}

TEST_F(NearCacheTest, GetLocal_NulloptWhenKeyNotCovered) {
  far_.values["member:1"] = Value(1, "m");
  EXPECT_EQ(cache_.Get("member:1"), Value(1, "m"));
  EXPECT_EQ(cache_.Get("member:1"), Value(1, "m"));
  EXPECT_EQ(FarGets("member:1"), 2u);
  EXPECT_EQ(cache_.GetLocal("member:1"), std::nullopt);
  EXPECT_EQ(local_.size(), 0u);
  // Uncovered keys are not local traffic at all.
  EXPECT_EQ(metrics_.hits.Value() + metrics_.misses.Value() + metrics_.not_current.Value(), 0.0);
}

TEST_F(NearCacheTest, GetLocal_NeverCallsFar) {
  far_.values["org:1"] = Value(1, "alpha");
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  EXPECT_TRUE(far_.get_keys.empty());
  EXPECT_TRUE(far_.multi_get_calls.empty());
  EXPECT_EQ(metrics_.misses.Value(), 0.0);  // counted by the Get() that follows, if any
}

TEST_F(NearCacheTest, SetAfterWrite_ReadsOwnWrite) {
  far_.values["org:1"] = Value(1, "old");
  ASSERT_EQ(cache_.Get("org:1"), Value(1, "old"));  // now held locally

  cache_.SetAfterWrite("org:1", Value(2, "new"), kTtl);
  ASSERT_EQ(far_.set_after_writes.size(), 1u);
  EXPECT_EQ(far_.set_after_writes[0].second, Value(2, "new"));
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);

  EXPECT_EQ(cache_.Get("org:1"), Value(2, "new"));
  EXPECT_EQ(FarGets("org:1"), 2u);
  // And the new value is then kept.
  EXPECT_EQ(cache_.GetLocal("org:1"), Value(2, "new"));
}

TEST_F(NearCacheTest, SetAfterWrite_OldValueReadDuringWriteIsNotKept) {
  // Another thread of this process reads the key while the write is on its way to Redis: it gets
  // the old value. That copy must not outlive SetAfterWrite().
  far_.values["org:1"] = Value(1, "old");
  far_.before_write = [&] { EXPECT_EQ(cache_.Get("org:1"), Value(1, "old")); };
  cache_.SetAfterWrite("org:1", Value(2, "new"), kTtl);
  far_.before_write = nullptr;

  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "new"));
}

TEST_F(NearCacheTest, SetAfterWrite_OldCopyNotServedOnceFarHoldsNewValue) {
  // Once Redis holds the new value, other replicas may already serve it; this one must not then
  // answer from its old copy, even before SetAfterWrite() returns.
  far_.values["org:1"] = Value(1, "old");
  ASSERT_EQ(cache_.Get("org:1"), Value(1, "old"));
  std::optional<CachedValue> seen_during_write = Value(0, "hook not run");
  far_.after_write = [&] { seen_during_write = cache_.GetLocal("org:1"); };
  cache_.SetAfterWrite("org:1", Value(2, "new"), kTtl);
  far_.after_write = nullptr;
  EXPECT_EQ(seen_during_write, std::nullopt);
}

TEST_F(NearCacheTest, Get_ValueFetchedDuringInvalidationOfSameKeyIsNotKept) {
  far_.values["org:1"] = Value(1, "maybe-stale");
  far_.during_get = [&](absl::string_view key) { local_.Invalidate(key); };
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "maybe-stale"));  // still returned to the caller
  far_.during_get = nullptr;

  EXPECT_EQ(local_.size(), 0u);
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "maybe-stale"));
  EXPECT_EQ(FarGets("org:1"), 2u);
}

TEST_F(NearCacheTest, Get_ValueFetchedDuringClearIsNotKept) {
  far_.values["org:1"] = Value(1, "maybe-stale");
  far_.during_get = [&](absl::string_view) { local_.Clear(); };
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "maybe-stale"));
  far_.during_get = nullptr;

  EXPECT_EQ(local_.size(), 0u);
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "maybe-stale"));
  EXPECT_EQ(FarGets("org:1"), 2u);
}

TEST_F(NearCacheTest, MultiGet_ValuesFetchedDuringInvalidationAreNotKept) {
  far_.values["org:1"] = Value(1, "a");
  far_.values["org:2"] = Value(1, "b");
  far_.during_multi_get = [&](const std::vector<std::string>&) { local_.Invalidate("org:2"); };
  const std::vector<std::optional<CachedValue>> got = cache_.MultiGet({"org:1", "org:2"});
  far_.during_multi_get = nullptr;
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], Value(1, "a"));
  EXPECT_EQ(got[1], Value(1, "b"));
  // The generation is global, so neither value is kept.
  EXPECT_EQ(local_.size(), 0u);
}

TEST_F(NearCacheTest, Invalidate_DropsLocalCopiesAndForwardsToFar) {
  far_.values["org:1"] = Value(1, "a");
  far_.values["org:2"] = Value(1, "b");
  ASSERT_EQ(cache_.Get("org:1"), Value(1, "a"));
  ASSERT_EQ(cache_.Get("org:2"), Value(1, "b"));
  ASSERT_EQ(local_.size(), 2u);

  cache_.Invalidate({"org:1"});
  ASSERT_EQ(far_.invalidations.size(), 1u);
  EXPECT_EQ(far_.invalidations[0], std::vector<std::string>{"org:1"});
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  EXPECT_EQ(cache_.GetLocal("org:2"), Value(1, "b"));

  far_.values["org:1"] = Value(2, "a2");  // the writer's next fill
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "a2"));
  EXPECT_EQ(FarGets("org:1"), 2u);
}

TEST_F(NearCacheTest, Invalidate_OldValueReadDuringInvalidationIsNotKept) {
  far_.values["org:1"] = Value(1, "old");
  far_.before_write = [&] { EXPECT_EQ(cache_.Get("org:1"), Value(1, "old")); };
  cache_.Invalidate({"org:1"});
  far_.before_write = nullptr;
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  EXPECT_EQ(cache_.Get("org:1"), std::nullopt);  // Redis no longer has it
}

TEST_F(NearCacheTest, MultiGet_MixesLocalHitsAndFarFetchesInOrder) {
  far_.values["org:1"] = Value(1, "one");
  far_.values["org:2"] = Value(2, "two");
  far_.values["org:3"] = Value(3, "three");
  far_.values["member:9"] = Value(9, "nine");
  ASSERT_EQ(cache_.Get("org:1"), Value(1, "one"));
  ASSERT_EQ(cache_.Get("org:3"), Value(3, "three"));
  // Redis changed both behind our back: local hits must win, proving they were served locally.
  far_.values["org:1"] = Value(10, "far-one");
  far_.values["org:3"] = Value(30, "far-three");

  const std::vector<std::string> keys = {"org:1", "org:2", "org:3", "org:404", "member:9"};
  const std::vector<std::optional<CachedValue>> got = cache_.MultiGet(keys);
  ASSERT_EQ(got.size(), keys.size());
  EXPECT_EQ(got[0], Value(1, "one"));
  EXPECT_EQ(got[1], Value(2, "two"));
  EXPECT_EQ(got[2], Value(3, "three"));
  EXPECT_EQ(got[3], std::nullopt);
  EXPECT_EQ(got[4], Value(9, "nine"));

  ASSERT_EQ(far_.multi_get_calls.size(), 1u);
  EXPECT_EQ(far_.multi_get_calls[0], (std::vector<std::string>{"org:2", "org:404", "member:9"}));
  // The covered fetched value is now local; the uncovered one and the miss are not.
  EXPECT_EQ(cache_.GetLocal("org:2"), Value(2, "two"));
  EXPECT_EQ(local_.size(), 3u);
}

TEST_F(NearCacheTest, MultiGet_AllLocalDoesNotCallFar) {
  far_.values["org:1"] = Value(1, "one");
  far_.values["org:2"] = Value(2, "two");
  ASSERT_TRUE(cache_.Get("org:1").has_value());
  ASSERT_TRUE(cache_.Get("org:2").has_value());
  const std::vector<std::optional<CachedValue>> got = cache_.MultiGet({"org:2", "org:1"});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], Value(2, "two"));
  EXPECT_EQ(got[1], Value(1, "one"));
  EXPECT_TRUE(far_.multi_get_calls.empty());
}

TEST_F(NearCacheTest, MultiGet_EmptyKeysReturnsEmpty) {
  EXPECT_TRUE(cache_.MultiGet({}).empty());
  EXPECT_TRUE(far_.multi_get_calls.empty());
}

TEST_F(NearCacheTest, Fill_DoesNotPopulateLocalTier) {
  cache_.Fill("org:1", Value(1, "from-pg"), kTtl);
  ASSERT_EQ(far_.fills.size(), 1u);
  EXPECT_EQ(far_.fills[0].first, "org:1");
  EXPECT_EQ(far_.fills[0].second, Value(1, "from-pg"));
  EXPECT_EQ(local_.size(), 0u);
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);

  EXPECT_EQ(cache_.Get("org:1"), Value(1, "from-pg"));
  EXPECT_EQ(FarGets("org:1"), 1u);
  EXPECT_EQ(local_.size(), 1u);  // kept once Redis returned it
}

TEST_F(NearCacheTest, Counters_PassThroughToFar) {
  EXPECT_EQ(cache_.GetCounter("org:rev"), std::nullopt);
  cache_.RaiseCounter("org:rev", 7, /*after_write=*/true);
  cache_.RaiseCounter("org:rev", 5, /*after_write=*/false);
  EXPECT_EQ(cache_.GetCounter("org:rev"), 7);
  ASSERT_EQ(far_.raises.size(), 2u);
  EXPECT_EQ(far_.raises[0], std::make_tuple(std::string("org:rev"), int64_t{7}, true));
  EXPECT_EQ(far_.raises[1], std::make_tuple(std::string("org:rev"), int64_t{5}, false));
  EXPECT_EQ(far_.counter_gets.size(), 2u);
  // Counters never use the local tier, even under a covered prefix.
  far_.counters["org:rev"] = 9;
  EXPECT_EQ(cache_.GetCounter("org:rev"), 9);
  EXPECT_EQ(local_.size(), 0u);
}

TEST_F(NearCacheTest, NotCurrent_FetchedValueNotServedAfterFeedBecomesCurrent) {
  feed_.Lose();
  far_.values["org:1"] = Value(1, "read-while-deaf");
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "read-while-deaf"));
  // The change is not announced: the feed is not listening.
  far_.values["org:1"] = Value(2, "changed");
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "changed"));  // not current: always Redis

  feed_.BecomeCurrent(local_);
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "changed"));
  EXPECT_EQ(FarGets("org:1"), 3u);
  // Now vouched for, it is served locally.
  EXPECT_EQ(cache_.Get("org:1"), Value(2, "changed"));
  EXPECT_EQ(FarGets("org:1"), 3u);
}

TEST_F(NearCacheTest, NotCurrent_ReadRacingBecomingCurrentIsNotKept) {
  // A read starts while the feed is deaf; the feed becomes current (clearing) before Redis
  // answers. What Redis said may predate the subscription, so it must not be kept.
  feed_.Lose();
  far_.values["org:1"] = Value(1, "old");
  far_.during_get = [&](absl::string_view) { feed_.BecomeCurrent(local_); };
  EXPECT_EQ(cache_.Get("org:1"), Value(1, "old"));
  far_.during_get = nullptr;
  EXPECT_EQ(local_.size(), 0u);
  EXPECT_EQ(cache_.GetLocal("org:1"), std::nullopt);
}

TEST(NearCacheNoLocalTest, ZeroCapacity_AlwaysAsksFarAndCountsNothing) {
  FakeClock clock;
  FakeFarCache far;
  LocalCache local(LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/0,
                                     absl::Minutes(1), /*shards=*/4},
                   clock);
  FakeFeed feed("org:");
  prometheus::Registry registry;
  metrics::LocalCacheMetrics metrics(registry);
  NearCache cache(far, local, feed, &metrics);

  far.values["org:1"] = Value(1, "a");
  EXPECT_EQ(cache.Get("org:1"), Value(1, "a"));
  EXPECT_EQ(cache.Get("org:1"), Value(1, "a"));
  EXPECT_EQ(far.get_keys.size(), 2u);
  EXPECT_EQ(cache.GetLocal("org:1"), std::nullopt);
  EXPECT_EQ(metrics.hits.Value() + metrics.misses.Value() + metrics.not_current.Value(), 0.0);
}

TEST(NearCacheNoMetricsTest, NullMetrics_Works) {
  FakeClock clock;
  FakeFarCache far;
  LocalCache local(LocalCacheOptions{/*max_bytes=*/size_t{1} << 30, /*max_entries=*/10,
                                     absl::Minutes(1), /*shards=*/1},
                   clock);
  FakeFeed feed("org:");
  NearCache cache(far, local, feed, /*metrics=*/nullptr);

  far.values["org:1"] = Value(1, "a");
  EXPECT_EQ(cache.Get("org:1"), Value(1, "a"));
  EXPECT_EQ(cache.Get("org:1"), Value(1, "a"));
  EXPECT_EQ(far.get_keys.size(), 1u);
  feed.Lose();
  EXPECT_EQ(cache.GetLocal("org:1"), std::nullopt);
}

}  // namespace
}  // namespace dangjian::cache
