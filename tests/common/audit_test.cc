// The audit log against a real PostgreSQL: appends inside a change's transaction share its fate,
// standalone appends, concurrent appends form one chain, and VerifyChain finds tampering.
#include "common/audit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sql/migrations.h"
#include "common/sql/pg_pool.h"
#include "common/testing/harness.h"
#include "common/testing/postgres_test.h"

namespace dangjian::audit {
namespace {

using ::dangjian::testing::PostgresServer;

AuditRecord Record(int n, const std::string& outcome = "OK") {
  AuditRecord r;
  r.caller = "user-7";
  r.method = "/dangjian.registry.v1.OrgRegistry/CreateOrg";
  r.target = absl::StrCat("org/", n);
  r.request_id = absl::StrCat("req-", n);
  r.outcome = outcome;
  r.detail = "";
  return r;
}

class AuditTest : public testing::PostgresDatabaseTest {
 protected:
  void SetUp() override {
    PostgresDatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    sql::PgPoolOptions options;
    options.conninfo = ConnInfo();
    options.size = 4;
    auto pool = sql::PgPool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
    auto report = sql::ApplyMigrations(*pool_, "audit", Migrations());
    ASSERT_TRUE(report.ok()) << report.status();
  }
  void TearDown() override {
    pool_.reset();
    PostgresDatabaseTest::TearDown();
  }

  int64_t Rows() { return Sql("SELECT count(*) FROM audit_log")[0][0].as<int64_t>(); }

  void AppendMany(int n) {
    for (int i = 1; i <= n; ++i) ASSERT_TRUE(AppendStandalone(*pool_, Record(i)).ok()) << i;
  }
  ChainReport Verify() {
    auto report = VerifyChain(*pool_);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : ChainReport{-1, -1};
  }

  std::unique_ptr<sql::PgPool> pool_;
};

TEST_F(AuditTest, Append_InACommittedChangeIsStoredWithIt) {
  Sql("CREATE TABLE orgs (id int PRIMARY KEY)");
  absl::Status status = pool_->Run({}, [](pqxx::transaction_base& tx) {
    tx.exec0("INSERT INTO orgs VALUES (42)");
    return Append(tx, Record(42));
  });
  ASSERT_TRUE(status.ok()) << status;
  auto row =
      Sql("SELECT id, caller, method, target, request_id, outcome, detail, "
          "at <= now() FROM audit_log");
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0].as<int64_t>(), 1);
  EXPECT_EQ(row[0][1].as<std::string>(), "user-7");
  EXPECT_EQ(row[0][2].as<std::string>(), "/dangjian.registry.v1.OrgRegistry/CreateOrg");
  EXPECT_EQ(row[0][3].as<std::string>(), "org/42");
  EXPECT_EQ(row[0][4].as<std::string>(), "req-42");
  EXPECT_EQ(row[0][5].as<std::string>(), "OK");
  EXPECT_TRUE(row[0][7].as<bool>());
}

