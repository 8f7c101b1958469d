#include "services/registry/store/pg_org_repository.h"

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status.h"
#include "services/registry/domain/rules.h"

namespace dangjian::registry {
namespace {

// The columns every org read selects, in the order RowToOrg reads them. Times come back as
// microseconds since the epoch, dates as YYYY-MM-DD.
constexpr char kOrgColumns[] =
    "id, code, name, parent_id, kind, joint, domain, region_code, status, "
    "to_char(established_on, 'YYYY-MM-DD'), depth, path, version, revision, "
    "(extract(epoch FROM create_time) * 1000000)::bigint, "
    "(extract(epoch FROM update_time) * 1000000)::bigint, "
    "(extract(epoch FROM dissolve_time) * 1000000)::bigint, dissolve_reason";

// Prepared statement names and their SQL.
constexpr char kGetOrg[] = "registry_get_org";
constexpr char kGetOrgs[] = "registry_get_orgs";
constexpr char kGetOrgsByCode[] = "registry_get_orgs_by_code";
constexpr char kListOrgs[] = "registry_list_orgs";
constexpr char kLockHead[] = "registry_lock_head";
constexpr char kSetHead[] = "registry_set_head";
constexpr char kHead[] = "registry_head";
constexpr char kCountOrgs[] = "registry_count_orgs";
constexpr char kByRequestId[] = "registry_org_by_request_id";
constexpr char kCodeOwner[] = "registry_code_owner";
constexpr char kNextIds[] = "registry_next_ids";
constexpr char kInsertOrg[] = "registry_insert_org";
constexpr char kUpdateOrg[] = "registry_update_org";
constexpr char kDissolveOrg[] = "registry_dissolve_org";
constexpr char kMoveSubtree[] = "registry_move_subtree";
constexpr char kActiveChildren[] = "registry_active_children";
constexpr char kChildKinds[] = "registry_child_kinds";
constexpr char kRecordChange[] = "registry_record_change";
constexpr char kRecordChanges[] = "registry_record_changes";
constexpr char kChangesSince[] = "registry_changes_since";
constexpr char kAddFirstTokenKey[] = "registry_add_first_token_key";
constexpr char kTokenKeys[] = "registry_token_keys";

// The fewest imported orgs that make an import refresh the statistics (see MaybeAnalyze).
constexpr int64_t kAnalyzeMinRows = 1000;

constexpr char kChangeColumnsTail[] =
    "previous_parent_id, previous_path, id, code, name, parent_id, kind, joint, domain, "
    "region_code, status, established_on, depth, path, version, create_time, update_time, "
    "dissolve_time, dissolve_reason";

void PrepareStatements(sql::PgPool& pool) {
  // Key 1 only while there is no key at all: a retired (deleted) key 1 is not made again once a
  // later key exists. Replicas starting together race to it; one insert wins.
  pool.Prepare(kAddFirstTokenKey,
               "INSERT INTO page_token_keys (key_id, secret) SELECT 1, decode($1, 'hex') "
               "WHERE NOT EXISTS (SELECT FROM page_token_keys) ON CONFLICT (key_id) DO NOTHING");
  pool.Prepare(kTokenKeys,
               "SELECT key_id, encode(secret, 'hex') FROM page_token_keys ORDER BY key_id");
  pool.Prepare(kGetOrg, absl::StrCat("SELECT ", kOrgColumns, " FROM orgs WHERE id = $1"));
  pool.Prepare(kGetOrgs,
               absl::StrCat("SELECT ", kOrgColumns, " FROM orgs WHERE id = ANY($1::bigint[])"));
  pool.Prepare(kGetOrgsByCode,
               absl::StrCat("SELECT ", kOrgColumns, " FROM orgs WHERE code = ANY($1::text[])"));
  // Keyset page of a subtree in tree order: [$1, $2) is the subtree's path range, $3 the last
  // path of the previous page. Filters are NULL when not set.
  pool.Prepare(kListOrgs,
               absl::StrCat("SELECT ", kOrgColumns,
                            " FROM orgs WHERE path >= $1 AND path < $2 AND path > $3"
                            " AND ($4::smallint[] IS NULL OR kind = ANY($4::smallint[]))"
                            " AND ($5::smallint[] IS NULL OR domain = ANY($5::smallint[]))"
                            " AND ($6::smallint[] IS NULL OR status = ANY($6::smallint[]))"
                            " AND ($7::int IS NULL OR depth <= $7::int)"
                            " ORDER BY path LIMIT $8"));
  pool.Prepare(kLockHead, "SELECT revision FROM feed_head FOR UPDATE");
  pool.Prepare(kSetHead, "UPDATE feed_head SET revision = $1");
  pool.Prepare(kHead, "SELECT revision FROM feed_head");
  pool.Prepare(kCountOrgs,
               "SELECT kind, domain, status, count(*) FROM orgs GROUP BY kind, domain, status");
  pool.Prepare(kByRequestId,
               "SELECT id, create_request_hash FROM orgs WHERE create_request_id = $1");
  pool.Prepare(kCodeOwner, "SELECT id FROM orgs WHERE code = $1");
  pool.Prepare(kNextIds, "SELECT nextval('org_id_seq') FROM generate_series(1, $1)");
  pool.Prepare(kInsertOrg,
               "INSERT INTO orgs (id, code, name, parent_id, kind, joint, domain, region_code, "
               "established_on, depth, path, revision, create_request_id, create_request_hash) "
               "VALUES ($1, NULLIF($2, ''), $3, NULLIF($4::bigint, 0), $5, $6, $7, $8, "
               "NULLIF($9, '')::date, $10, $11, $12, NULLIF($13, ''), NULLIF($14, ''))");
  pool.Prepare(kUpdateOrg,
               "UPDATE orgs SET code = NULLIF($2, ''), name = $3, kind = $4, joint = $5, "
               "domain = $6, region_code = $7, established_on = NULLIF($8, '')::date, "
               "version = version + 1, revision = $9, update_time = now() WHERE id = $1");
  pool.Prepare(kDissolveOrg,
               "UPDATE orgs SET status = 2, dissolve_time = now(), dissolve_reason = $2, "
               "version = version + 1, revision = $3, update_time = now() WHERE id = $1");
  // Re-roots the subtree at old path $1 to new path $2: paths and depths follow, each org gets
  // its own revision ($4 + its rank in tree order), the root gets its new parent $3.
  pool.Prepare(
      kMoveSubtree,
      "WITH sub AS (SELECT id, row_number() OVER (ORDER BY path) AS rank FROM orgs "
      "  WHERE path >= $1 AND path < $5) "
      "UPDATE orgs o SET path = $2 || substr(o.path, length($1) + 1), "
      "  depth = o.depth + $6, version = o.version + 1, revision = $4 + sub.rank, "
      "  update_time = now(), "
      "  parent_id = CASE WHEN o.path = $1 THEN NULLIF($3::bigint, 0) ELSE o.parent_id END "
      "FROM sub WHERE o.id = sub.id");
  pool.Prepare(kActiveChildren, "SELECT count(*) FROM orgs WHERE parent_id = $1 AND status = 1");
  pool.Prepare(kChildKinds, "SELECT DISTINCT kind FROM orgs WHERE parent_id = $1 AND status = 1");
  pool.Prepare(kRecordChange,
               absl::StrCat("INSERT INTO org_changes (revision, change_type, ", kChangeColumnsTail,
                            ") SELECT revision, $2, NULLIF($3::bigint, 0), NULLIF($4, ''), ",
                            "id, code, name, parent_id, kind, joint, domain, region_code, status, "
                            "established_on, depth, path, version, create_time, update_time, "
                            "dissolve_time, dissolve_reason FROM orgs WHERE id = $1"));
  // Changes for every org of a moved subtree (new path range [$1, $2)), or of a set of new orgs.
  pool.Prepare(kRecordChanges,
               absl::StrCat("INSERT INTO org_changes (revision, change_type, ", kChangeColumnsTail,
                            ") SELECT revision, $3, CASE WHEN $5 = '' THEN NULL WHEN path = $1 "
                            "THEN NULLIF($4::bigint, 0) ELSE parent_id END,"
                            " CASE WHEN $5 <> '' THEN $5 || substr(path, length($1) + 1) END, "
                            "id, code, name, parent_id, kind, joint, domain, region_code, status, "
                            "established_on, depth, path, version, create_time, update_time, "
                            "dissolve_time, dissolve_reason FROM orgs "
                            "WHERE (path >= $1 AND path < $2) OR id = ANY($6::bigint[])"));
  pool.Prepare(kChangesSince,
               absl::StrCat("SELECT revision, change_type, ",
                            "(extract(epoch FROM change_time) * 1000000)::bigint, ",
                            "previous_parent_id, previous_path, ", kOrgColumns,
                            " FROM org_changes WHERE revision > $1 ORDER BY revision LIMIT $2"));
}

std::string PathString(const std::vector<int64_t>& path) {
  return path.empty() ? "/" : absl::StrCat("/", absl::StrJoin(path, "/"), "/");
}

std::vector<int64_t> ParsePath(absl::string_view text) {
  std::vector<int64_t> ids;
  for (absl::string_view part : absl::StrSplit(text, '/', absl::SkipEmpty())) {
    int64_t id = 0;
    if (absl::SimpleAtoi(part, &id)) ids.push_back(id);
  }
  return ids;
}

// The first string after every string that starts with `prefix` (prefix ends in '/').
std::string PrefixUpperBound(const std::string& prefix) {
  std::string upper = prefix;
  upper.back() = static_cast<char>(upper.back() + 1);
  return upper;
}

std::string DateString(const std::optional<CivilDate>& d) {
  if (!d) return "";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", d->year, d->month, d->day);
  return buf;
}

std::optional<CivilDate> ParseDate(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  CivilDate d;
  if (std::sscanf(f.c_str(), "%d-%d-%d", &d.year, &d.month, &d.day) != 3) return std::nullopt;
  return d;
}

Org RowToOrg(const pqxx::row& r, int o = 0) {
  Org org;
  org.id = r[o + 0].as<int64_t>();
  org.fields.code = r[o + 1].is_null() ? "" : r[o + 1].as<std::string>();
  org.fields.name = r[o + 2].as<std::string>();
  org.parent_id = r[o + 3].is_null() ? 0 : r[o + 3].as<int64_t>();
  org.fields.kind = static_cast<OrgKind>(r[o + 4].as<int>());
  org.fields.joint = r[o + 5].as<bool>();
  org.fields.domain = static_cast<OrgDomain>(r[o + 6].as<int>());
  org.fields.region_code = r[o + 7].as<std::string>();
  org.status = static_cast<OrgStatus>(r[o + 8].as<int>());
  org.fields.established = ParseDate(r[o + 9]);
  org.depth = r[o + 10].as<int>();
  org.path = ParsePath(r[o + 11].c_str());
  org.version = r[o + 12].as<int64_t>();
  org.revision = r[o + 13].as<int64_t>();
  org.create_time = absl::FromUnixMicros(r[o + 14].as<int64_t>());
  org.update_time = absl::FromUnixMicros(r[o + 15].as<int64_t>());
  if (!r[o + 16].is_null()) org.dissolve_time = absl::FromUnixMicros(r[o + 16].as<int64_t>());
  org.dissolve_reason = r[o + 17].is_null() ? "" : r[o + 17].as<std::string>();
  return org;
}

// A PostgreSQL array literal of integers, e.g. {1,2,3}.
template <typename T>
std::string IntArray(const std::vector<T>& values) {
  std::vector<int64_t> ints;
  ints.reserve(values.size());
  for (const T& v : values) ints.push_back(static_cast<int64_t>(v));
  return absl::StrCat("{", absl::StrJoin(ints, ","), "}");
}

// A PostgreSQL array literal of strings, each quoted and escaped.
std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// A NULL statement parameter.
constexpr const char* kNull = nullptr;

// NULL for an empty filter.
const char* FilterOrNull(const std::string& literal, bool empty) {
  return empty ? nullptr : literal.c_str();
}

std::optional<Org> LoadOrg(pqxx::transaction_base& tx, int64_t id) {
  pqxx::result r = tx.exec_prepared(kGetOrg, id);
  if (r.empty()) return std::nullopt;
  return RowToOrg(r[0]);
}

int64_t LockHead(pqxx::transaction_base& tx) {
  return tx.exec_prepared1(kLockHead)[0].as<int64_t>();
}

absl::Status CheckEtag(const Org& org, const std::string& etag) {
  if (etag.empty() || etag == EtagOf(org)) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat("etag ", etag, " is stale: org ", org.id,
                                         " has changed (current etag ", EtagOf(org),
                                         "); read it again and retry"));
}

// The org a write targets, locked by the caller's head lock: it must exist in the caller's scope
// ([org-scope]) and, when the client sent an etag, still carry it.
absl::StatusOr<Org> LoadTarget(pqxx::transaction_base& tx, int64_t id, const WriteContext& ctx,
                               const std::string& etag) {
  std::optional<Org> org = LoadOrg(tx, id);
  DJ_RETURN_IF_ERROR(CheckInScope(org ? &*org : nullptr, ctx.scope, absl::StrCat("org ", id)));
  DJ_RETURN_IF_ERROR(CheckEtag(*org, etag));
  return *std::move(org);
}

absl::Status CheckCodeFree(pqxx::transaction_base& tx, const std::string& code, int64_t self,
                           const std::string& field) {
  if (code.empty()) return absl::OkStatus();
  pqxx::result r = tx.exec_prepared(kCodeOwner, code);
  if (r.empty() || r[0][0].as<int64_t>() == self) return absl::OkStatus();
  return absl::AlreadyExistsError(absl::StrCat(field, " ", code, " is already registered"));
}

std::string TruncatedMessage(const absl::Status& st) {
  std::string m(st.message());
  if (m.size() > 300) m.resize(300);
  return m;
}

}  // namespace

