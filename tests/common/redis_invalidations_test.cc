// RedisInvalidationFeed and NearCache against a real redis-server from the harness: announcements
// of changes made by other clients (plain SET, our Lua write script, FLUSHALL), what is not
// tracked, losing Redis (killed, paused) and coming back, and two replicas sharing one Redis.
#include "common/cache/redis_invalidations.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <prometheus/registry.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/cache/local_cache.h"
#include "common/cache/near_cache.h"
#include "common/cache/redis_cache.h"
#include "common/metrics.h"
#include "common/testing/harness.h"

namespace dangjian::cache {
namespace {

using dangjian::testing::PollUntil;
using dangjian::testing::RedisServer;

constexpr char kPrefix[] = "dj:test:";
// The production default. Much shorter and a loaded machine (a sanitizer build, parallel tests)
// can miss a PONG deadline, which resets the local tier and breaks tests that count on it.
constexpr absl::Duration kPing = absl::Seconds(1);
constexpr absl::Duration kWait = absl::Seconds(10);

// One replica's cache stack: Redis tier, local tier, feed, and the near cache over them.
struct Replica {
  explicit Replica(const RedisOptions& options)
      : far(options, nullptr),
        local(LocalCacheOptions{}),
        feed(options, {"org:"}, local, &metrics, kPing),
        near(far, local, feed, &metrics) {}
  prometheus::Registry registry;
  metrics::LocalCacheMetrics metrics{registry};
  RedisCache far;
  LocalCache local;
  RedisInvalidationFeed feed;
  NearCache near;
};

class RedisInvalidationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    options_.port = server_->port();
    options_.key_prefix = kPrefix;
    options_.breaker_open_interval = absl::Milliseconds(100);
  }

  // A client of our own, standing in for another service or replica writing to Redis.
  void Raw(const std::string& command) {
    redisContext* ctx = redisConnect("127.0.0.1", server_->port());
    ASSERT_NE(ctx, nullptr);
    ASSERT_EQ(ctx->err, 0) << ctx->errstr;
    auto* reply = static_cast<redisReply*>(redisCommand(ctx, command.c_str()));
    ASSERT_NE(reply, nullptr);
    EXPECT_NE(reply->type, REDIS_REPLY_ERROR) << reply->str;
    freeReplyObject(reply);
    redisFree(ctx);
  }

  // Reads `key` through `near` until memory holds it (a fill is dropped when an announcement,
  // e.g. of the write that stored it, lands between the Redis read and the fill); returns
  // what memory then holds.
  static std::string ReadUntilHeld(NearCache& near, const std::string& key) {
    std::optional<CachedValue> held;
    PollUntil(
        [&] {
          (void)near.Get(key);
          held = near.GetLocal(key);
          return held.has_value();
        },
        kWait);
    return held ? held->data : "(not held)";
  }

  // A local tier and its feed, subscribed (the test fails at once if it never gets there).
  struct Subscribed {
    explicit Subscribed(const RedisOptions& options)
        : feed(options, {"org:"}, local, &metrics, kPing) {
      EXPECT_TRUE(PollUntil([&] { return feed.Current(); }, kWait)) << "never subscribed";
    }
    prometheus::Registry registry;
    metrics::LocalCacheMetrics metrics{registry};
    LocalCache local{LocalCacheOptions{}};
    RedisInvalidationFeed feed;
  };

  static bool Keep(LocalCache& local, const std::string& key, int64_t version) {
    return local.PutIfUnchanged(key, {version, absl::StrCat("v", version)}, local.generation());
  }

  std::unique_ptr<RedisServer> server_;
  RedisOptions options_;
};

TEST_F(RedisInvalidationsTest, Feed_BecomesCurrentOnceSubscribed) {
  LocalCache local(LocalCacheOptions{});
  RedisInvalidationFeed feed(options_, {"org:"}, local, nullptr, kPing);
  EXPECT_TRUE(PollUntil([&] { return feed.Current(); }, kWait));
  EXPECT_EQ(feed.subscriptions(), 1);
  EXPECT_TRUE(feed.Covers("org:12"));
  EXPECT_FALSE(feed.Covers("list:3:abc"));
}

