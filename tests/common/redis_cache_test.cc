// RedisCache against a real redis-server from the harness, one server per test: versioned
// entries, counters, MultiGet, and the fault paths (Redis killed, paused, refusing writes) with
// the breaker's clock under the test's control.
#include "common/cache/redis_cache.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/testing/harness.h"
#include "gmock/gmock.h"

namespace dangjian::cache {

// Readable failure messages (found by argument-dependent lookup, so not in the unnamed namespace).
void PrintTo(const CachedValue& value, std::ostream* os) {
  *os << "{version=" << value.version << ", data=\"" << absl::CEscape(value.data) << "\"}";
}

namespace {

using State = CircuitBreaker::State;

constexpr absl::Duration kInterval = absl::Milliseconds(200);
constexpr absl::Duration kTtl = absl::Seconds(60);
constexpr absl::Duration kPollTimeout = absl::Seconds(10);
constexpr char kPrefix[] = "t:";

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// A plain hiredis connection for looking at what the cache stored, behind its back.
class RawRedis {
 public:
  explicit RawRedis(int port) : ctx_(redisConnect("127.0.0.1", port)) {}
  ~RawRedis() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  bool ok() const { return ctx_ != nullptr && ctx_->err == 0; }

  Reply Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& arg : args) {
      argv.push_back(arg.data());
      lens.push_back(arg.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data())));
  }
  // The string at `key`, nullopt if absent.
  std::optional<std::string> Get(const std::string& key) {
    Reply reply = Command({"GET", key});
    if (reply == nullptr || reply->type != REDIS_REPLY_STRING) return std::nullopt;
    return std::string(reply->str, reply->len);
  }
  int64_t Integer(const std::vector<std::string>& args) {
    Reply reply = Command(args);
    return reply != nullptr && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
  }
  // Calls of `command` since start, from INFO commandstats (e.g. "mget", "client|kill").
  int64_t Calls(absl::string_view command) {
    Reply reply = Command({"INFO", "commandstats"});
    if (reply == nullptr || reply->type != REDIS_REPLY_STRING) return -1;
    const std::string prefix = absl::StrCat("cmdstat_", command, ":calls=");
    for (absl::string_view line :
         absl::StrSplit(absl::string_view(reply->str, reply->len), "\r\n")) {
      if (!absl::ConsumePrefix(&line, prefix)) continue;
      int64_t calls = 0;
      if (absl::SimpleAtoi(line.substr(0, line.find(',')), &calls)) return calls;
    }
    return 0;
  }

 private:
  redisContext* ctx_;
};

CachedValue Value(int64_t version, std::string data) {
  return CachedValue{version, std::move(data)};
}

class RedisCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = testing::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    cache_ = MakeCache(clock_);
  }

  RedisOptions Options() const {
    RedisOptions options;
    options.host = "127.0.0.1";
    options.port = server_->port();
    options.pool_size = 2;
    options.connect_timeout = absl::Milliseconds(200);
    options.command_timeout = absl::Milliseconds(100);
    options.breaker_open_interval = kInterval;
    // The fault tests below follow the breaker one failure at a time: any failure trips it.
    // (Tripping on a ratio over a window is circuit_breaker_test's business.)
    options.breaker_min_calls = 1;
    options.breaker_failure_ratio = 0;
    options.key_prefix = kPrefix;
    return options;
  }
  std::unique_ptr<RedisCache> MakeCache(Clock& clock) {
    return std::make_unique<RedisCache>(Options(), &metrics_, clock);
  }
  RawRedis Raw() const { return RawRedis(server_->port()); }

  double errors() const { return metrics_.errors.Value(); }
  double skipped() const { return metrics_.skipped.Value(); }

  prometheus::Registry registry_;
  metrics::CacheMetrics metrics_{registry_};
  FakeClock clock_;
  std::unique_ptr<testing::RedisServer> server_;
  std::unique_ptr<RedisCache> cache_;
};

// --- Plain cache behaviour -----------------------------------------------------------------------