PgOrgRepository::PgOrgRepository(sql::PgPool& pool, Clock& clock) : pool_(pool), clock_(clock) {
  PrepareStatements(pool_);
}

absl::StatusOr<Org> PgOrgRepository::Get(int64_t id, const ReadContext& ctx) {
  std::optional<Org> org;
  DJ_RETURN_IF_ERROR(
      pool_.Run({"registry.get_org", sql::Isolation::kReadCommitted, true, ctx.deadline},
                [&](pqxx::transaction_base& tx) {
                  org = LoadOrg(tx, id);
                  return absl::OkStatus();
                }));
  if (!org) return absl::NotFoundError(absl::StrCat("org ", id, " not found"));
  return *org;
}

absl::StatusOr<std::vector<Org>> PgOrgRepository::BatchGet(const std::vector<int64_t>& ids,
                                                           const ReadContext& ctx) {
  std::vector<Org> orgs;
  if (ids.empty()) return orgs;
  const std::string literal = IntArray(ids);
  DJ_RETURN_IF_ERROR(
      pool_.Run({"registry.batch_get_orgs", sql::Isolation::kReadCommitted, true, ctx.deadline},
                [&](pqxx::transaction_base& tx) {
                  orgs.clear();
                  for (const auto& row : tx.exec_prepared(kGetOrgs, literal)) {
                    orgs.push_back(RowToOrg(row));
                  }
                  return absl::OkStatus();
                }));
  return orgs;
}

