#include "services/registry/store/cached_org_repository.h"

#include <string>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/registry/domain/org_proto.h"

namespace dangjian::registry {
namespace {

constexpr char kRevisionKey[] = "revision";

std::string OrgKey(int64_t id) { return absl::StrCat(kOrgCacheKeyPrefix, id); }

std::optional<Org> Decode(const std::optional<cache::CachedValue>& value) {
  if (!value) return std::nullopt;
  v1::Org proto;
  if (!proto.ParseFromString(value->data)) return std::nullopt;
  return FromProto(proto);
}

template <typename T>
std::string Join(const std::vector<T>& values) {
  std::vector<int> ints;
  for (const T& v : values) ints.push_back(static_cast<int>(v));
  return absl::StrJoin(ints, ",");
}

std::string ListKey(int64_t revision, const ListQuery& q) {
  return absl::StrCat("list:", revision, ":", q.root_path, "|", q.root_depth, "|", Join(q.kinds),
                      "|", Join(q.domains), "|", Join(q.statuses), "|", q.max_depth, "|",
                      q.page_size, "|", q.after_path);
}

}  // namespace

CachedOrgRepository::CachedOrgRepository(OrgRepository& inner, cache::Cache& cache,
                                         absl::Duration ttl)
    : inner_(inner), cache_(cache), ttl_(ttl) {}

void CachedOrgRepository::Fill(const Org& org) {
  cache_.Fill(OrgKey(org.id), {org.revision, ToProto(org).SerializeAsString()}, ttl_);
}

absl::StatusOr<Org> CachedOrgRepository::Get(int64_t id, const ReadContext& ctx) {
  if (std::optional<Org> hit = Decode(cache_.Get(OrgKey(id)))) return *std::move(hit);
  absl::StatusOr<Org> org = inner_.Get(id, ctx);
  if (org.ok()) Fill(*org);
  return org;
}

std::optional<Org> CachedOrgRepository::GetLocal(int64_t id) {
  return Decode(cache_.GetLocal(OrgKey(id)));
}

absl::StatusOr<std::vector<Org>> CachedOrgRepository::BatchGet(const std::vector<int64_t>& ids,
                                                               const ReadContext& ctx) {
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (int64_t id : ids) keys.push_back(OrgKey(id));
  std::vector<std::optional<cache::CachedValue>> values = cache_.MultiGet(keys);
  std::vector<Org> orgs;
  std::vector<int64_t> missing;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::optional<Org> hit = i < values.size() ? Decode(values[i]) : std::nullopt;
    if (hit) {
      orgs.push_back(*std::move(hit));
    } else {
      missing.push_back(ids[i]);
    }
  }
  if (missing.empty()) return orgs;
  absl::StatusOr<std::vector<Org>> loaded = inner_.BatchGet(missing, ctx);
  if (!loaded.ok()) return loaded.status();
  for (Org& org : *loaded) {
    Fill(org);
    orgs.push_back(std::move(org));
  }
  return orgs;
}

absl::StatusOr<ListPage> CachedOrgRepository::List(const ListQuery& query, const ReadContext& ctx) {
  std::optional<int64_t> revision = cache_.GetCounter(kRevisionKey);
  if (!revision) {
    // Redis restarted or the key expired: learn the head from PostgreSQL. Pages read after this
    // are at least as new as `head`, so storing them under it is safe.
    absl::StatusOr<int64_t> head = inner_.HeadRevision(ctx);
    if (!head.ok()) return head.status();
    cache_.RaiseCounter(kRevisionKey, *head, /*after_write=*/false);
    revision = *head;
  }
  const std::string key = ListKey(*revision, query);
  if (std::optional<cache::CachedValue> hit = cache_.Get(key)) {
    v1::ListOrgsResponse cached;
    if (cached.ParseFromString(hit->data)) {
      ListPage page;
      for (const v1::Org& o : cached.orgs()) page.orgs.push_back(FromProto(o));
      page.more = !cached.next_page_token().empty();
      return page;
    }
  }
  absl::StatusOr<ListPage> page = inner_.List(query, ctx);
  if (page.ok()) {
    v1::ListOrgsResponse encoded;
    for (const Org& org : page->orgs) ToProto(org, encoded.add_orgs());
    if (page->more) encoded.set_next_page_token("more");
    cache_.Fill(key, {*revision, encoded.SerializeAsString()}, ttl_);
  }
  return page;
}

void CachedOrgRepository::AfterWrite(const std::vector<Org>& changed, int64_t revision) {
  for (const Org& org : changed) {
    cache_.SetAfterWrite(OrgKey(org.id), {org.revision, ToProto(org).SerializeAsString()}, ttl_);
  }
  if (revision > 0) cache_.RaiseCounter(kRevisionKey, revision, /*after_write=*/true);
}

absl::StatusOr<WriteResult> CachedOrgRepository::AfterWrite(absl::StatusOr<WriteResult> result) {
  if (result.ok()) AfterWrite(result->changed, result->revision);
  return result;
}

absl::StatusOr<WriteResult> CachedOrgRepository::Create(const CreateOrgCommand& cmd,
                                                        const WriteContext& ctx) {
  return AfterWrite(inner_.Create(cmd, ctx));
}

absl::StatusOr<WriteResult> CachedOrgRepository::Update(const UpdateOrgCommand& cmd,
                                                        const WriteContext& ctx) {
  return AfterWrite(inner_.Update(cmd, ctx));
}

absl::StatusOr<WriteResult> CachedOrgRepository::Move(const MoveOrgCommand& cmd,
                                                      const WriteContext& ctx) {
  return AfterWrite(inner_.Move(cmd, ctx));
}

absl::StatusOr<WriteResult> CachedOrgRepository::Dissolve(const DissolveOrgCommand& cmd,
                                                          const WriteContext& ctx) {
  return AfterWrite(inner_.Dissolve(cmd, ctx));
}

absl::StatusOr<ImportResult> CachedOrgRepository::Import(const std::vector<ImportRow>& rows,
                                                         const WriteContext& ctx) {
  absl::StatusOr<ImportResult> result = inner_.Import(rows, ctx);
  // New orgs cannot be in the cache (misses are not cached), so only the revision moves.
  if (result.ok()) AfterWrite({}, result->revision);
  return result;
}

absl::StatusOr<std::vector<Change>> CachedOrgRepository::ChangesSince(int64_t after, int limit,
                                                                      const ReadContext& ctx) {
  return inner_.ChangesSince(after, limit, ctx);
}

absl::StatusOr<int64_t> CachedOrgRepository::HeadRevision(const ReadContext& ctx) {
  return inner_.HeadRevision(ctx);
}

absl::StatusOr<std::vector<OrgCount>> CachedOrgRepository::CountOrgs(const ReadContext& ctx) {
  return inner_.CountOrgs(ctx);
}

absl::Status CachedOrgRepository::AuditRefused(const audit::AuditRecord& record) {
  return inner_.AuditRefused(record);
}

}  // namespace dangjian::registry