TEST(RedisInvalidationsPasswordTest, Feed_AuthenticatesWithThePassword) {
  auto server = RedisServer::Start("feed secret");
  ASSERT_TRUE(server.ok()) << server.status();
  RedisOptions wrong;
  wrong.port = (*server)->port();
  wrong.key_prefix = kPrefix;
  wrong.password = "not it";
  RedisOptions right = wrong;
  right.password = "feed secret";
  LocalCache wrong_local(LocalCacheOptions{});
  RedisInvalidationFeed wrong_feed(wrong, {"org:"}, wrong_local, nullptr, kPing);
  LocalCache right_local(LocalCacheOptions{});
  RedisInvalidationFeed right_feed(right, {"org:"}, right_local, nullptr, kPing);
  EXPECT_TRUE(PollUntil([&] { return right_feed.Current(); }, kWait));
  EXPECT_FALSE(wrong_feed.Current());
  EXPECT_EQ(wrong_feed.subscriptions(), 0);
}

TEST_F(RedisInvalidationsTest, Feed_ChangeByAnotherClientDropsOnlyThatKey) {
  Subscribed sub(options_);
  LocalCache& local = sub.local;
  ASSERT_TRUE(Keep(local, "org:1", 1));
  ASSERT_TRUE(Keep(local, "org:2", 1));
  ASSERT_TRUE(Keep(local, "list:1", 1));  // outside the tracked prefix

  Raw("SET dj:test:list:1 other");  // not announced
  Raw("SET dj:test:org:1 changed");
  // Announcements arrive in order: once org:1 is gone, a list:1 announcement would have been too.
  EXPECT_TRUE(PollUntil([&] { return !local.Get("org:1").has_value(); }, kWait));
  EXPECT_TRUE(local.Get("org:2").has_value());
  EXPECT_TRUE(local.Get("list:1").has_value());
}

TEST_F(RedisInvalidationsTest, Feed_KeysOfAnotherPrefixAreNotAnnounced) {
  Subscribed sub(options_);
  LocalCache& local = sub.local;
  ASSERT_TRUE(Keep(local, "org:7", 1));
  ASSERT_TRUE(Keep(local, "org:8", 1));
  Raw("SET dj:other:org:7 x");  // another service's key space
  Raw("SET dj:test:org:8 x");
  EXPECT_TRUE(PollUntil([&] { return !local.Get("org:8").has_value(); }, kWait));
  EXPECT_TRUE(local.Get("org:7").has_value());
}

TEST_F(RedisInvalidationsTest, Feed_WriteThroughRedisCacheScriptIsAnnounced) {
  Subscribed sub(options_);
  LocalCache& local = sub.local;
  ASSERT_TRUE(Keep(local, "org:3", 1));
  RedisCache writer(options_, nullptr);
  writer.SetAfterWrite("org:3", {2, "v2"}, absl::Minutes(1));
  EXPECT_TRUE(PollUntil([&] { return !local.Get("org:3").has_value(); }, kWait));
}

TEST_F(RedisInvalidationsTest, Feed_FlushAllEmptiesLocalTier) {
  Subscribed sub(options_);
  auto& [registry, metrics, local, feed] = sub;
  ASSERT_TRUE(Keep(local, "org:1", 1));
  ASSERT_TRUE(Keep(local, "org:2", 1));
  Raw("FLUSHALL");
  EXPECT_TRUE(PollUntil([&] { return local.size() == 0; }, kWait));
  EXPECT_EQ(metrics.feed_resets.Value(), 1);
}