absl::StatusOr<ListPage> PgOrgRepository::List(const ListQuery& q, const ReadContext& ctx) {
  const std::string lower = q.root_path;
  const std::string upper = PrefixUpperBound(q.root_path);
  const std::string kinds = IntArray(q.kinds);
  const std::string domains = IntArray(q.domains);
  const std::string statuses = IntArray(q.statuses);
  const std::string max_depth = std::to_string(q.root_depth + q.max_depth);
  ListPage page;
  DJ_RETURN_IF_ERROR(pool_.Run(
      {"registry.list_orgs", sql::Isolation::kReadCommitted, true, ctx.deadline},
      [&](pqxx::transaction_base& tx) {
        page.orgs.clear();
        pqxx::result r = tx.exec_prepared(
            kListOrgs, lower, upper, q.after_path, FilterOrNull(kinds, q.kinds.empty()),
            FilterOrNull(domains, q.domains.empty()), FilterOrNull(statuses, q.statuses.empty()),
            FilterOrNull(max_depth, q.max_depth <= 0), q.page_size + 1);
        for (const auto& row : r) page.orgs.push_back(RowToOrg(row));
        return absl::OkStatus();
      }));
  if (static_cast<int>(page.orgs.size()) > q.page_size) {
    page.orgs.resize(q.page_size);
    page.more = true;
  }
  return page;
}

