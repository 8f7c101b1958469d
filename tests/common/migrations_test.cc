// ApplyMigrations against a real PostgreSQL: applying, re-applying, refusing a changed or newer
// schema, failed migrations leaving nothing, and concurrent appliers.
#include "common/sql/migrations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/sql/pg_pool.h"
#include "common/testing/harness.h"
#include "common/testing/postgres_test.h"

namespace dangjian::sql {
namespace {

using ::dangjian::testing::PostgresServer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Sha256Hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), length));
}

const Migration kCreateOrgs{1, "create_orgs",
                            "CREATE TABLE orgs (id bigint PRIMARY KEY, name text NOT NULL);"};
const Migration kAddCode{2, "add_code",
                         "ALTER TABLE orgs ADD COLUMN code text; "
                         "CREATE UNIQUE INDEX orgs_code_idx ON orgs (code);"};
const Migration kCreateUnits{3, "create_units", "CREATE TABLE units (id bigint PRIMARY KEY);"};

class MigrationsTest : public testing::PostgresDatabaseTest {
 protected:
  void SetUp() override {
    PostgresDatabaseTest::SetUp();
    if (HasFatalFailure()) return;
    pool_ = MakePool();
    ASSERT_NE(pool_, nullptr);
  }
  void TearDown() override {
    pool_.reset();
    PostgresDatabaseTest::TearDown();
  }

  std::unique_ptr<PgPool> MakePool() {
    PgPoolOptions options;
    options.conninfo = ConnInfo();
    options.size = 2;
    auto pool = PgPool::Create(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  bool TableExists(const std::string& name) {
    return !Sql("SELECT to_regclass('" + name + "')")[0][0].is_null();
  }
  std::vector<int> Recorded(const std::string& component) {
    std::vector<int> versions;
    for (const auto& row : Sql("SELECT version FROM schema_migrations WHERE component = '" +
                               component + "' ORDER BY version")) {
      versions.push_back(row[0].as<int>());
    }
    return versions;
  }

  std::unique_ptr<PgPool> pool_;
};

TEST_F(MigrationsTest, Apply_AppliesEveryMigrationAndRecordsIt) {
  auto report = ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->previous_version, 0);
  EXPECT_EQ(report->current_version, 2);
  EXPECT_THAT(report->applied, ElementsAre(1, 2));
  EXPECT_TRUE(TableExists("orgs"));
  Sql("INSERT INTO orgs (id, name, code) VALUES (1, 'a', 'c1')");  // version 2's column exists
  auto rows =
      Sql("SELECT version, name, checksum, applied_at IS NOT NULL FROM schema_migrations "
          "WHERE component = 'registry' ORDER BY version");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][1].as<std::string>(), "create_orgs");
  EXPECT_EQ(rows[0][2].as<std::string>(), Sha256Hex(kCreateOrgs.sql));
  EXPECT_EQ(rows[1][2].as<std::string>(), Sha256Hex(kAddCode.sql));
  EXPECT_TRUE(rows[1][3].as<bool>());
}

TEST_F(MigrationsTest, Apply_ReRunIsANoOp) {
  ASSERT_TRUE(ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode}).ok());
  auto report = ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->previous_version, 2);
  EXPECT_EQ(report->current_version, 2);
  EXPECT_THAT(report->applied, IsEmpty());
  EXPECT_THAT(Recorded("registry"), ElementsAre(1, 2));
}

TEST_F(MigrationsTest, Apply_AppliesOnlyTheNewOnes) {
  ASSERT_TRUE(ApplyMigrations(*pool_, "registry", {kCreateOrgs}).ok());
  auto report = ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode, kCreateUnits});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->previous_version, 1);
  EXPECT_EQ(report->current_version, 3);
  EXPECT_THAT(report->applied, ElementsAre(2, 3));
}

TEST_F(MigrationsTest, Apply_RefusesAChangedMigration) {
  ASSERT_TRUE(ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode}).ok());
  Migration edited = kAddCode;
  edited.sql = "ALTER TABLE orgs ADD COLUMN code varchar(20);";
  auto report = ApplyMigrations(*pool_, "registry", {kCreateOrgs, edited, kCreateUnits});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("versions 2"));
  EXPECT_FALSE(TableExists("units"));  // nothing was applied after the refusal
}

TEST_F(MigrationsTest, Apply_RefusesADatabaseNewerThanTheBinary) {
  ASSERT_TRUE(ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode, kCreateUnits}).ok());
  auto report = ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("version 3"));
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("newest migration 2"));
}

TEST_F(MigrationsTest, Apply_FailedMigrationLeavesNothingOfItself) {
  const Migration broken{2, "broken", "CREATE TABLE half (id int); SELECT no_such_function();"};
  auto report = ApplyMigrations(*pool_, "registry", {kCreateOrgs, broken});
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("migration 2"));
  EXPECT_FALSE(TableExists("half"));
  EXPECT_TRUE(TableExists("orgs"));  // version 1 committed on its own
  EXPECT_THAT(Recorded("registry"), ElementsAre(1));
}

TEST_F(MigrationsTest, Apply_ComponentsKeepSeparateVersions) {
  ASSERT_TRUE(ApplyMigrations(*pool_, "registry", {kCreateOrgs, kAddCode}).ok());
  auto report = ApplyMigrations(*pool_, "audit", {kCreateUnits});  // version 3 of "audit"
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->previous_version, 0);
  EXPECT_THAT(report->applied, ElementsAre(3));
  EXPECT_THAT(Recorded("registry"), ElementsAre(1, 2));
  EXPECT_THAT(Recorded("audit"), ElementsAre(3));
}

TEST_F(MigrationsTest, Apply_RejectsUnsortedOrNonPositiveVersions) {
  EXPECT_EQ(ApplyMigrations(*pool_, "registry", {kAddCode, kCreateOrgs}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyMigrations(*pool_, "registry", {kCreateOrgs, kCreateOrgs}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const Migration zero{0, "zero", "SELECT 1"};
  EXPECT_EQ(ApplyMigrations(*pool_, "registry", {zero}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(TableExists("schema_migrations"));
}

TEST_F(MigrationsTest, Apply_ConcurrentAppliersApplyEachMigrationOnce) {
  // Not idempotent on purpose: a second run of any of these would fail or double the row.
  const std::vector<Migration> migrations = {
      {1, "create", "CREATE TABLE runs (n int); INSERT INTO runs VALUES (1);"},
      {2, "slow", "SELECT pg_sleep(0.2); INSERT INTO runs VALUES (2);"},
      {3, "index", "CREATE UNIQUE INDEX runs_n_idx ON runs (n);"},
  };
  constexpr int kReplicas = 4;
  std::vector<std::unique_ptr<PgPool>> pools;
  for (int i = 0; i < kReplicas; ++i) {
    pools.push_back(MakePool());
    ASSERT_NE(pools.back(), nullptr);
  }
  std::vector<absl::StatusOr<MigrationReport>> reports(kReplicas, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back(
        [&, i] { reports[i] = ApplyMigrations(*pools[i], "registry", migrations); });
  }
  for (auto& t : threads) t.join();
  std::vector<int> applied;
  for (const auto& report : reports) {
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->current_version, 3);
    applied.insert(applied.end(), report->applied.begin(), report->applied.end());
  }
  std::sort(applied.begin(), applied.end());
  EXPECT_THAT(applied, ElementsAre(1, 2, 3));
  EXPECT_EQ(Sql("SELECT count(*) FROM runs")[0][0].as<int>(), 2);
}

}  // namespace
}  // namespace dangjian::sql
