// Versioned schema migrations. Each service embeds its migrations/NNNN_name.sql files in its
// binary (cmake/migrations.cmake) and applies them at start:
//  - each pending migration runs in its own transaction and is recorded in schema_migrations
//    (component, version, name, sha256 checksum, applied_at) in the same transaction;
//  - concurrent starts (several replicas) serialise on an advisory lock, so each applies once;
//  - re-running is a no-op; a recorded migration whose checksum differs from the binary's is
//    refused (FAILED_PRECONDITION), and so is a database with a version newer than the binary's
//    newest: an old binary must never run against a schema it does not know.
#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dangjian::sql {

class PgPool;

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

struct MigrationReport {
  int previous_version = 0;  // newest version recorded before this run (0: empty database)
  int current_version = 0;   // newest version recorded after it
  std::vector<int> applied;  // versions applied by this run
};

// Applies `migrations` of one component (e.g. "audit", "registry"); schema_migrations keys rows
// by (component, version), so common/ and a service keep separate version sequences in one
// database. `migrations` must be sorted by version, versions unique and > 0 (checked).
absl::StatusOr<MigrationReport> ApplyMigrations(PgPool& pool, absl::string_view component,
                                                const std::vector<Migration>& migrations);

}  // namespace dangjian::sql