absl::StatusOr<WriteResult> PgOrgRepository::Write(
    const char* name, const WriteContext& ctx, const std::string& target,
    const std::function<absl::StatusOr<WriteResult>(pqxx::transaction_base&)>& work) {
  WriteResult result;
  audit::AuditRecord record = ctx.audit;
  record.target = target;
  absl::Status st = pool_.Run({name, sql::Isolation::kReadCommitted, false, ctx.deadline},
                              [&](pqxx::transaction_base& tx) -> absl::Status {
                                absl::StatusOr<WriteResult> r = work(tx);
                                if (!r.ok()) return r.status();
                                result = *std::move(r);
                                audit::AuditRecord ok = record;
                                if (result.org.id != 0)
                                  ok.target = absl::StrCat("org/", result.org.id);
                                ok.outcome = "OK";
                                if (result.revision == 0) ok.detail = "no change";
                                return audit::Append(tx, ok);
                              });
  if (!st.ok()) {
    record.outcome = absl::StatusCodeToString(st.code());
    record.detail = TruncatedMessage(st);
    (void)audit::AppendStandalone(pool_, record);  // logs a row it cannot write
    return st;
  }
  return result;
}

absl::StatusOr<WriteResult> PgOrgRepository::Create(const CreateOrgCommand& cmd,
                                                    const WriteContext& ctx) {
  const std::string target =
      cmd.parent_id == 0 ? "org/(new root)" : absl::StrCat("org/(new under ", cmd.parent_id, ")");
  return Write(
      "registry.create_org", ctx, target,
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<WriteResult> {
        const int64_t head = LockHead(tx);
        WriteResult result;
        if (!cmd.request_id.empty()) {
          pqxx::result prior = tx.exec_prepared(kByRequestId, cmd.request_id);
          if (!prior.empty()) {
            if (prior[0][1].is_null() || prior[0][1].as<std::string>() != cmd.request_hash) {
              return InvalidFieldError("request_id",
                                       "was already used for a different request; use a new one");
            }
            std::optional<Org> org = LoadOrg(tx, prior[0][0].as<int64_t>());
            if (!org) return absl::InternalError("org of a recorded request_id vanished");
            DJ_RETURN_IF_ERROR(CheckInScope(&*org, ctx.scope, absl::StrCat("org ", org->id)));
            result.org = *std::move(org);
            return result;  // a retry: nothing changes
          }
        }
        std::optional<Org> parent;
        if (cmd.parent_id == 0) {
          DJ_RETURN_IF_ERROR(CheckMayUseRoot(ctx.scope));
        } else {
          parent = LoadOrg(tx, cmd.parent_id);
          DJ_RETURN_IF_ERROR(CheckInScope(parent ? &*parent : nullptr, ctx.scope,
                                          absl::StrCat("parent org ", cmd.parent_id)));
        }
        DJ_RETURN_IF_ERROR(CheckPlacement(cmd.fields.kind, parent ? &*parent : nullptr));
        DJ_RETURN_IF_ERROR(CheckCodeFree(tx, cmd.fields.code, 0, "org.code"));
        const int64_t id = tx.exec_prepared1(kNextIds, 1)[0].as<int64_t>();
        std::vector<int64_t> path = parent ? parent->path : std::vector<int64_t>{};
        path.push_back(id);
        const int64_t revision = head + 1;
        const OrgFields& f = cmd.fields;
        tx.exec_prepared0(kInsertOrg, id, f.code, f.name, cmd.parent_id, static_cast<int>(f.kind),
                          f.joint, static_cast<int>(f.domain), f.region_code,
                          DateString(f.established), parent ? parent->depth + 1 : 0,
                          PathString(path), revision, cmd.request_id, cmd.request_hash);
        tx.exec_prepared0(kRecordChange, id, static_cast<int>(ChangeType::kCreated), 0, "");
        tx.exec_prepared0(kSetHead, revision);
        result.org = *LoadOrg(tx, id);
        result.changed.push_back(result.org);
        result.revision = revision;
        return result;
      });
}