TEST_F(AuditTest, Append_InARolledBackChangeLeavesNoRow) {
  absl::Status status = pool_->Run({}, [](pqxx::transaction_base& tx) {
    absl::Status appended = Append(tx, Record(1));
    if (!appended.ok()) return appended;
    return absl::FailedPreconditionError("[rule] refused after the append");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Rows(), 0);
  // The refusal is then recorded on its own, and the chain starts at 1 with no gap.
  ASSERT_TRUE(AppendStandalone(*pool_, Record(1, "FAILED_PRECONDITION")).ok());
  EXPECT_EQ(Sql("SELECT id, outcome FROM audit_log")[0][1].as<std::string>(),
            "FAILED_PRECONDITION");
  EXPECT_EQ(Verify().first_bad_id, 0);
}

TEST_F(AuditTest, VerifyChain_IntactChainHasNoBadRow) {
  EXPECT_EQ(Verify().rows, 0);
  EXPECT_EQ(Verify().first_bad_id, 0);
  AppendMany(5);
  ChainReport report = Verify();
  EXPECT_EQ(report.rows, 5);
  EXPECT_EQ(report.first_bad_id, 0);
}

TEST_F(AuditTest, VerifyChain_FindsAnEditedRow) {
  AppendMany(5);
  Sql("UPDATE audit_log SET outcome = 'OK', detail = 'nothing to see' WHERE id = 3");
  ChainReport report = Verify();
  EXPECT_EQ(report.rows, 5);
  EXPECT_EQ(report.first_bad_id, 3);
}

TEST_F(AuditTest, VerifyChain_FindsAnEditedTimestamp) {
  AppendMany(4);
  Sql("UPDATE audit_log SET at = at - interval '1 day' WHERE id = 2");
  EXPECT_EQ(Verify().first_bad_id, 2);
}

TEST_F(AuditTest, VerifyChain_FindsARowWhoseHashWasRecomputed) {
  AppendMany(4);
  // An editor who also replaces the row's own hash still breaks the next row's link.
  Sql("UPDATE audit_log SET target = 'org/999', hash = repeat('a', 64) WHERE id = 2");
  EXPECT_EQ(Verify().first_bad_id, 2);
  Sql("UPDATE audit_log SET hash = (SELECT prev_hash FROM audit_log WHERE id = 3) WHERE id = 2");
  EXPECT_EQ(Verify().first_bad_id, 2);  // its fields no longer match
}

TEST_F(AuditTest, VerifyChain_FindsADeletedRow) {
  AppendMany(5);
  Sql("DELETE FROM audit_log WHERE id = 3");
  ChainReport report = Verify();
  EXPECT_EQ(report.rows, 4);
  EXPECT_EQ(report.first_bad_id, 4);
}

TEST_F(AuditTest, VerifyChain_FindsRowsDeletedFromTheEnd) {
  AppendMany(5);
  Sql("DELETE FROM audit_log WHERE id >= 4");
  ChainReport report = Verify();
  EXPECT_EQ(report.rows, 3);
  EXPECT_EQ(report.first_bad_id, 4);
}

TEST_F(AuditTest, VerifyChain_FindsSwappedRows) {
  AppendMany(4);
  Sql("UPDATE audit_log SET target = CASE id WHEN 2 THEN 'org/3' ELSE 'org/2' END, "
      "request_id = CASE id WHEN 2 THEN 'req-3' ELSE 'req-2' END WHERE id IN (2, 3)");
  EXPECT_EQ(Verify().first_bad_id, 2);
}

TEST_F(AuditTest, VerifyChain_ReadsAcrossPages) {
  // More rows than one verification page holds (1000), appended in a few large transactions.
  for (int batch = 0; batch < 3; ++batch) {
    ASSERT_TRUE(pool_
                    ->Run({},
                          [batch](pqxx::transaction_base& tx) {
                            for (int i = 0; i < 450; ++i) {
                              absl::Status s = Append(tx, Record(batch * 450 + i));
                              if (!s.ok()) return s;
                            }
                            return absl::OkStatus();
                          })
                    .ok());
  }
  EXPECT_EQ(Verify().rows, 1350);
  EXPECT_EQ(Verify().first_bad_id, 0);
  Sql("UPDATE audit_log SET caller = 'someone else' WHERE id = 1200");
  EXPECT_EQ(Verify().first_bad_id, 1200);
}

TEST_F(AuditTest, Append_ConcurrentAppendsFormOneChain) {
  constexpr int kThreads = 4;
  constexpr int kEach = 15;
  std::vector<std::thread> threads;
  std::vector<absl::Status> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        absl::Status s = AppendStandalone(*pool_, Record(t * 100 + i));
        if (!s.ok()) failures[t] = s;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : failures) EXPECT_TRUE(s.ok()) << s;
  ChainReport report = Verify();
  EXPECT_EQ(report.rows, kThreads * kEach);
  EXPECT_EQ(report.first_bad_id, 0);
  EXPECT_EQ(Sql("SELECT max(id) FROM audit_log")[0][0].as<int64_t>(), kThreads * kEach);
}