TEST_F(RedisInvalidationsTest, Feed_RedisKilled_NotCurrentThenResubscribesAndEmptiesLocal) {
  Subscribed sub(options_);
  auto& [registry, metrics, local, feed] = sub;
  ASSERT_TRUE(Keep(local, "org:1", 1));
  EXPECT_EQ(metrics.feed_current.Value(), 1);

  server_->Kill();
  // Current() may also be false for a moment while a reply is read; the gauge marks the loss.
  EXPECT_TRUE(PollUntil([&] { return metrics.feed_current.Value() == 0; }, kWait));
  EXPECT_FALSE(feed.Current());
  EXPECT_EQ(local.size(), 0u);
  // Kept while deaf (as a read racing the loss might): must not survive the resubscription.
  ASSERT_TRUE(Keep(local, "org:2", 1));

  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(PollUntil([&] { return feed.Current(); }, kWait));
  EXPECT_EQ(feed.subscriptions(), 2);
  EXPECT_FALSE(local.Get("org:2").has_value());
  EXPECT_EQ(metrics.feed_current.Value(), 1);
}

TEST_F(RedisInvalidationsTest, Feed_RedisPaused_NotCurrentWithinPingDeadline) {
  Subscribed sub(options_);
  auto& [registry, metrics, local, feed] = sub;
  ASSERT_TRUE(Keep(local, "org:1", 1));
  server_->Pause();
  // A Redis that answers nothing cannot announce either: the feed stops vouching within about
  // two ping intervals.
  EXPECT_TRUE(PollUntil([&] { return metrics.feed_current.Value() == 0; }, kWait));
  EXPECT_FALSE(feed.Current());
  EXPECT_EQ(local.size(), 0u);
  server_->Resume();
  EXPECT_TRUE(PollUntil([&] { return feed.Current(); }, kWait));
  EXPECT_GE(feed.subscriptions(), 2);
}

TEST_F(RedisInvalidationsTest, Feed_RedisDownAtStart_BecomesCurrentWhenItComesUp) {
  server_->Kill();
  LocalCache local(LocalCacheOptions{});
  RedisInvalidationFeed feed(options_, {"org:"}, local, nullptr, kPing);
  EXPECT_FALSE(feed.Current());
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(PollUntil([&] { return feed.Current(); }, kWait));
}

TEST_F(RedisInvalidationsTest, NearCache_WriterReadsItsOwnWriteAtOnce) {
  Replica a(options_);
  ASSERT_TRUE(PollUntil([&] { return a.feed.Current(); }, kWait));
  a.near.Fill("org:5", {1, "old"}, absl::Minutes(1));
  ASSERT_EQ(ReadUntilHeld(a.near, "org:5"), "old");
  a.near.SetAfterWrite("org:5", {2, "new"}, absl::Minutes(1));
  // No waiting: the write dropped the local copy itself.
  EXPECT_FALSE(a.near.GetLocal("org:5").has_value());
  std::optional<CachedValue> got = a.near.Get("org:5");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->data, "new");
}

TEST_F(RedisInvalidationsTest, NearCache_OtherReplicaDropsItsCopyOnAnnouncement) {
  Replica a(options_);
  Replica b(options_);
  ASSERT_TRUE(PollUntil([&] { return a.feed.Current() && b.feed.Current(); }, kWait));
  a.near.Fill("org:9", {1, "old"}, absl::Minutes(1));
  ASSERT_EQ(ReadUntilHeld(b.near, "org:9"), "old");

  a.near.SetAfterWrite("org:9", {2, "new"}, absl::Minutes(1));
  // B's copy goes when Redis' announcement is read (the local TTL here is a minute).
  EXPECT_TRUE(PollUntil(
      [&] {
        std::optional<CachedValue> v = b.near.Get("org:9");
        return v && v->data == "new";
      },
      kWait));
  EXPECT_EQ(ReadUntilHeld(b.near, "org:9"), "new");
  EXPECT_GE(b.metrics.invalidations.Value(), 1);
}

}  // namespace
}  // namespace dangjian::cache