absl::StatusOr<WriteResult> PgOrgRepository::Update(const UpdateOrgCommand& cmd,
                                                    const WriteContext& ctx) {
  return Write(
      "registry.update_org", ctx, absl::StrCat("org/", cmd.id),
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<WriteResult> {
        const int64_t head = LockHead(tx);
        DJ_ASSIGN_OR_RETURN(std::optional<Org> org, LoadTarget(tx, cmd.id, ctx, cmd.etag));
        DJ_RETURN_IF_ERROR(CheckMutable(*org));
        OrgFields next = org->fields;
        const UpdateMask& m = cmd.mask;
        if (m.code) next.code = cmd.values.code;
        if (m.name) next.name = cmd.values.name;
        if (m.kind) next.kind = cmd.values.kind;
        if (m.joint) next.joint = cmd.values.joint;
        if (m.domain) next.domain = cmd.values.domain;
        if (m.region_code) next.region_code = cmd.values.region_code;
        if (m.established) next.established = cmd.values.established;
        WriteResult result;
        if (next == org->fields) {
          result.org = *std::move(org);
          return result;  // nothing to change: no new version, no change event
        }
        FieldErrors joint_errors;
        ValidateJoint(next.kind, next.joint, m.joint ? "org.joint" : "org.kind", joint_errors);
        DJ_RETURN_IF_ERROR(joint_errors.ToStatus());
        if (next.kind != org->fields.kind) {
          std::optional<Org> parent;
          if (org->parent_id != 0) parent = LoadOrg(tx, org->parent_id);
          std::vector<OrgKind> child_kinds;
          for (const auto& row : tx.exec_prepared(kChildKinds, org->id)) {
            child_kinds.push_back(static_cast<OrgKind>(row[0].as<int>()));
          }
          DJ_RETURN_IF_ERROR(CheckKindChange(next.kind, parent ? &*parent : nullptr, child_kinds));
        }
        if (next.code != org->fields.code) {
          DJ_RETURN_IF_ERROR(CheckCodeFree(tx, next.code, org->id, "org.code"));
        }
        const int64_t revision = head + 1;
        tx.exec_prepared0(kUpdateOrg, org->id, next.code, next.name, static_cast<int>(next.kind),
                          next.joint, static_cast<int>(next.domain), next.region_code,
                          DateString(next.established), revision);
        tx.exec_prepared0(kRecordChange, org->id, static_cast<int>(ChangeType::kUpdated), 0, "");
        tx.exec_prepared0(kSetHead, revision);
        result.org = *LoadOrg(tx, org->id);
        result.changed.push_back(result.org);
        result.revision = revision;
        return result;
      });
}

