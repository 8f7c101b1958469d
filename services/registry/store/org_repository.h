// The registry's storage interface, and the commands and results that cross it. Implemented by
// PgOrgRepository (PostgreSQL, the system of record) and decorated by CachedOrgRepository (Redis
// in front of reads). Reads are scope-agnostic (the logic layer checks scope on what they return);
// writes take the caller's scope and check it inside their transaction, with the domain rules,
// so the checks and the change are atomic. Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/audit.h"
#include "dangjian/registry/v1/registry.pb.h"
#include "services/registry/domain/org.h"

namespace dangjian::registry {

struct ReadContext {
  absl::Time deadline = absl::InfiniteFuture();
};

struct WriteContext {
  // The org whose subtree the caller may change; nullopt: the whole city.
  std::optional<int64_t> scope;
  // caller, method and request_id set by the handler; the store fills target, outcome, detail.
  audit::AuditRecord audit;
  absl::Time deadline = absl::InfiniteFuture();
};

struct CreateOrgCommand {
  std::string request_id;
  std::string request_hash;  // of the request's content, to tell a retry from a reuse
  int64_t parent_id = 0;
  OrgFields fields;
};

// Which fields an update sets.
struct UpdateMask {
  bool code = false, name = false, kind = false, joint = false, domain = false, region_code = false,
       established = false;
};

struct UpdateOrgCommand {
  int64_t id = 0;
  std::string etag;
  UpdateMask mask;
  OrgFields values;  // only the masked fields are read
};

struct MoveOrgCommand {
  int64_t id = 0;
  int64_t new_parent_id = 0;
  std::string etag;  // empty: not checked
};

struct DissolveOrgCommand {
  int64_t id = 0;
  std::string etag;  // empty: not checked
  std::string reason;
};

struct WriteResult {
  Org org;                   // the org after the write
  std::vector<Org> changed;  // every org whose row changed (a move changes the subtree)
  int64_t revision = 0;      // feed head after the write (0 if nothing changed)
};

struct ListQuery {
  std::string root_path;  // "/1/5/": the subtree root's path; "/" for the whole tree
  int root_depth = 0;     // the root's depth (-1 with root_path "/")
  std::vector<OrgKind> kinds;
  std::vector<OrgDomain> domains;
  std::vector<OrgStatus> statuses;
  int max_depth = 0;  // levels below the root; 0: no limit
  int page_size = 100;
  std::string after_path;  // keyset: orgs with path > after_path
};

struct ListPage {
  std::vector<Org> orgs;
  bool more = false;  // another page follows (it starts after the last org's path)
  // Set instead of `orgs` when the page is already in its wire form (a page the cache held): the
  // handler moves it into the reply rather than decoding and re-encoding every org. Its
  // next_page_token is not the client's and must be replaced.
  std::unique_ptr<v1::ListOrgsResponse> wire;
};

// How many orgs have one combination of kind, domain and status (for business gauges).
struct OrgCount {
  OrgKind kind = OrgKind::kCommittee;
  OrgDomain domain = OrgDomain::kOther;
  OrgStatus status = OrgStatus::kActive;
  int64_t count = 0;
};

struct ImportRow {
  int64_t row_number = 0;
  std::string parent_code;  // empty: a root
  OrgFields fields;         // fields.code is required
};

struct ImportRowError {
  int64_t row_number = 0;
  std::string code;
  std::string field;
  std::string rule;
  std::string reason;
};

struct ImportResult {
  int64_t created = 0;
  int64_t unchanged = 0;
  std::vector<ImportRowError> errors;
  std::vector<Org> created_orgs;
  int64_t revision = 0;
};

enum class ChangeType { kCreated = 1, kUpdated = 2, kMoved = 3, kDissolved = 4 };

struct Change {
  int64_t revision = 0;
  ChangeType type = ChangeType::kCreated;
  absl::Time change_time;
  int64_t previous_parent_id = 0;
  std::vector<int64_t> previous_path;  // for moves; empty otherwise
  Org org;
};

class OrgRepository {
 public:
  virtual ~OrgRepository() = default;

  // NOT_FOUND if there is no such org.
  virtual absl::StatusOr<Org> Get(int64_t id, const ReadContext& ctx) = 0;
  // Whether this process holds a copy of the org it can vouch for without any I/O (a cache's
  // in-process tier); if so, its wire form is in `out` (held in that form, so it is not decoded),
  // otherwise `out` is unspecified and Get() answers. Never blocks, so it may run on an event
  // thread.
  virtual bool GetLocal(int64_t /*id*/, v1::Org* /*out*/) { return false; }
  // The orgs found, in no particular order; missing ids are simply absent.
  virtual absl::StatusOr<std::vector<Org>> BatchGet(const std::vector<int64_t>& ids,
                                                    const ReadContext& ctx) = 0;
  virtual absl::StatusOr<ListPage> List(const ListQuery& query, const ReadContext& ctx) = 0;

  virtual absl::StatusOr<WriteResult> Create(const CreateOrgCommand& cmd,
                                             const WriteContext& ctx) = 0;
  virtual absl::StatusOr<WriteResult> Update(const UpdateOrgCommand& cmd,
                                             const WriteContext& ctx) = 0;
  virtual absl::StatusOr<WriteResult> Move(const MoveOrgCommand& cmd, const WriteContext& ctx) = 0;
  virtual absl::StatusOr<WriteResult> Dissolve(const DissolveOrgCommand& cmd,
                                               const WriteContext& ctx) = 0;
  // Rows in stream order; each row is created, found unchanged, or rejected alone.
  virtual absl::StatusOr<ImportResult> Import(const std::vector<ImportRow>& rows,
                                              const WriteContext& ctx) = 0;

  // Changes with revision > `after`, oldest first, at most `limit`.
  virtual absl::StatusOr<std::vector<Change>> ChangesSince(int64_t after, int limit,
                                                           const ReadContext& ctx) = 0;
  virtual absl::StatusOr<int64_t> HeadRevision(const ReadContext& ctx) = 0;
  // Counts of orgs by kind, domain and status; combinations with no org are absent.
  virtual absl::StatusOr<std::vector<OrgCount>> CountOrgs(const ReadContext& ctx) = 0;

  // Audits a mutating call refused before it reached the store (authentication, role, validation).
  virtual absl::Status AuditRefused(const audit::AuditRecord& record) = 0;
};

}  // namespace dangjian::registry