TEST_F(RedisCacheTest, Get_MissesForAbsentKey) {
  EXPECT_EQ(cache_->Get("nothing"), std::nullopt);
  EXPECT_EQ(metrics_.misses.Value(), 1);
  EXPECT_EQ(errors(), 0);
}

TEST_F(RedisCacheTest, Fill_ThenGetReturnsValueBinarySafe) {
  const std::string data("a\0b:c\r\n\xff", 8);
  cache_->Fill("org/1", Value(7, data), kTtl);
  EXPECT_EQ(cache_->Get("org/1"), Value(7, data));
  EXPECT_EQ(metrics_.hits.Value(), 1);
  // Stored under the prefix, with the TTL as a backstop.
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  EXPECT_TRUE(raw.Get("t:org/1").has_value());
  EXPECT_FALSE(raw.Get("org/1").has_value());
  const int64_t pttl = raw.Integer({"PTTL", "t:org/1"});
  EXPECT_GT(pttl, 0);
  EXPECT_LE(pttl, absl::ToInt64Milliseconds(kTtl));
}

TEST_F(RedisCacheTest, SetIfNewer_RefusesOlderOrEqualVersion) {
  cache_->SetAfterWrite("k", Value(5, "five"), kTtl);
  cache_->Fill("k", Value(4, "four"), kTtl);  // a reader that loaded the row before the write
  EXPECT_EQ(cache_->Get("k"), Value(5, "five"));
  cache_->SetAfterWrite("k", Value(4, "four"), kTtl);
  EXPECT_EQ(cache_->Get("k"), Value(5, "five"));
  cache_->Fill("k", Value(5, "other five"), kTtl);
  EXPECT_EQ(cache_->Get("k"), Value(5, "five"));
  cache_->Fill("k", Value(6, "six"), kTtl);
  EXPECT_EQ(cache_->Get("k"), Value(6, "six"));
  EXPECT_EQ(cache_->pending(), 0u);
}

TEST_F(RedisCacheTest, SetIfNewer_ComparesVersionsExactlyAcrossWholeRange) {
  // 2^53 + 1 and 2^53 are the same double: a Lua tonumber() comparison would get this wrong.
  const int64_t big = (int64_t{1} << 53) + 1;
  cache_->Fill("big", Value(big, "newer"), kTtl);
  cache_->Fill("big", Value(big - 1, "older"), kTtl);
  EXPECT_EQ(cache_->Get("big"), Value(big, "newer"));

  cache_->Fill("neg", Value(-5, "minus five"), kTtl);
  cache_->Fill("neg", Value(-3, "minus three"), kTtl);
  cache_->Fill("neg", Value(-4, "minus four"), kTtl);
  EXPECT_EQ(cache_->Get("neg"), Value(-3, "minus three"));

  cache_->Fill("max", Value(INT64_MAX, "max"), kTtl);
  cache_->Fill("max", Value(INT64_MIN, "min"), kTtl);
  EXPECT_EQ(cache_->Get("max"), Value(INT64_MAX, "max"));
}

TEST_F(RedisCacheTest, Get_TreatsForeignValueAsMissAndFillReplacesIt) {
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  raw.Command({"SET", "t:junk", "not an entry"});
  EXPECT_EQ(cache_->Get("junk"), std::nullopt);
  cache_->Fill("junk", Value(1, "entry"), kTtl);
  EXPECT_EQ(cache_->Get("junk"), Value(1, "entry"));
}

TEST_F(RedisCacheTest, MultiGet_ReturnsValuesInKeyOrderInOneMget) {
  cache_->Fill("a", Value(1, "A"), kTtl);
  cache_->Fill("b", Value(2, "B"), kTtl);
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  const int64_t mgets = raw.Calls("mget");
  const int64_t gets = raw.Calls("get");

  const std::vector<std::optional<CachedValue>> got = cache_->MultiGet({"b", "missing", "a", "b"});
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], Value(2, "B"));
  EXPECT_EQ(got[1], std::nullopt);
  EXPECT_EQ(got[2], Value(1, "A"));
  EXPECT_EQ(got[3], Value(2, "B"));
  EXPECT_EQ(raw.Calls("mget"), mgets + 1);
  EXPECT_EQ(raw.Calls("get"), gets);

  EXPECT_TRUE(cache_->MultiGet({}).empty());
}