absl::StatusOr<WriteResult> PgOrgRepository::Move(const MoveOrgCommand& cmd,
                                                  const WriteContext& ctx) {
  return Write(
      "registry.move_org", ctx, absl::StrCat("org/", cmd.id),
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<WriteResult> {
        const int64_t head = LockHead(tx);
        DJ_ASSIGN_OR_RETURN(std::optional<Org> org, LoadTarget(tx, cmd.id, ctx, cmd.etag));
        DJ_RETURN_IF_ERROR(CheckMutable(*org));
        // A scoped caller cannot move its own scope root: that would move it out of its reach.
        if (ctx.scope == org->id) {
          return absl::PermissionDeniedError(absl::StrCat(
              "org ", org->id, " is the root of the caller's scope; a higher org must move it"));
        }
        std::optional<Org> parent;
        if (cmd.new_parent_id == 0) {
          DJ_RETURN_IF_ERROR(CheckMayUseRoot(ctx.scope));
        } else {
          parent = LoadOrg(tx, cmd.new_parent_id);
          DJ_RETURN_IF_ERROR(CheckInScope(parent ? &*parent : nullptr, ctx.scope,
                                          absl::StrCat("new parent org ", cmd.new_parent_id)));
        }
        WriteResult result;
        if (cmd.new_parent_id == org->parent_id) {
          result.org = *std::move(org);
          return result;  // already there
        }
        DJ_RETURN_IF_ERROR(CheckMoveTarget(*org, parent ? &*parent : nullptr));
        const std::string old_path = PathString(org->path);
        std::vector<int64_t> new_ids = parent ? parent->path : std::vector<int64_t>{};
        new_ids.push_back(org->id);
        const std::string new_path = PathString(new_ids);
        const int depth_delta = (parent ? parent->depth + 1 : 0) - org->depth;
        pqxx::result moved = tx.exec_prepared0(kMoveSubtree, old_path, new_path, cmd.new_parent_id,
                                               head, PrefixUpperBound(old_path), depth_delta);
        const int64_t count = static_cast<int64_t>(moved.affected_rows());
        tx.exec_prepared0(kRecordChanges, new_path, PrefixUpperBound(new_path),
                          static_cast<int>(ChangeType::kMoved), org->parent_id, old_path, "{}");
        const int64_t revision = head + count;
        tx.exec_prepared0(kSetHead, revision);
        for (const auto& row : tx.exec_prepared(kListOrgs, new_path, PrefixUpperBound(new_path), "",
                                                kNull, kNull, kNull, kNull, count + 1)) {
          result.changed.push_back(RowToOrg(row));
        }
        result.org = result.changed.front();
        result.revision = revision;
        return result;
      });
}

absl::StatusOr<WriteResult> PgOrgRepository::Dissolve(const DissolveOrgCommand& cmd,
                                                      const WriteContext& ctx) {
  return Write("registry.dissolve_org", ctx, absl::StrCat("org/", cmd.id),
               [&](pqxx::transaction_base& tx) -> absl::StatusOr<WriteResult> {
                 const int64_t head = LockHead(tx);
                 DJ_ASSIGN_OR_RETURN(std::optional<Org> org, LoadTarget(tx, cmd.id, ctx, cmd.etag));
                 const int64_t active_children =
                     tx.exec_prepared1(kActiveChildren, org->id)[0].as<int64_t>();
                 DJ_RETURN_IF_ERROR(CheckDissolve(*org, active_children));
                 const int64_t revision = head + 1;
                 tx.exec_prepared0(kDissolveOrg, org->id, cmd.reason, revision);
                 tx.exec_prepared0(kRecordChange, org->id, static_cast<int>(ChangeType::kDissolved),
                                   0, "");
                 tx.exec_prepared0(kSetHead, revision);
                 WriteResult result;
                 result.org = *LoadOrg(tx, org->id);
                 result.changed.push_back(result.org);
                 result.revision = revision;
                 return result;
               });
}

