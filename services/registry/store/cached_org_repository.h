// OrgRepository decorator putting the cache in front of reads (cache-aside).
//
// - Orgs are cached by id in their wire form, versioned by their feed revision, so a reader that
//   loaded an org before a write committed cannot overwrite the writer's newer entry.
// - List pages are cached under the feed revision current when they were read ("list:<rev>:..."):
//   every write raises the cached revision after its commit, so later reads use new keys and old
//   pages simply expire.
// - Every write updates the entries of every org it changed (a move: the whole subtree) and the
//   revision, after its commit. The cache itself guarantees that a failed update is replayed before
//   the cache is read again (see common/cache/cache.h), so no read after a successful write
//   returns the old value.
// - GetLocal() answers from the cache's in-process tier only (cache::Cache::GetLocal), for the
//   service to serve hot reads on the gRPC thread.
// Thread-safe if the inner repository and the cache are.
#pragma once

#include "absl/time/time.h"
#include "common/cache/cache.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

// Keys of cached orgs start with this (an in-process cache tier tracks changes under it).
inline constexpr absl::string_view kOrgCacheKeyPrefix = "org:";

class CachedOrgRepository final : public OrgRepository {
 public:
  CachedOrgRepository(OrgRepository& inner, cache::Cache& cache, absl::Duration ttl);

  absl::StatusOr<Org> Get(int64_t id, const ReadContext& ctx) override;
  std::optional<Org> GetLocal(int64_t id) override;
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

 private:
  void Fill(const Org& org);
  void AfterWrite(const std::vector<Org>& changed, int64_t revision);
  absl::StatusOr<WriteResult> AfterWrite(absl::StatusOr<WriteResult> result);

  OrgRepository& inner_;
  cache::Cache& cache_;
  const absl::Duration ttl_;
};

}  // namespace dangjian::registry