TEST_F(RedisCacheTest, Counter_OnlyRises) {
  EXPECT_EQ(cache_->GetCounter("rev"), std::nullopt);
  cache_->RaiseCounter("rev", 5, /*after_write=*/false);
  EXPECT_EQ(cache_->GetCounter("rev"), 5);
  cache_->RaiseCounter("rev", 3, /*after_write=*/true);
  EXPECT_EQ(cache_->GetCounter("rev"), 5);
  cache_->RaiseCounter("rev", 5, /*after_write=*/true);
  EXPECT_EQ(cache_->GetCounter("rev"), 5);
  cache_->RaiseCounter("rev", 9, /*after_write=*/true);
  EXPECT_EQ(cache_->GetCounter("rev"), 9);
  // A counter expires some time after it last rose, like every entry.
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  const int64_t pttl = raw.Integer({"PTTL", "t:rev"});
  EXPECT_GT(pttl, 0);
  EXPECT_LE(pttl, absl::ToInt64Milliseconds(RedisOptions().counter_ttl));
}

TEST_F(RedisCacheTest, EveryWriteSetsATtlEvenWhenAskedForNone) {
  cache_->Fill("a", Value(1, "A"), absl::InfiniteDuration());
  cache_->SetAfterWrite("b", Value(1, "B"), absl::InfiniteDuration());
  cache_->Fill("c", Value(1, "C"), absl::ZeroDuration());
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  for (const char* key : {"t:a", "t:b"}) {
    EXPECT_GT(raw.Integer({"PTTL", key}), 0) << key;
    EXPECT_LE(raw.Integer({"PTTL", key}), absl::ToInt64Milliseconds(absl::Hours(24))) << key;
  }
  EXPECT_NE(raw.Integer({"PTTL", "t:c"}), -1);  // 1 ms: gone, or about to be
}

TEST_F(RedisCacheTest, SetIfNewer_OverwritesAPlantedEntryWithoutTtlWhateverItsVersion) {
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  // Someone with access to Redis plants a far-future version with no expiry.
  const std::string planted = "7fffffffffffffff:forged";
  ASSERT_NE(raw.Command({"SET", "t:k", planted}), nullptr);
  cache_->SetAfterWrite("k", Value(2, "real"), kTtl);
  EXPECT_EQ(cache_->Get("k"), Value(2, "real"));
  EXPECT_GT(raw.Integer({"PTTL", "t:k"}), 0);
}

TEST_F(RedisCacheTest, Invalidate_DeletesOnlyTheGivenKeys) {
  cache_->Fill("a", Value(1, "A"), kTtl);
  cache_->Fill("b", Value(1, "B"), kTtl);
  cache_->Fill("c", Value(1, "C"), kTtl);
  cache_->Invalidate({"a", "c", "never-there"});
  EXPECT_EQ(cache_->Get("a"), std::nullopt);
  EXPECT_EQ(cache_->Get("b"), Value(1, "B"));
  EXPECT_EQ(cache_->Get("c"), std::nullopt);
  // After an invalidation any version may fill again.
  cache_->Fill("a", Value(0, "A0"), kTtl);
  EXPECT_EQ(cache_->Get("a"), Value(0, "A0"));
}

// --- Faults ------------------------------------------------------------------------------------