absl::StatusOr<ImportResult> PgOrgRepository::Import(const std::vector<ImportRow>& rows,
                                                     const WriteContext& ctx) {
  ImportResult out;
  absl::StatusOr<WriteResult> written = Write(
      "registry.import_orgs", ctx,
      rows.empty()
          ? "import"
          : absl::StrCat("import/rows ", rows.front().row_number, "..", rows.back().row_number),
      [&](pqxx::transaction_base& tx) -> absl::StatusOr<WriteResult> {
        out = ImportResult{};  // the unit of work may be retried
        const int64_t head = LockHead(tx);
        // Every org the rows name, as code or parent code, that is already registered.
        std::vector<std::string> codes;
        for (const ImportRow& row : rows) {
          codes.push_back(row.fields.code);
          if (!row.parent_code.empty()) codes.push_back(row.parent_code);
        }
        std::unordered_map<std::string, Org> by_code;
        for (const auto& r : tx.exec_prepared(kGetOrgsByCode, TextArray(codes))) {
          Org org = RowToOrg(r);
          by_code.emplace(org.fields.code, std::move(org));
        }
        std::vector<int64_t> ids;
        for (const auto& r : tx.exec_prepared(kNextIds, static_cast<int64_t>(rows.size()))) {
          ids.push_back(r[0].as<int64_t>());
        }
        size_t next_id = 0;
        int64_t revision = head;
        auto reject = [&](const ImportRow& row, absl::string_view field, const absl::Status& st) {
          ImportRowError e;
          e.row_number = row.row_number;
          e.code = row.fields.code;
          e.field = std::string(field);
          e.rule = GetViolatedRule(st).value_or("");
          e.reason = std::string(st.message());
          out.errors.push_back(std::move(e));
        };
        pqxx::stream_to copy(
            tx, "orgs",
            std::vector<std::string>{"id", "code", "name", "parent_id", "kind", "joint", "domain",
                                     "region_code", "established_on", "depth", "path", "revision"});
        for (const ImportRow& row : rows) {
          // [org-scope] For a scoped caller, orgs outside its subtree do not exist: a parent there
          // reads like a missing one, and a code held there is refused without naming its org.
          auto visible = [&](const Org& org) {
            return !ctx.scope.has_value() || org.InSubtreeOf(*ctx.scope);
          };
          const Org* parent = nullptr;
          if (!row.parent_code.empty()) {
            auto it = by_code.find(row.parent_code);
            if (it == by_code.end() || !visible(it->second)) {
              reject(row, "parent_code",
                     absl::NotFoundError(
                         absl::StrCat("parent_code ", row.parent_code, " is not registered",
                                      ctx.scope ? " within the caller's scope" : "",
                                      " (rows must name parents registered or sent before them)")));
              continue;
            }
            parent = &it->second;
          }
          auto existing = by_code.find(row.fields.code);
          if (existing != by_code.end()) {
            const Org& e = existing->second;
            const int64_t wanted_parent = parent ? parent->id : 0;
            if (!visible(e)) {
              reject(row, "code",
                     absl::AlreadyExistsError(absl::StrCat("code ", row.fields.code,
                                                           " is already used by an org outside the "
                                                           "caller's scope; choose another code")));
            } else if (e.fields == row.fields && e.parent_id == wanted_parent) {
              ++out.unchanged;
            } else {
              reject(row, "code",
                     absl::AlreadyExistsError(absl::StrCat(
                         "code ", row.fields.code, " is already registered (org ", e.id,
                         ") with different values; change it with UpdateOrg or MoveOrg")));
            }
            continue;
          }
          absl::Status st = parent ? absl::OkStatus() : CheckMayUseRoot(ctx.scope);
          if (!st.ok()) {
            reject(row, "parent_code", st);
            continue;
          }
          st = CheckPlacement(row.fields.kind, parent);
          if (!st.ok()) {
            reject(row, "kind", st);
            continue;
          }
          Org org;
          org.id = ids[next_id++];
          org.parent_id = parent ? parent->id : 0;
          org.fields = row.fields;
          org.path = parent ? parent->path : std::vector<int64_t>{};
          org.path.push_back(org.id);
          org.depth = parent ? parent->depth + 1 : 0;
          org.revision = ++revision;
          const std::string parent_id = parent ? std::to_string(parent->id) : "";
          const std::string established = DateString(org.fields.established);
          copy << std::make_tuple(
              org.id, org.fields.code, org.fields.name,
              parent ? parent_id.c_str() : static_cast<const char*>(nullptr),
              static_cast<int>(org.fields.kind), org.fields.joint,
              static_cast<int>(org.fields.domain), org.fields.region_code,
              established.empty() ? static_cast<const char*>(nullptr) : established.c_str(),
              org.depth, PathString(org.path), org.revision);
          out.created_orgs.push_back(org);
          by_code.emplace(org.fields.code, std::move(org));
          ++out.created;
        }
        copy.complete();
        WriteResult result;
        if (out.created > 0) {
          std::vector<int64_t> created_ids;
          for (const Org& o : out.created_orgs) created_ids.push_back(o.id);
          // An empty path range ("~" sorts after every path) so only the ids match.
          tx.exec_prepared0(kRecordChanges, "~", "~", static_cast<int>(ChangeType::kCreated), 0, "",
                            IntArray(created_ids));
          tx.exec_prepared0(kSetHead, revision);
          // Read back what the database filled in (times, version).
          out.created_orgs.clear();
          for (const auto& r : tx.exec_prepared(kGetOrgs, IntArray(created_ids))) {
            out.created_orgs.push_back(RowToOrg(r));
          }
          result.revision = revision;
        }
        out.revision = result.revision;
        return result;
      });
  if (!written.ok()) return written.status();
  if (out.created > 0) MaybeAnalyze(out.created);
  return out;
}

