// PgPool against a real PostgreSQL: commit and rollback, error mapping, retries of serialization
// failures and dropped connections, timeouts and deadlines, pool exhaustion.
#include "common/sql/pg_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/testing/harness.h"
#include "common/testing/postgres_test.h"

namespace dangjian::sql {
namespace {

using ::dangjian::testing::PollUntil;
using ::dangjian::testing::PostgresServer;
using ::testing::HasSubstr;
using ::testing::Not;

class PgPoolTest : public testing::PostgresDatabaseTest {
 protected:
  void SetUp() override {
    PostgresDatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    Sql("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, "
        "parent integer REFERENCES items (id), qty integer CHECK (qty >= 0))");
  }

  PgPoolOptions Options() const {
    PgPoolOptions options;
    options.conninfo = ConnInfo();
    options.size = 4;
    options.acquire_timeout = absl::Seconds(5);
    options.statement_timeout = absl::Seconds(5);
    return options;
  }

  std::unique_ptr<PgPool> MakePool(PgPoolOptions options, metrics::DbMetrics* metrics = nullptr) {
    auto pool = PgPool::Create(std::move(options), metrics);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  int64_t Count(const std::string& table) {
    return Sql("SELECT count(*) FROM " + table)[0][0].as<int64_t>();
  }
  // Backends connected to the test's database, other than the one asking.
  int64_t Backends() {
    return Sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND pid <> pg_backend_pid()")[0][0]
        .as<int64_t>();
  }

  static TxWork Insert(int id, const std::string& name) {
    return [id, name](pqxx::transaction_base& tx) {
      tx.exec_params0("INSERT INTO items (id, name) VALUES ($1, $2)", id, name);
      return absl::OkStatus();
    };
  }
};

TEST_F(PgPoolTest, Run_CommitsWorkThatReturnsOk) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->Run({}, Insert(1, "a")).ok());
  EXPECT_EQ(Count("items"), 1);
}

TEST_F(PgPoolTest, Run_RollsBackAndReturnsTheWorksStatusUnchanged) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  int calls = 0;
  absl::Status status = pool->Run({}, [&](pqxx::transaction_base& tx) {
    ++calls;
    tx.exec0("INSERT INTO items (id, name) VALUES (1, 'a')");
    return absl::FailedPreconditionError("[some-rule] refused");
  });
  EXPECT_EQ(status, absl::FailedPreconditionError("[some-rule] refused"));
  EXPECT_EQ(calls, 1);  // a refusal from the work is not retried
  EXPECT_EQ(Count("items"), 0);
}

TEST_F(PgPoolTest, Run_UniqueViolationIsAlreadyExistsAndLeavesNothing) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->Run({}, Insert(1, "a")).ok());
  absl::Status status = pool->Run({}, [](pqxx::transaction_base& tx) {
    tx.exec0("INSERT INTO items (id, name) VALUES (2, 'b')");
    tx.exec0("INSERT INTO items (id, name) VALUES (1, 'dup')");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  // Neither SQL text, table names nor the server's address reach the caller.
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("INSERT")));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("items")));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("127.0.0.1")));
  EXPECT_EQ(Count("items"), 1);
}

TEST_F(PgPoolTest, Run_ForeignKeyCheckAndNotNullAreFailedPrecondition) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  for (const char* sql : {"INSERT INTO items (id, name, parent) VALUES (1, 'a', 99)",
                          "INSERT INTO items (id, name, qty) VALUES (1, 'a', -1)",
                          "INSERT INTO items (id, name) VALUES (1, NULL)"}) {
    absl::Status status = pool->Run({}, [sql](pqxx::transaction_base& tx) {
      tx.exec0(sql);
      return absl::OkStatus();
    });
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << sql << ": " << status;
  }
  EXPECT_EQ(Count("items"), 0);
}

TEST_F(PgPoolTest, Run_OtherSqlErrorsAreInternalWithAGenericMessage) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  absl::Status status = pool->Run({}, [](pqxx::transaction_base& tx) {
    tx.exec("SELECT no_such_column FROM items");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("no_such_column")));
}

TEST_F(PgPoolTest, Run_ReadOnlyTransactionRefusesWrites) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  TxOptions options;
  options.read_only = true;
  EXPECT_FALSE(pool->Run(options, Insert(1, "a")).ok());
  EXPECT_EQ(Count("items"), 0);
  // Reads still work, at every isolation level.
  for (Isolation isolation :
       {Isolation::kReadCommitted, Isolation::kRepeatableRead, Isolation::kSerializable}) {
    options.isolation = isolation;
    EXPECT_TRUE(pool->Run(options,
                          [](pqxx::transaction_base& tx) {
                            tx.exec("SELECT count(*) FROM items");
                            return absl::OkStatus();
                          })
                    .ok());
  }
}

