// The harness itself: real servers start, answer on loopback, and stop.
#include "common/testing/harness.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <pqxx/pqxx>

namespace dangjian::testing {
namespace {

TEST(Harness, PostgresStartsCreatesDatabasesAndStops) {
  auto pg = PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->CreateDatabase("harness_db").ok());
  pqxx::connection conn((*pg)->ConnInfo("harness_db"));
  pqxx::work tx(conn);
  EXPECT_EQ(tx.exec1("SELECT current_database()")[0].as<std::string>(), "harness_db");
  tx.commit();
  conn.disconnect();
  (*pg)->Stop();
  EXPECT_THROW(pqxx::connection((*pg)->ConnInfo("harness_db")), pqxx::broken_connection);
}

TEST(Harness, RedisKillAndRestartOnTheSamePort) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  const int port = (*redis)->port();
  auto ping = [&] {
    redisContext* c = redisConnect("127.0.0.1", port);
    bool ok = c != nullptr && c->err == 0;
    if (ok) {
      auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
      if (reply) freeReplyObject(reply);
    }
    if (c) redisFree(c);
    return ok;
  };
  EXPECT_TRUE(ping());
  (*redis)->Kill();
  EXPECT_FALSE(ping());
  ASSERT_TRUE((*redis)->Restart().ok());
  EXPECT_EQ((*redis)->port(), port);
  EXPECT_TRUE(ping());
}

}  // namespace
}  // namespace dangjian::testing