void PgOrgRepository::MaybeAnalyze(int64_t created) {
  const int64_t pending = imported_since_analyze_.fetch_add(created) + created;
  if (pending < std::max(kAnalyzeMinRows, analyzed_rows_.load())) return;
  // An import that finds another one analysing goes on: that ANALYZE sees its rows or the next
  // import's threshold catches them.
  if (!analyze_mu_.TryLock()) return;
  imported_since_analyze_.fetch_sub(pending);
  int64_t rows = 0;
  const absl::Status st = pool_.Run(
      {"registry.analyze", sql::Isolation::kReadCommitted, false, absl::InfiniteFuture()},
      [&](pqxx::transaction_base& tx) {
        tx.exec0("ANALYZE orgs, org_changes");
        rows = tx.exec1("SELECT reltuples::bigint FROM pg_class WHERE oid = 'orgs'::regclass")[0]
                   .as<int64_t>();
        return absl::OkStatus();
      });
  if (st.ok()) {
    analyzed_rows_.store(rows);
  } else {
    imported_since_analyze_.fetch_add(pending);  // try again after the next import
    log::Warn("ANALYZE after a bulk import failed; the planner keeps its old statistics",
              {{"error", std::string(st.message())}, {"imported_orgs", pending}});
  }
  analyze_mu_.Unlock();
}

absl::StatusOr<std::vector<Change>> PgOrgRepository::ChangesSince(int64_t after, int limit,
                                                                  const ReadContext& ctx) {
  std::vector<Change> changes;
  DJ_RETURN_IF_ERROR(
      pool_.Run({"registry.changes_since", sql::Isolation::kReadCommitted, true, ctx.deadline},
                [&](pqxx::transaction_base& tx) {
                  changes.clear();
                  for (const auto& r : tx.exec_prepared(kChangesSince, after, limit)) {
                    Change c;
                    c.revision = r[0].as<int64_t>();
                    c.type = static_cast<ChangeType>(r[1].as<int>());
                    c.change_time = absl::FromUnixMicros(r[2].as<int64_t>());
                    c.previous_parent_id = r[3].is_null() ? 0 : r[3].as<int64_t>();
                    if (!r[4].is_null()) c.previous_path = ParsePath(r[4].c_str());
                    c.org = RowToOrg(r, 5);
                    changes.push_back(std::move(c));
                  }
                  return absl::OkStatus();
                }));
  return changes;
}

absl::StatusOr<std::vector<PageTokenKey>> PgOrgRepository::PageTokenKeys() {
  DJ_ASSIGN_OR_RETURN(const std::string candidate, PageTokenSealer::NewSecret());
  std::vector<PageTokenKey> keys;
  DJ_RETURN_IF_ERROR(
      pool_.Run({"registry.page_token_keys", sql::Isolation::kReadCommitted, false},
                [&](pqxx::transaction_base& tx) {
                  keys.clear();
                  tx.exec_prepared(kAddFirstTokenKey, absl::BytesToHexString(candidate));
                  for (const pqxx::row& row : tx.exec_prepared(kTokenKeys)) {
                    keys.push_back({row[0].as<int32_t>(), absl::HexStringToBytes(row[1].c_str())});
                  }
                  return absl::OkStatus();
                }));
  return keys;
}

absl::StatusOr<int64_t> PgOrgRepository::HeadRevision(const ReadContext& ctx) {
  int64_t head = 0;
  DJ_RETURN_IF_ERROR(
      pool_.Run({"registry.head_revision", sql::Isolation::kReadCommitted, true, ctx.deadline},
                [&](pqxx::transaction_base& tx) {
                  head = tx.exec_prepared1(kHead)[0].as<int64_t>();
                  return absl::OkStatus();
                }));
  return head;
}

absl::StatusOr<std::vector<OrgCount>> PgOrgRepository::CountOrgs(const ReadContext& ctx) {
  std::vector<OrgCount> counts;
  DJ_RETURN_IF_ERROR(
      pool_.Run({"registry.count_orgs", sql::Isolation::kReadCommitted, true, ctx.deadline},
                [&](pqxx::transaction_base& tx) {
                  counts.clear();
                  for (const pqxx::row& row : tx.exec_prepared(kCountOrgs)) {
                    OrgCount c;
                    c.kind = static_cast<OrgKind>(row[0].as<int>());
                    c.domain = static_cast<OrgDomain>(row[1].as<int>());
                    c.status = static_cast<OrgStatus>(row[2].as<int>());
                    c.count = row[3].as<int64_t>();
                    counts.push_back(c);
                  }
                  return absl::OkStatus();
                }));
  return counts;
}

absl::Status PgOrgRepository::AuditRefused(const audit::AuditRecord& record) {
  return audit::AppendStandalone(pool_, record);
}

}  // namespace dangjian::registry
