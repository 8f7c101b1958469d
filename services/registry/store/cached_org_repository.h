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
// - Ids that do not exist are cached too, briefly (`negative_ttl`), as an entry of version 0 under
//   the org's key: a reader scoped to one subtree then learns nothing from how long a refusal
//   takes (an id that exists elsewhere is refused from memory; without this, an absent one cost
//   a database lookup). Any write of the org (version >= 1) replaces it; an import, which does not
//   write entries, deletes the keys of the orgs it created.
// - The cache is not trusted blindly: an entry (or the cached revision) above the feed head this
//   replica knows (`known_head`, from the change feed) was not written by any committed change we
//   know of. It is checked against PostgreSQL, and if PostgreSQL does not back it, deleted and
//   counted (`refused`), so an entry planted in Redis with a high version neither is served nor
//   blocks later legitimate updates.
// Thread-safe if the inner repository and the cache are.
#pragma once

#include <prometheus/counter.h>

#include <cstdint>
#include <functional>

#include "absl/time/time.h"
#include "common/cache/cache.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

// Keys of cached orgs start with this (an in-process cache tier tracks changes under it).
inline constexpr absl::string_view kOrgCacheKeyPrefix = "org:";

struct CachedOrgRepositoryOptions {
  absl::Duration ttl = absl::Minutes(10);
  // How long "no org with this id" is cached; 0 turns negative caching off.
  absl::Duration negative_ttl = absl::Seconds(5);
  // The highest feed revision this replica knows to be committed (ChangeNotifier::head); null
  // trusts every entry. Called on every cache hit: must be cheap and non-blocking.
  std::function<int64_t()> known_head;
  // Counts cache entries refused and deleted because PostgreSQL did not back them; may be null.
  prometheus::Counter* refused = nullptr;
};

class CachedOrgRepository final : public OrgRepository {
 public:
  CachedOrgRepository(OrgRepository& inner, cache::Cache& cache,
                      CachedOrgRepositoryOptions options);

  absl::StatusOr<Org> Get(int64_t id, const ReadContext& ctx) override;
  bool GetLocal(int64_t id, v1::Org* out) override;
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
  void FillAbsent(int64_t id);
  void AfterWrite(const std::vector<Org>& changed, int64_t revision);
  absl::StatusOr<WriteResult> AfterWrite(absl::StatusOr<WriteResult> result);
  // Whether an entry of `version` may be served without asking PostgreSQL.
  bool Trusted(int64_t version) const;
  // Deletes `key`, which PostgreSQL did not back; counts and logs it.
  void Refuse(const std::string& key, int64_t version);
  // The answer for `id` when the cache held `held` (a version above the known head): what
  // PostgreSQL says, the entry deleted unless PostgreSQL backs it.
  absl::StatusOr<Org> Verify(int64_t id, const cache::CachedValue& held, const ReadContext& ctx);

  OrgRepository& inner_;
  cache::Cache& cache_;
  const CachedOrgRepositoryOptions options_;
};

}  // namespace dangjian::registry
