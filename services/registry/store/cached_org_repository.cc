#include "services/registry/store/cached_org_repository.h"

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "services/registry/domain/org_proto.h"

namespace dangjian::registry {
namespace {

constexpr char kRevisionKey[] = "revision";

std::string OrgKey(int64_t id) { return absl::StrCat(kOrgCacheKeyPrefix, id); }

// "No org with this id": the lowest version, so any entry of a real org replaces it.
bool IsAbsent(const cache::CachedValue& value) { return value.version == 0 && value.data.empty(); }

absl::Status OrgNotFound(int64_t id) {
  // The same words as PgOrgRepository's, so a cached answer reads like a fresh one.
  return absl::NotFoundError(absl::StrCat("org ", id, " not found"));
}

std::optional<Org> Decode(const std::optional<cache::CachedValue>& value) {
  if (!value || IsAbsent(*value)) return std::nullopt;
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
                                         CachedOrgRepositoryOptions options)
    : inner_(inner), cache_(cache), options_(std::move(options)) {}

void CachedOrgRepository::Fill(const Org& org) {
  cache_.Fill(OrgKey(org.id), {org.revision, ToProto(org).SerializeAsString()}, options_.ttl);
}

void CachedOrgRepository::FillAbsent(int64_t id) {
  if (options_.negative_ttl <= absl::ZeroDuration()) return;
  cache_.Fill(OrgKey(id), {0, std::string()}, options_.negative_ttl);
}

bool CachedOrgRepository::Trusted(int64_t version) const {
  return !options_.known_head || version <= options_.known_head();
}

void CachedOrgRepository::Refuse(const std::string& key, int64_t version) {
  cache_.Invalidate({key});
  if (options_.refused != nullptr) options_.refused->Increment();
  log::Warn("cache entry above the known feed head, not backed by the database: deleted",
            {{"key", key}, {"version", version}});
}

absl::StatusOr<Org> CachedOrgRepository::Verify(int64_t id, const cache::CachedValue& held,
                                                const ReadContext& ctx) {
  absl::StatusOr<Org> org = inner_.Get(id, ctx);
  if (!org.ok() && !absl::IsNotFound(org.status())) return org;  // cannot tell: keep the entry
  // Backed: the database holds this version (a write this replica's feed has not seen yet) or
  // a newer one (then the fill below replaces the entry).
  const bool backed =
      org.ok() &&
      (org->revision > held.version ||
       (org->revision == held.version && ToProto(*org).SerializeAsString() == held.data));
  if (!backed) Refuse(OrgKey(id), held.version);
  if (org.ok()) {
    if (org->revision > held.version || !backed) Fill(*org);
  } else {
    FillAbsent(id);
  }
  return org;
}

absl::StatusOr<Org> CachedOrgRepository::Get(int64_t id, const ReadContext& ctx) {
  if (std::optional<cache::CachedValue> held = cache_.Get(OrgKey(id))) {
    if (!Trusted(held->version)) return Verify(id, *held, ctx);
    if (IsAbsent(*held)) return OrgNotFound(id);
    if (std::optional<Org> hit = Decode(held)) return *std::move(hit);
  }
  absl::StatusOr<Org> org = inner_.Get(id, ctx);
  if (org.ok()) {
    Fill(*org);
  } else if (absl::IsNotFound(org.status())) {
    FillAbsent(id);
  }
  return org;
}

bool CachedOrgRepository::GetLocal(int64_t id, v1::Org* out) {
  std::optional<cache::CachedValue> held = cache_.GetLocal(OrgKey(id));
  if (!held || !Trusted(held->version) || IsAbsent(*held)) return false;
  return out->ParseFromString(held->data);
}

absl::StatusOr<std::vector<Org>> CachedOrgRepository::BatchGet(const std::vector<int64_t>& ids,
                                                               const ReadContext& ctx) {
  std::vector<std::string> keys;
  keys.reserve(ids.size());
  for (int64_t id : ids) keys.push_back(OrgKey(id));
  std::vector<std::optional<cache::CachedValue>> values = cache_.MultiGet(keys);
  std::vector<Org> orgs;
  std::vector<int64_t> missing;
  std::unordered_map<int64_t, cache::CachedValue> suspect;  // above the known head
  for (size_t i = 0; i < ids.size(); ++i) {
    std::optional<cache::CachedValue>* held = i < values.size() ? &values[i] : nullptr;
    if (held != nullptr && held->has_value() && !Trusted((*held)->version)) {
      suspect.emplace(ids[i], **held);
      missing.push_back(ids[i]);
      continue;
    }
    if (held != nullptr && held->has_value() && IsAbsent(**held)) continue;  // known absent
    std::optional<Org> hit = held != nullptr ? Decode(*held) : std::nullopt;
    if (hit) {
      orgs.push_back(*std::move(hit));
    } else {
      missing.push_back(ids[i]);
    }
  }
  if (missing.empty()) return orgs;
  absl::StatusOr<std::vector<Org>> loaded = inner_.BatchGet(missing, ctx);
  if (!loaded.ok()) return loaded.status();
  absl::flat_hash_set<int64_t> found;
  for (Org& org : *loaded) {
    found.insert(org.id);
    auto it = suspect.find(org.id);
    if (it != suspect.end()) {
      const cache::CachedValue& held = it->second;
      const bool backed =
          org.revision > held.version ||
          (org.revision == held.version && ToProto(org).SerializeAsString() == held.data);
      if (!backed) Refuse(OrgKey(org.id), held.version);
      if (backed && org.revision == held.version) {
        orgs.push_back(std::move(org));
        continue;
      }
    }
    Fill(org);
    orgs.push_back(std::move(org));
  }
  for (int64_t id : missing) {
    if (found.contains(id)) continue;
    auto it = suspect.find(id);
    if (it != suspect.end()) Refuse(OrgKey(id), it->second.version);
    FillAbsent(id);
  }
  return orgs;
}

absl::StatusOr<ListPage> CachedOrgRepository::List(const ListQuery& query, const ReadContext& ctx) {
  std::optional<int64_t> revision = cache_.GetCounter(kRevisionKey);
  if (revision && !Trusted(*revision)) {
    // Pages are keyed by this revision, so a planted high one would freeze every list.
    absl::StatusOr<int64_t> head = inner_.HeadRevision(ctx);
    if (!head.ok()) return head.status();
    if (*revision > *head) {
      Refuse(kRevisionKey, *revision);
      revision = std::nullopt;
    }
  }
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
    auto cached = std::make_unique<v1::ListOrgsResponse>();
    if (hit->version == *revision && cached->ParseFromString(hit->data)) {
      ListPage page;
      page.more = !cached->next_page_token().empty();
      page.wire = std::move(cached);
      return page;
    }
  }
  absl::StatusOr<ListPage> page = inner_.List(query, ctx);
  if (page.ok()) {
    v1::ListOrgsResponse encoded;
    for (const Org& org : page->orgs) ToProto(org, encoded.add_orgs());
    if (page->more) encoded.set_next_page_token("more");
    cache_.Fill(key, {*revision, encoded.SerializeAsString()}, options_.ttl);
  }
  return page;
}

void CachedOrgRepository::AfterWrite(const std::vector<Org>& changed, int64_t revision) {
  for (const Org& org : changed) {
    cache_.SetAfterWrite(OrgKey(org.id), {org.revision, ToProto(org).SerializeAsString()},
                         options_.ttl);
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
  if (!result.ok()) return result;
  // New orgs are not written to the cache (one command per org would slow a bulk import); one
  // command drops what a reader may have cached of their ids as absent.
  if (options_.negative_ttl > absl::ZeroDuration() && !result->created_orgs.empty()) {
    std::vector<std::string> keys;
    keys.reserve(result->created_orgs.size());
    for (const Org& org : result->created_orgs) keys.push_back(OrgKey(org.id));
    cache_.Invalidate(keys);
  }
  AfterWrite({}, result->revision);
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
