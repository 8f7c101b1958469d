// OrgRepository on PostgreSQL (schema in migrations/0001_org_tree.sql).
//
// Every write transaction first locks the feed head row, so writes are serialised and change
// revisions are handed out in commit order (the feed never shows a gap that fills later), and
// idempotency and uniqueness checks cannot race. Writes to an org tree are rare next to reads;
// reads take no lock. Each write appends its audit row in the same transaction.
// After bulk imports it refreshes the planner's statistics (see MaybeAnalyze).
// Thread-safe (the pool is).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/page_token.h"
#include "common/sql/pg_pool.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

class PgOrgRepository final : public OrgRepository {
 public:
  // Registers the prepared statements on `pool`: construct before the pool serves requests.
  explicit PgOrgRepository(sql::PgPool& pool, Clock& clock = RealClock::Get());

  absl::StatusOr<Org> Get(int64_t id, const ReadContext& ctx) override;
  absl::StatusOr<std::vector<Org>> BatchGet(const std::vector<int64_t>& ids,
                                            const ReadContext& ctx) override;
  absl::StatusOr<ListPage> List(const ListQuery& query, const ReadContext& ctx) override;
  absl::StatusOr<WriteResult> Create(const CreateOrgCommand& cmd, const WriteContext& ctx) override;
  absl::StatusOr<WriteResult> Update(const UpdateOrgCommand& cmd, const WriteContext& ctx) override;
  absl::StatusOr<WriteResult> Move(const MoveOrgCommand& cmd, const WriteContext& ctx) override;
  absl::StatusOr<WriteResult> Dissolve(const DissolveOrgCommand& cmd,
                                       const WriteContext& ctx) override;
  absl::StatusOr<ImportResult> Import(const std::vector<ImportRow>& rows,
                                      const WriteContext& ctx) override;
  absl::StatusOr<std::vector<Change>> ChangesSince(int64_t after, int limit,
                                                   const ReadContext& ctx) override;
  absl::StatusOr<int64_t> HeadRevision(const ReadContext& ctx) override;
  absl::StatusOr<std::vector<OrgCount>> CountOrgs(const ReadContext& ctx) override;
  absl::Status AuditRefused(const audit::AuditRecord& record) override;

  // The keys that seal page tokens (migrations/0002_page_token_keys.sql), oldest first; makes the
  // first key if there is none yet.
  absl::StatusOr<std::vector<PageTokenKey>> PageTokenKeys();

 private:
  // Runs `work` as a write: audit row on success in the same transaction, and on failure in
  // one of its own with the failure's code.
  absl::StatusOr<WriteResult> Write(
      const char* name, const WriteContext& ctx, const std::string& target,
      const std::function<absl::StatusOr<WriteResult>(pqxx::transaction_base&)>& work);

  // ANALYZEs orgs and org_changes once the orgs imported since the last ANALYZE here reach the
  // rows the table held then (at least kAnalyzeMinRows): a few runs over a bulk load of any size
  // (doubling), each bounded by PostgreSQL's sample size. Without statistics (autovacuum looks
  // once a minute), the planner takes a keyset page for a few rows and sorts the rest of the
  // subtree for every page: listing a 200,000-org province took 23-47 s instead of 1.6-1.9 s.
  // A failed ANALYZE is logged; the import it follows has committed.
  void MaybeAnalyze(int64_t created);

  sql::PgPool& pool_;
  Clock& clock_;
  std::atomic<int64_t> imported_since_analyze_{0};
  std::atomic<int64_t> analyzed_rows_{0};  // orgs at the last ANALYZE (reltuples)
  absl::Mutex analyze_mu_;                 // one ANALYZE at a time; imports never wait for it
};

}  // namespace dangjian::registry