TEST_F(AuditTest, Append_InSerializableChangesIsRetriedOnConflict) {
  // Serializable transactions that both append conflict on the head row; the pool re-runs the
  // loser, and the chain stays linear.
  sql::TxOptions options;
  options.isolation = sql::Isolation::kSerializable;
  std::vector<std::thread> threads;
  std::vector<absl::Status> statuses(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5 && statuses[t].ok(); ++i) {
        statuses[t] = pool_->Run(
            options, [t, i](pqxx::transaction_base& tx) { return Append(tx, Record(t * 10 + i)); });
      }
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (const auto& s : statuses) {
    // With 4 attempts a conflict can still exhaust them; it must then be ABORTED, not a fork.
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_EQ(Verify().first_bad_id, 0);
}

TEST_F(AuditTest, Append_StoresUnsafeTextSafely) {
  AuditRecord r = Record(1);
  static constexpr char kUnsafe[] = "nul\0byte and bad utf-8 \xff\xfe, 党组织";
  r.detail = std::string(kUnsafe, sizeof(kUnsafe) - 1);
  r.target = std::string(5000, 'x');
  ASSERT_TRUE(AppendStandalone(*pool_, r).ok());
  auto row = Sql("SELECT detail, length(target) FROM audit_log");
  EXPECT_EQ(row[0][0].as<std::string>(), "nul?byte and bad utf-8 ??, 党组织");
  EXPECT_EQ(row[0][1].as<int>(), 1024);
  EXPECT_EQ(Verify().first_bad_id, 0);
}

TEST_F(AuditTest, Migrations_ReapplyingIsANoOp) {
  auto report = sql::ApplyMigrations(*pool_, "audit", Migrations());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->applied.empty());
  EXPECT_EQ(report->current_version, Migrations().back().version);
}

TEST_F(AuditTest, AppendStandalone_AnOutageLogsUnwrittenRowsOncePerWindowWithTheCount) {
  FakeClock clock;
  sql::PgPoolOptions options;
  options.conninfo = ConnInfo();
  options.size = 2;
  auto pool = sql::PgPool::Create(options, nullptr, clock);
  ASSERT_TRUE(pool.ok()) << pool.status();
  // No connection to the database opens while this holds, a superuser's neither.
  pqxx::connection admin(server_->ConnInfo("postgres"));
  pqxx::nontransaction(admin).exec0("ALTER DATABASE " + db_ + " ALLOW_CONNECTIONS false");
  ASSERT_TRUE(server_->TerminateConnections(db_).ok());
  // 100 refused calls in 10 s whose rows cannot be written, then one more after the 10 s.
  ::testing::internal::CaptureStderr();
  for (int i = 0; i <= 100; ++i) {
    EXPECT_FALSE(AppendStandalone(**pool, Record(i, "PERMISSION_DENIED")).ok());
    clock.Advance(absl::Milliseconds(100));
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  int unwritten = 0;
  for (size_t at = log.find("audit row not written"); at != std::string::npos;
       at = log.find("audit row not written", at + 1)) {
    ++unwritten;
  }
  EXPECT_EQ(unwritten, 2) << log.substr(0, 3000);
  EXPECT_THAT(log, ::testing::HasSubstr("\"suppressed\":99,"));
  EXPECT_THAT(log, ::testing::HasSubstr("\"request_id\":\"req-0\""));

  pqxx::nontransaction(admin).exec0("ALTER DATABASE " + db_ + " ALLOW_CONNECTIONS true");
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(AppendStandalone(**pool, Record(1000)).ok());
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), ::testing::HasSubstr("\"unwritten\":101"));
}

}  // namespace
}  // namespace dangjian::audit