TEST_F(RedisCacheTest, RedisDownAtStart_CacheStartsAndMisses) {
  server_->Kill();
  auto cache = MakeCache(clock_);  // must not fail or block
  EXPECT_EQ(cache->Get("k"), std::nullopt);
  EXPECT_EQ(cache->MultiGet({"a", "b"}), std::vector<std::optional<CachedValue>>(2));
  EXPECT_EQ(cache->breaker_state(), State::kOpen);
  EXPECT_EQ(errors(), 1);
  EXPECT_EQ(skipped(), 1);

  ASSERT_TRUE(server_->Restart().ok());
  clock_.Advance(kInterval);
  cache->Fill("k", Value(1, "one"), kTtl);
  EXPECT_EQ(cache->Get("k"), Value(1, "one"));
  EXPECT_EQ(cache->breaker_state(), State::kClosed);
}

TEST_F(RedisCacheTest, RedisKilled_CallsMissWithOneFailurePerInterval) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  ASSERT_EQ(cache_->Get("k"), Value(1, "one"));
  server_->Kill();

  for (int i = 0; i < 50; ++i) EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(cache_->MultiGet({"k"}), std::vector<std::optional<CachedValue>>(1));
  EXPECT_EQ(cache_->GetCounter("rev"), std::nullopt);
  cache_->Fill("k", Value(2, "two"), kTtl);
  EXPECT_EQ(cache_->breaker_state(), State::kOpen);
  EXPECT_EQ(errors(), 1);  // only the first call tried Redis
  EXPECT_EQ(skipped(), 52);
  EXPECT_EQ(metrics_.breaker_trips.Value(), 1);
  EXPECT_EQ(metrics_.breaker_open.Value(), 1);

  clock_.Advance(kInterval - absl::Milliseconds(1));
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(errors(), 1);
  clock_.Advance(absl::Milliseconds(1));
  // One probe per interval, and it fails again; the rest are still skipped.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(errors(), 2);
  EXPECT_EQ(metrics_.breaker_trips.Value(), 2);
}

TEST_F(RedisCacheTest, RedisKilled_WritesPendUntilReplayedAfterRestart) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  cache_->Fill("gone", Value(1, "old"), kTtl);
  server_->Kill();
  EXPECT_EQ(cache_->Get("k"), std::nullopt);  // trips the breaker
  ASSERT_EQ(cache_->breaker_state(), State::kOpen);

  // Commits that happened while Redis was down.
  cache_->SetAfterWrite("k", Value(2, "two"), kTtl);
  cache_->Invalidate({"gone"});
  cache_->RaiseCounter("rev", 2, /*after_write=*/true);
  cache_->RaiseCounter("best-effort", 1, /*after_write=*/false);  // not remembered
  cache_->Fill("k", Value(1, "one"), kTtl);                       // not remembered
  EXPECT_EQ(cache_->pending(), 3u);

  // Redis comes back holding the old entries (as one with persistence would).
  ASSERT_TRUE(server_->Restart().ok());
  {
    auto seeder = MakeCache(RealClock::Get());
    seeder->Fill("k", Value(1, "one"), kTtl);
    seeder->Fill("gone", Value(1, "old"), kTtl);
    seeder->RaiseCounter("rev", 1, false);
  }
  // Still inside the interval: nothing is asked, and nothing old is returned.
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(cache_->Get("gone"), std::nullopt);
  EXPECT_EQ(cache_->GetCounter("rev"), std::nullopt);

  clock_.Advance(kInterval);
  // The first allowed call replays the writes, in order, before its own read.
  EXPECT_EQ(cache_->Get("k"), Value(2, "two"));
  EXPECT_EQ(cache_->pending(), 0u);
  EXPECT_EQ(cache_->Get("gone"), std::nullopt);
  EXPECT_EQ(cache_->GetCounter("rev"), 2);
  EXPECT_EQ(cache_->GetCounter("best-effort"), std::nullopt);
  EXPECT_EQ(cache_->breaker_state(), State::kClosed);
  EXPECT_EQ(metrics_.breaker_open.Value(), 0);
}

