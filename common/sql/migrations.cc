#include "common/sql/migrations.h"

#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/sql/pg_pool.h"
#include "common/status.h"

namespace dangjian::sql {
namespace {

// Every component's migrations in a database serialise on this one key (pg_advisory_xact_lock),
// which also covers creating schema_migrations itself. The value is "djmigr" in ASCII.
constexpr int64_t kMigrationLockKey = 0x646a6d696772;

// Migrations may rewrite large tables; the pool's per-statement timeout is meant for requests.
// The lock wait of a second replica counts against it too, so it is set before locking.
constexpr char kSetMigrationTimeout[] = "SET LOCAL statement_timeout = '30min'";

constexpr char kLock[] = "SELECT pg_advisory_xact_lock($1)";

constexpr char kCreateTable[] = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  component  text        NOT NULL,
  version    integer     NOT NULL,
  name       text        NOT NULL,
  checksum   text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (component, version)
))sql";

constexpr char kSelectRecorded[] =
    "SELECT version, checksum FROM schema_migrations WHERE component = $1 ORDER BY version";

constexpr char kSelectOne[] =
    "SELECT checksum FROM schema_migrations WHERE component = $1 AND version = $2";

constexpr char kInsert[] =
    "INSERT INTO schema_migrations (component, version, name, checksum, applied_at) "
    "VALUES ($1, $2, $3, $4, now())";

absl::StatusOr<std::string> Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("sha256 failed");
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

TxOptions MigrationTx(absl::string_view component, int version) {
  TxOptions options;
  options.name = absl::StrCat("migrate_", component, "_", version);
  return options;
}

// Takes the migration lock inside `tx` after lifting the statement timeout for the migration.
void Lock(pqxx::transaction_base& tx) {
  tx.exec0(kSetMigrationTimeout);
  tx.exec_params(kLock, kMigrationLockKey);
}

// Checks what the database recorded for `component` against the binary's migrations.
absl::Status CheckRecorded(const std::map<int, std::string>& recorded, absl::string_view component,
                           const std::vector<Migration>& migrations,
                           const std::vector<std::string>& checksums) {
  std::map<int, size_t> index;
  for (size_t i = 0; i < migrations.size(); ++i) index[migrations[i].version] = i;
  const int newest_known = migrations.empty() ? 0 : migrations.back().version;
  const int newest_recorded = recorded.empty() ? 0 : recorded.rbegin()->first;
  if (newest_recorded > newest_known) {
    return absl::FailedPreconditionError(
        absl::StrCat("database schema of ", component, " is at version ", newest_recorded,
                     ", newer than this binary's newest migration ", newest_known,
                     "; refusing to run an old binary against it"));
  }
  std::vector<int> mismatched;
  std::vector<int> unknown;
  for (const auto& [version, checksum] : recorded) {
    auto it = index.find(version);
    if (it == index.end()) {
      unknown.push_back(version);
    } else if (checksums[it->second] != checksum) {
      mismatched.push_back(version);
    }
  }
  if (!mismatched.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("applied migrations of ", component, " differ from this binary's: versions ",
                     absl::StrJoin(mismatched, ", "), " (checksum mismatch)"));
  }
  if (!unknown.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("database records migrations of ", component,
                                                      " this binary does not have: versions ",
                                                      absl::StrJoin(unknown, ", ")));
  }
  // A migration older than the newest applied one would run out of order.
  for (const Migration& m : migrations) {
    if (m.version < newest_recorded && recorded.count(m.version) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "migration ", m.version, " of ", component,
          " is missing from the database, which is already at version ", newest_recorded));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MigrationReport> ApplyMigrations(PgPool& pool, absl::string_view component,
                                                const std::vector<Migration>& migrations) {
  if (component.empty()) return absl::InvalidArgumentError("migration component is empty");
  std::vector<std::string> checksums;
  checksums.reserve(migrations.size());
  for (size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    if (m.version <= 0 || (i > 0 && m.version <= migrations[i - 1].version)) {
      return absl::InvalidArgumentError(
          absl::StrCat("migrations of ", component,
                       " must have unique versions > 0 in ascending order (at ", m.name, ")"));
    }
    DJ_ASSIGN_OR_RETURN(std::string checksum, Sha256Hex(m.sql));
    checksums.push_back(std::move(checksum));
  }
  const std::string component_name(component);

  // First transaction: create the table and check what is recorded before changing anything.
  MigrationReport report;
  std::map<int, std::string> recorded;
  DJ_RETURN_IF_ERROR(pool.Run(MigrationTx(component, 0), [&](pqxx::transaction_base& tx) {
    recorded.clear();
    Lock(tx);
    tx.exec0(kCreateTable);
    for (const pqxx::row& row : tx.exec_params(kSelectRecorded, component_name)) {
      recorded[row[0].as<int>()] = row[1].as<std::string>();
    }
    return CheckRecorded(recorded, component, migrations, checksums);
  }));
  report.previous_version = recorded.empty() ? 0 : recorded.rbegin()->first;
  report.current_version = report.previous_version;

  for (size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    if (recorded.count(m.version) != 0) continue;
    bool applied = false;
    absl::Status status =
        pool.Run(MigrationTx(component, m.version), [&](pqxx::transaction_base& tx) {
          applied = false;
          Lock(tx);
          // Another replica may have applied it while this one waited for the lock.
          pqxx::result existing = tx.exec_params(kSelectOne, component_name, m.version);
          if (!existing.empty()) {
            if (existing[0][0].as<std::string>() != checksums[i]) {
              return absl::FailedPreconditionError(absl::StrCat(
                  "applied migrations of ", component, " differ from this binary's: versions ",
                  m.version, " (checksum mismatch)"));
            }
            return absl::OkStatus();
          }
          tx.exec(m.sql);  // may hold several statements
          tx.exec_params0(kInsert, component_name, m.version, m.name, checksums[i]);
          applied = true;
          return absl::OkStatus();
        });
    if (!status.ok()) {
      log::Error("migration failed", {{"component", component_name},
                                      {"version", m.version},
                                      {"name", m.name},
                                      {"code", absl::StatusCodeToString(status.code())}});
      // The status names the component and version; the pool's message has no SQL in it.
      return absl::Status(status.code(), absl::StrCat("migration ", m.version, " (", m.name,
                                                      ") of ", component, ": ", status.message()));
    }
    if (applied) {
      report.applied.push_back(m.version);
      log::Info("migration applied",
                {{"component", component_name}, {"version", m.version}, {"name", m.name}});
    }
    report.current_version = std::max(report.current_version, m.version);
  }
  return report;
}

}  // namespace dangjian::sql
