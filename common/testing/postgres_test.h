// A GoogleTest fixture for tests against a real PostgreSQL: one server per test binary (started
// in SetUpTestSuite, stopped in TearDownTestSuite) and a fresh database per test, named after the
// test and dropped after it. Subclasses that override SetUp()/TearDown() call these first/last.
// Not thread-safe (GoogleTest runs fixtures on one thread).
#pragma once

#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/testing/harness.h"

namespace dangjian::testing {

class PostgresDatabaseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = PostgresServer::Start();
    if (server.ok()) {
      server_ = server->release();
    } else {
      ADD_FAILURE() << "PostgreSQL did not start: " << server.status();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    db_ = absl::AsciiStrToLower(
        absl::StrCat("t_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    ASSERT_TRUE(server_->CreateDatabase(db_).ok());
  }
  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_TRUE(server_->DropDatabase(db_).ok());
    }
  }

  std::string ConnInfo() const { return server_->ConnInfo(db_); }

  // Runs `sql` in its own transaction on a connection of its own and commits.
  pqxx::result Sql(const std::string& sql) {
    pqxx::connection conn(ConnInfo());
    pqxx::work tx(conn);
    pqxx::result result = tx.exec(sql);
    tx.commit();
    return result;
  }

  static inline PostgresServer* server_ = nullptr;
  std::string db_;
};

}  // namespace dangjian::testing