TEST_F(RedisCacheTest, RedisKilled_ReplayKeepsWriteOrder) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  server_->Kill();
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  cache_->SetAfterWrite("k", Value(2, "two"), kTtl);
  cache_->Invalidate({"k"});  // a later commit invalidated it again
  cache_->SetAfterWrite("j", Value(3, "three"), kTtl);
  cache_->Invalidate({"j"});
  cache_->SetAfterWrite("j", Value(1, "one again"), kTtl);  // after a delete any version goes
  EXPECT_EQ(cache_->pending(), 5u);
  ASSERT_TRUE(server_->Restart().ok());
  clock_.Advance(kInterval);
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(cache_->Get("j"), Value(1, "one again"));
  EXPECT_EQ(cache_->pending(), 0u);
}

TEST_F(RedisCacheTest, PendingOverflow_FlushesPrefixOnReplay) {
  server_->Kill();
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  for (int i = 0; i < 1100; ++i) {
    cache_->SetAfterWrite(absl::StrCat("k", i), Value(2, "new"), kTtl);
  }
  // The 1025th found the queue full: it and the 1024 before it became one "flush everything";
  // the 75 after it are queued behind the flush.
  EXPECT_EQ(cache_->pending(), 1u + 75u);

  ASSERT_TRUE(server_->Restart().ok());
  {
    auto seeder = MakeCache(RealClock::Get());
    for (int i = 0; i < 1100; ++i) seeder->Fill(absl::StrCat("k", i), Value(1, "old"), kTtl);
  }
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  raw.Command({"SET", "other:k0", "not ours"});

  clock_.Advance(kInterval);
  EXPECT_EQ(cache_->Get("k0"), std::nullopt);  // flushed
  EXPECT_EQ(cache_->pending(), 0u);
  EXPECT_EQ(cache_->Get("k1099"), Value(2, "new"));  // replayed after the flush
  EXPECT_EQ(cache_->Get("k1024"), std::nullopt);     // dropped, and covered by the flush
  for (int i = 0; i < 1024; i += 97) {
    EXPECT_EQ(cache_->Get(absl::StrCat("k", i)), std::nullopt) << i;
  }
  EXPECT_EQ(raw.Get("other:k0"), "not ours");  // outside the prefix
}

TEST_F(RedisCacheTest, WriteRefusedByRedis_ReadsNeverSeeOldValueUntilReplayed) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  // Redis answers reads but refuses writes (out of memory).
  raw.Command({"CONFIG", "SET", "maxmemory-policy", "noeviction"});
  raw.Command({"CONFIG", "SET", "maxmemory", "1"});

  cache_->SetAfterWrite("k", Value(2, "two"), kTtl);
  EXPECT_EQ(cache_->pending(), 1u);
  EXPECT_EQ(errors(), 1);
  for (int round = 0; round < 3; ++round) {
    clock_.Advance(kInterval);
    // Allowed, Redis answers, the replay is refused again: still a miss, never "one".
    EXPECT_EQ(cache_->Get("k"), std::nullopt);
    EXPECT_EQ(cache_->pending(), 1u);
  }
  EXPECT_EQ(errors(), 4);
  ASSERT_TRUE(raw.Get("t:k").has_value());  // the old entry is still in Redis

  raw.Command({"CONFIG", "SET", "maxmemory", "0"});
  clock_.Advance(kInterval);
  EXPECT_EQ(cache_->Get("k"), Value(2, "two"));
  EXPECT_EQ(cache_->pending(), 0u);
}

TEST_F(RedisCacheTest, RedisPaused_CommandTimeoutTripsBreakerOncePerInterval) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  ASSERT_EQ(cache_->Get("k"), Value(1, "one"));
  server_->Pause();

  EXPECT_EQ(cache_->Get("k"), std::nullopt);  // times out
  EXPECT_EQ(cache_->breaker_state(), State::kOpen);
  EXPECT_EQ(errors(), 1);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(errors(), 1);
  EXPECT_EQ(skipped(), 20);

  clock_.Advance(kInterval);
  EXPECT_EQ(cache_->Get("k"), std::nullopt);  // the probe times out too
  for (int i = 0; i < 20; ++i) EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(errors(), 2);
  EXPECT_EQ(metrics_.breaker_trips.Value(), 2);

  server_->Resume();
  clock_.Advance(kInterval);
  EXPECT_EQ(cache_->Get("k"), Value(1, "one"));
  EXPECT_EQ(cache_->breaker_state(), State::kClosed);
}