TEST_F(PgPoolTest, Run_IsolationLevelReachesTheServer) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  TxOptions options;
  options.isolation = Isolation::kSerializable;
  std::string level;
  std::string timeout;
  options.deadline = absl::Now() + absl::Seconds(60);
  ASSERT_TRUE(pool->Run(options,
                        [&](pqxx::transaction_base& tx) {
                          level = tx.exec1("SHOW transaction_isolation")[0].as<std::string>();
                          timeout = tx.exec1("SHOW statement_timeout")[0].as<std::string>();
                          return absl::OkStatus();
                        })
                  .ok());
  EXPECT_EQ(level, "serializable");
  EXPECT_EQ(timeout, "5s");  // the pool's, as the deadline is further away
}

TEST_F(PgPoolTest, Run_StatementTimeoutIsDeadlineExceeded) {
  PgPoolOptions options = Options();
  options.statement_timeout = absl::Milliseconds(200);
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  const absl::Time start = absl::Now();
  absl::Status status = pool->Run({}, [](pqxx::transaction_base& tx) {
    tx.exec("SELECT pg_sleep(10)");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The connection stays usable.
  EXPECT_TRUE(pool->Run({}, Insert(1, "a")).ok());
}

TEST_F(PgPoolTest, Run_NearDeadlineBecomesTheStatementTimeout) {
  auto pool = MakePool(Options());  // 5 s statement timeout
  ASSERT_NE(pool, nullptr);
  TxOptions options;
  options.deadline = absl::Now() + absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  absl::Status status = pool->Run(options, [](pqxx::transaction_base& tx) {
    tx.exec("SELECT pg_sleep(10)");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST_F(PgPoolTest, Run_PastDeadlineFailsWithoutRunningTheWork) {
  FakeClock clock;
  auto created = PgPool::Create(Options(), nullptr, clock);
  ASSERT_TRUE(created.ok()) << created.status();
  TxOptions options;
  options.deadline = clock.Now() - absl::Milliseconds(1);
  bool called = false;
  absl::Status status = (*created)->Run(options, [&](pqxx::transaction_base&) {
    called = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(called);
  options.deadline = clock.Now();  // exactly now has passed too
  EXPECT_EQ((*created)->Run(options, Insert(1, "a")).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Count("items"), 0);
}

TEST_F(PgPoolTest, Run_PreparedStatementsSurviveTerminatedConnections) {
  PgPoolOptions options = Options();
  options.size = 2;
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  pool->Prepare("insert_item", "INSERT INTO items (id, name) VALUES ($1, $2)");
  auto insert = [](int id) {
    return [id](pqxx::transaction_base& tx) {
      tx.exec_prepared0("insert_item", id, "x");
      return absl::OkStatus();
    };
  };
  ASSERT_TRUE(pool->Run({}, insert(1)).ok());
  ASSERT_EQ(Backends(), 2);
  ASSERT_TRUE(server_->TerminateConnections(db_).ok());
  ASSERT_TRUE(PollUntil([&] { return Backends() == 0; }, absl::Seconds(10)));
  // Both pooled connections are dead; each Run finds a live one and the statement on it.
  for (int id = 2; id <= 5; ++id) EXPECT_TRUE(pool->Run({}, insert(id)).ok()) << id;
  EXPECT_EQ(Count("items"), 5);
  EXPECT_TRUE(pool->Ping());
}

TEST_F(PgPoolTest, Run_ReplacesConnectionsKilledWhileIdleWithoutSpendingAttempts) {
  PgPoolOptions options = Options();
  options.size = 3;
  options.max_attempts = 1;
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(server_->TerminateConnections(db_).ok());
  ASSERT_TRUE(PollUntil([&] { return Backends() == 0; }, absl::Seconds(10)));
  for (int id = 1; id <= 3; ++id) EXPECT_TRUE(pool->Run({}, Insert(id, "x")).ok()) << id;
  EXPECT_EQ(Count("items"), 3);
}

TEST_F(PgPoolTest, Run_ConnectionKilledMidTransactionIsRetried) {
  auto pool = MakePool(Options());
  ASSERT_NE(pool, nullptr);
  std::atomic<int> calls{0};
  absl::Status status = pool->Run({}, [&](pqxx::transaction_base& tx) {
    tx.exec0("INSERT INTO items (id, name) VALUES (1, 'a')");
    if (calls.fetch_add(1) == 0) {
      // Kill this very backend before COMMIT: the insert is rolled back with it.
      EXPECT_TRUE(server_->TerminateConnections(db_).ok());
      EXPECT_TRUE(PollUntil([&] { return Backends() == 0; }, absl::Seconds(10)));
      tx.exec("SELECT 1");
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(Count("items"), 1);
}

TEST_F(PgPoolTest, Run_ConnectionLossIsUnavailableOnceAttemptsRunOut) {
  PgPoolOptions options = Options();
  options.max_attempts = 2;
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  int calls = 0;
  absl::Status status = pool->Run({}, [&](pqxx::transaction_base& tx) {
    ++calls;
    tx.exec("SELECT pg_terminate_backend(pg_backend_pid())");
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(calls, 2);
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("127.0.0.1")));
}

// Two serializable transactions each read the whole table, then insert: a read/write cycle that
// PostgreSQL breaks by failing one of them with serialization_failure.
class SerializationConflict {
 public:
  explicit SerializationConflict(PgPool& pool) : pool_(pool) {}

  absl::Status RunOne(int id) {
    TxOptions options;
    options.name = "conflict";
    options.isolation = Isolation::kSerializable;
    return pool_.Run(options, [this, id](pqxx::transaction_base& tx) {
      const int64_t seen = tx.exec1("SELECT count(*) FROM items")[0].as<int64_t>();
      if (calls_.fetch_add(1) < 2) {
        // First attempts only: wait until both transactions have read.
        read_.fetch_add(1);
        EXPECT_TRUE(PollUntil([this] { return read_.load() >= 2; }, absl::Seconds(20)));
      }
      tx.exec_params0("INSERT INTO items (id, name, qty) VALUES ($1, 'x', $2)", id, seen);
      return absl::OkStatus();
    });
  }
  int calls() const { return calls_.load(); }

 private:
  PgPool& pool_;
  std::atomic<int> calls_{0};
  std::atomic<int> read_{0};
};

TEST_F(PgPoolTest, Run_SerializationFailureIsRetriedAndBothEffectsLand) {
  prometheus::Registry registry;
  metrics::DbMetrics metrics(registry);
  auto pool = MakePool(Options(), &metrics);
  ASSERT_NE(pool, nullptr);
  SerializationConflict conflict(*pool);
  absl::Status a, b;
  std::thread ta([&] { a = conflict.RunOne(1); });
  std::thread tb([&] { b = conflict.RunOne(2); });
  ta.join();
  tb.join();
  EXPECT_TRUE(a.ok()) << a;
  EXPECT_TRUE(b.ok()) << b;
  EXPECT_GE(conflict.calls(), 3);
  EXPECT_GE(metrics.retries.Value(), 1);
  EXPECT_GE(metrics.errors.Add({{"kind", "serialization"}}).Value(), 1);
  // The retried one saw the other's row: the outcome is as if they ran one after the other.
  EXPECT_EQ(Count("items"), 2);
  EXPECT_EQ(Sql("SELECT sum(qty) FROM items")[0][0].as<int64_t>(), 1);
}

TEST_F(PgPoolTest, Run_SerializationFailureIsAbortedWhenAttemptsRunOut) {
  PgPoolOptions options = Options();
  options.max_attempts = 1;
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  SerializationConflict conflict(*pool);
  absl::Status a, b;
  std::thread ta([&] { a = conflict.RunOne(1); });
  std::thread tb([&] { b = conflict.RunOne(2); });
  ta.join();
  tb.join();
  EXPECT_EQ(conflict.calls(), 2);
  EXPECT_NE(a.ok(), b.ok()) << a << " / " << b;
  const absl::Status& failed = a.ok() ? b : a;
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted) << failed;
  EXPECT_EQ(Count("items"), 1);
}

// Holds one of the pool's connections until released.
class Holder {
 public:
  explicit Holder(PgPool& pool) {
    thread_ = std::thread([this, &pool] {
      status_ = pool.Run({}, [this](pqxx::transaction_base&) {
        holding_ = true;
        EXPECT_TRUE(PollUntil([this] { return release_.load(); }, absl::Seconds(30)));
        return absl::OkStatus();
      });
    });
    EXPECT_TRUE(PollUntil([this] { return holding_.load(); }, absl::Seconds(10)));
  }
  absl::Status Release() {
    release_ = true;
    thread_.join();
    return status_;
  }

 private:
  std::atomic<bool> holding_{false};
  std::atomic<bool> release_{false};
  absl::Status status_;
  std::thread thread_;
};

TEST_F(PgPoolTest, Run_PoolBusyPastAcquireTimeoutIsResourceExhausted) {
  prometheus::Registry registry;
  metrics::DbMetrics metrics(registry);
  PgPoolOptions options = Options();
  options.size = 1;
  options.acquire_timeout = absl::Milliseconds(100);
  auto pool = MakePool(options, &metrics);
  ASSERT_NE(pool, nullptr);
  Holder holder(*pool);
  EXPECT_EQ(metrics.pool_in_use.Value(), 1);
  const absl::Time start = absl::Now();
  absl::Status status = pool->Run({}, Insert(1, "a"));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_EQ(metrics.acquire_timeouts.Value(), 1);
  EXPECT_TRUE(holder.Release().ok());
  EXPECT_TRUE(pool->Run({}, Insert(1, "a")).ok());
  EXPECT_EQ(metrics.pool_in_use.Value(), 0);
  EXPECT_EQ(metrics.pool_size.Value(), 1);
}

TEST_F(PgPoolTest, Run_DeadlineBeforeAcquireTimeoutIsDeadlineExceeded) {
  PgPoolOptions options = Options();
  options.size = 1;
  options.acquire_timeout = absl::Seconds(10);
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  Holder holder(*pool);
  TxOptions tx;
  tx.deadline = absl::Now() + absl::Milliseconds(100);
  const absl::Time start = absl::Now();
  EXPECT_EQ(pool->Run(tx, Insert(1, "a")).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(holder.Release().ok());
}

TEST_F(PgPoolTest, Run_WaiterGetsTheConnectionWhenItIsReleased) {
  PgPoolOptions options = Options();
  options.size = 1;
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  Holder holder(*pool);
  absl::Status waiter_status = absl::UnknownError("not run");
  std::thread waiter([&] { waiter_status = pool->Run({}, Insert(1, "a")); });
  EXPECT_TRUE(holder.Release().ok());
  waiter.join();
  EXPECT_TRUE(waiter_status.ok()) << waiter_status;
}

TEST_F(PgPoolTest, Create_UnreachableServerIsUnavailable) {
  PgPoolOptions options;
  options.conninfo = absl::StrCat("host=127.0.0.1 port=", dangjian::testing::PickFreePort(),
                                  " user=postgres dbname=x");
  options.connect_timeout = absl::Seconds(2);
  auto pool = PgPool::Create(options);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(pool.status().message()), Not(HasSubstr("127.0.0.1")));
}

TEST_F(PgPoolTest, Ping_FollowsTheDatabase) {
  PgPoolOptions options = Options();
  options.connect_timeout = absl::Seconds(2);
  auto pool = MakePool(options);
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->Ping());
  ASSERT_TRUE(server_->DropDatabase(db_).ok());  // also ends its connections
  EXPECT_FALSE(pool->Ping());
  ASSERT_TRUE(server_->CreateDatabase(db_).ok());
  EXPECT_TRUE(pool->Ping());
}

// Lines of stderr written while `body` runs that contain `text`.
template <typename Body>
int LinesWith(const std::string& text, Body body, std::string* all = nullptr) {
  ::testing::internal::CaptureStderr();
  body();
  const std::string captured = ::testing::internal::GetCapturedStderr();
  if (all != nullptr) *all = captured;
  int n = 0;
  for (size_t at = captured.find(text); at != std::string::npos; at = captured.find(text, at + 1)) {
    ++n;
  }
  return n;
}

TEST_F(PgPoolTest, Run_AnOutageLogsRepeatedFailuresOncePerWindowWithTheCount) {
  FakeClock clock;
  auto pool = PgPool::Create(Options(), nullptr, clock);
  ASSERT_TRUE(pool.ok()) << pool.status();
  ASSERT_TRUE(server_->DropDatabase(db_).ok());  // ends the pool's connections; no new one opens
  std::string log;
  // 100 calls in 10 s, every one failing to connect, then one more after the 10 s. (Each failed
  // connection costs the server a backend, about 50 ms here; log_test counts 1,000 in 10 s.)
  const int lines = LinesWith(
      "database connection could not be opened",
      [&] {
        for (int i = 0; i < 100; ++i) {
          EXPECT_EQ((*pool)->Run({}, Insert(i, "x")).code(), absl::StatusCode::kUnavailable);
          clock.Advance(absl::Milliseconds(100));
        }
        EXPECT_FALSE((*pool)->Run({}, Insert(0, "x")).ok());
      },
      &log);
  EXPECT_EQ(lines, 2) << log.substr(0, 3000);
  EXPECT_THAT(log, HasSubstr("\"suppressed\":99,"));
  // Nothing else about the outage is written per call either (closed connections replaced).
  EXPECT_LE(std::count(log.begin(), log.end(), '\n'), 6) << log.substr(0, 3000);

  // When the database is back, one line says so, with the count of failed attempts.
  ASSERT_TRUE(server_->CreateDatabase(db_).ok());
  Sql("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, parent integer, qty "
      "integer)");
  EXPECT_EQ(LinesWith("\"failed_attempts\":101",
                      [&] { EXPECT_TRUE((*pool)->Run({}, Insert(1, "back")).ok()); }),
            1);
}

}  // namespace
}  // namespace dangjian::sql
