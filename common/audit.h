// Audit log: one row per mutating RPC (caller, time, method, target, request_id, outcome), kept in
// each service's own database, in table audit_log.
//
// Rows are hash-chained: each row stores sha256(previous row's hash || its own fields), so an
// edited, removed or reordered row breaks the chain and VerifyChain() finds the first bad row.
// Appends serialise on the chain's head row (SELECT ... FOR UPDATE), so the chain has no forks.
// A successful change appends inside the change's own transaction; a failed or refused call
// appends in a transaction of its own (the change's was rolled back).
// Thread-safe (all state is in the database).
#pragma once

#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/sql/migrations.h"
#include "common/sql/pg_pool.h"

namespace dangjian::audit {

struct AuditRecord {
  std::string caller;      // the token's subject
  std::string method;      // full gRPC method, e.g. /dangjian.registry.v1.OrgRegistry/CreateOrg
  std::string target;      // e.g. "org/42"
  std::string request_id;  // the client's request_id or the x-request-id
  std::string outcome;     // "OK" or the status code name, e.g. "FAILED_PRECONDITION"
  std::string detail;      // short text: the rule or reason; never secrets or PII
};

// The audit_log schema, applied with sql::ApplyMigrations(pool, "audit", Migrations()).
const std::vector<sql::Migration>& Migrations();

// Appends within `tx`; the time is the transaction's (now()).
absl::Status Append(pqxx::transaction_base& tx, const AuditRecord& record);
// Appends in a transaction of its own. A row it cannot write is logged, repeats held back and
// counted (PgPool::failure_log), so a database outage does not write one line per call.
absl::Status AppendStandalone(sql::PgPool& pool, const AuditRecord& record);

struct ChainReport {
  int64_t rows = 0;
  int64_t first_bad_id = 0;  // 0 when the chain is intact
};
absl::StatusOr<ChainReport> VerifyChain(sql::PgPool& pool);

}  // namespace dangjian::audit