TEST_F(RedisCacheTest, RedisPaused_ConcurrentCallersCostAtMostOneTimeoutPerConnection) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  ASSERT_EQ(cache_->Get("k"), Value(1, "one"));
  server_->Pause();
  // Twelve callers at once on a pool of two: two of them time out; those waiting for a
  // connection find the breaker open when they get one, and skip.
  constexpr int kCallers = 12;
  std::atomic<bool> go{false};
  std::atomic<int> hits{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      if (cache_->Get("k").has_value()) hits.fetch_add(1);
    });
  }
  go.store(true);
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(hits.load(), 0);
  EXPECT_LE(errors(), Options().pool_size);
  EXPECT_EQ(errors() + skipped(), kCallers);
  EXPECT_EQ(metrics_.breaker_trips.Value(), 1);
  server_->Resume();
}

TEST_F(RedisCacheTest, RedisPaused_TimedOutWriteIsFencedAndReplayed) {
  cache_->Fill("k", Value(1, "one"), kTtl);
  ASSERT_EQ(cache_->Get("k"), Value(1, "one"));
  server_->Pause();
  cache_->SetAfterWrite("k", Value(2, "two"), kTtl);  // sent, never answered
  // The operation, and the connection it went out on, to be killed before anything else.
  EXPECT_EQ(cache_->pending(), 2u);
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  server_->Resume();

  RawRedis raw = Raw();
  ASSERT_TRUE(raw.ok());
  const int64_t kills = raw.Calls("client|kill");
  clock_.Advance(kInterval);
  EXPECT_EQ(cache_->Get("k"), Value(2, "two"));
  EXPECT_EQ(cache_->pending(), 0u);
  EXPECT_EQ(raw.Calls("client|kill"), kills + 1);
}

TEST_F(RedisCacheTest, RedisPaused_ResumeRecoversAfterInterval) {
  auto cache = MakeCache(RealClock::Get());
  cache->Fill("k", Value(1, "one"), kTtl);
  ASSERT_EQ(cache->Get("k"), Value(1, "one"));
  server_->Pause();
  EXPECT_EQ(cache->Get("k"), std::nullopt);
  EXPECT_EQ(cache->breaker_state(), State::kOpen);
  EXPECT_EQ(metrics_.breaker_trips.Value(), 1);
  server_->Resume();
  EXPECT_TRUE(testing::PollUntil([&] { return cache->Get("k") == Value(1, "one"); }, kPollTimeout));
  EXPECT_EQ(cache->breaker_state(), State::kClosed);
}

TEST_F(RedisCacheTest, RedisPaused_OneTimeoutUnderLoadDoesNotOpenBreakerWithDefaults) {
  RedisOptions options = Options();
  const RedisOptions defaults;
  options.breaker_min_calls = defaults.breaker_min_calls;
  options.breaker_failure_ratio = defaults.breaker_failure_ratio;
  RedisCache cache(options, &metrics_, clock_);
  cache.Fill("k", Value(1, "one"), kTtl);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(cache.Get("k"), Value(1, "one"));
  server_->Pause();
  EXPECT_EQ(cache.Get("k"), std::nullopt);  // one timeout
  server_->Resume();
  EXPECT_EQ(cache.breaker_state(), State::kClosed);
  EXPECT_EQ(metrics_.breaker_open.Value(), 0);
  EXPECT_EQ(metrics_.breaker_trips.Value(), 0);
  EXPECT_EQ(cache.Get("k"), Value(1, "one"));
}

TEST_F(RedisCacheTest, BreakerGauge_FallsToZeroWhenIntervalEndsOnAnIdleCache) {
  server_->Kill();
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  ASSERT_EQ(cache_->breaker_state(), State::kOpen);
  EXPECT_EQ(metrics_.breaker_open.Value(), 1);
  // No call comes after the interval: the breaker is no longer open, and the gauge says so.
  clock_.Advance(kInterval);
  EXPECT_NE(cache_->breaker_state(), State::kOpen);
  EXPECT_TRUE(testing::PollUntil([&] { return metrics_.breaker_open.Value() == 0; }, kPollTimeout));
  // The probe fails again: open again, gauge 1.
  EXPECT_EQ(cache_->Get("k"), std::nullopt);
  EXPECT_EQ(metrics_.breaker_open.Value(), 1);
}

// --- Password ------------------------------------------------------------------------------------

TEST(RedisPasswordFileTest, ReadsPasswordLessOneTrailingNewline) {
  const std::string dir = ::testing::TempDir();
  const auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::trunc) << text;
    return path;
  };
  EXPECT_EQ(*ReadRedisPasswordFile(write("pw1", "s3cret\n")), "s3cret");
  EXPECT_EQ(*ReadRedisPasswordFile(write("pw2", "s3cret")), "s3cret");
  EXPECT_EQ(*ReadRedisPasswordFile(write("pw3", "s3 cret\r\n")), "s3 cret");
  EXPECT_EQ(*ReadRedisPasswordFile(write("pw4", "two\nlines\n\n")), "two\nlines\n");
  for (const std::string& bad : {write("empty", ""), write("newline", "\n"), dir + "/absent"}) {
    absl::StatusOr<std::string> password = ReadRedisPasswordFile(bad);
    EXPECT_EQ(password.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(password.status().message()), ::testing::HasSubstr(bad));
  }
}

constexpr char kPassword[] = "correct horse battery";

class RedisPasswordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = testing::RedisServer::Start(kPassword);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  RedisOptions Options(std::string password) const {
    RedisOptions options;
    options.port = server_->port();
    options.pool_size = 1;
    options.password = std::move(password);
    options.key_prefix = kPrefix;
    return options;
  }
  // The reason AuthenticateRedis() gives on a fresh connection with `password`.
  std::string AuthError(const std::string& password) {
    redisContext* ctx = redisConnect("127.0.0.1", server_->port());
    EXPECT_TRUE(ctx != nullptr && ctx->err == 0);
    std::string why = AuthenticateRedis(ctx, Options(password));
    redisFree(ctx);
    return why;
  }

  prometheus::Registry registry_;
  metrics::CacheMetrics metrics_{registry_};
  std::unique_ptr<testing::RedisServer> server_;
};

TEST_F(RedisPasswordTest, RightPassword_CacheWorks) {
  EXPECT_EQ(AuthError(kPassword), "");
  RedisCache cache(Options(kPassword), &metrics_);
  cache.Fill("k", Value(1, "one"), kTtl);
  EXPECT_EQ(cache.Get("k"), Value(1, "one"));
  EXPECT_EQ(metrics_.errors.Value(), 0);
}

TEST_F(RedisPasswordTest, WrongOrNoPassword_MissesAndSaysAuthenticationNeverThePassword) {
  EXPECT_THAT(AuthError("wrong password"), ::testing::HasSubstr("authentication"));
  EXPECT_THAT(AuthError(""), ::testing::HasSubstr("authentication"));
  for (const std::string password : {"wrong password", ""}) {
    RedisCache cache(Options(password), &metrics_);
    ::testing::internal::CaptureStderr();
    cache.Fill("k", Value(1, "one"), kTtl);
    EXPECT_EQ(cache.Get("k"), std::nullopt);  // a miss, not a failure of the caller
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(log, ::testing::HasSubstr("authentication"));
    if (!password.empty()) {
      EXPECT_THAT(log, ::testing::Not(::testing::HasSubstr(password)));
    }
  }
  EXPECT_GE(metrics_.errors.Value(), 2);
  // Nothing was written without the password.
  RedisCache good(Options(kPassword), &metrics_);
  EXPECT_EQ(good.Get("k"), std::nullopt);
}

}  // namespace
}  // namespace dangjian::cache
