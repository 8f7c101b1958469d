#include "services/registry/api/registry_service.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_auth.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "common/proto_parse.h"
#include "common/server.h"
#include "common/status.h"
#include "common/text.h"
#include "services/registry/domain/org_proto.h"
#include "services/registry/domain/paging.h"
#include "services/registry/domain/rules.h"

namespace dangjian::registry {
namespace {

constexpr char kServiceName[] = "dangjian.registry.v1.OrgRegistry";

std::string FullMethod(absl::string_view method) {
  return absl::StrCat("/", kServiceName, "/", method);
}

bool MayAct(const auth::Principal& caller, absl::string_view role) {
  if (caller.HasRole(role)) return true;
  // Writers may read what they write.
  return role == kReadRole && caller.HasRole(kWriteRole);
}

void ValidateRequestId(const std::string& request_id, FieldErrors& errors) {
  if (request_id.empty()) {
    errors.Add("request_id", "is required: a client-chosen id, reused when retrying");
  } else {
    ValidateText(request_id, "request_id", TextRules{kMaxRequestIdChars}, errors);
  }
}

// An etag is compared, never stored, but it is echoed into audit records and logs.
void ValidateEtag(const std::string& etag, const std::string& field, FieldErrors& errors) {
  ValidateText(etag, field, TextRules{kMaxEtagChars}, errors);
}

void ValidateId(int64_t id, const std::string& field, FieldErrors& errors) {
  if (id <= 0) errors.Add(field, "must be a positive org id");
}

// The request's identity for idempotency: every field CreateOrg uses.
std::string CreateFingerprint(const CreateOrgCommand& cmd) {
  const OrgFields& f = cmd.fields;
  const std::string canonical = absl::StrCat(
      cmd.parent_id, "\x1f", f.code, "\x1f", f.name, "\x1f", static_cast<int>(f.kind), "\x1f",
      f.joint, "\x1f", static_cast<int>(f.domain), "\x1f", f.region_code, "\x1f",
      f.established
          ? absl::StrCat(f.established->year, "-", f.established->month, "-", f.established->day)
          : "");
  return absl::StrCat(absl::Hex(Fingerprint64(canonical), absl::kZeroPad16));
}

v1::OrgChange ChangeToProto(const Change& c) {
  v1::OrgChange out;
  out.set_revision(c.revision);
  out.set_type(static_cast<v1::ChangeType>(c.type));
  ToProto(c.org, out.mutable_org());
  out.set_previous_parent_id(c.previous_parent_id);
  *out.mutable_change_time() = ToTimestamp(c.change_time);
  return out;
}

bool VisibleTo(const Change& c, const std::optional<int64_t>& scope) {
  if (!scope) return true;
  return c.org.InSubtreeOf(*scope) ||
         std::find(c.previous_path.begin(), c.previous_path.end(), *scope) != c.previous_path.end();
}

template <typename Enum, typename Proto>
void ParseEnumFilter(const google::protobuf::RepeatedField<int>& values, bool (*valid)(int),
                     const std::string& field, std::vector<Enum>& out, FieldErrors& errors) {
  for (int i = 0; i < values.size(); ++i) {
    if (!valid(values[i])) {
      errors.Add(absl::StrCat(field, "[", i, "]"), "is not a known value");
    } else {
      out.push_back(static_cast<Enum>(values[i]));
    }
  }
}

}  // namespace

OrgRegistryService::OrgRegistryService(OrgRepository& repo, ChangeNotifier& notifier,
                                       WorkerPool& workers, PageTokenKeyring& page_tokens,
                                       const auth::TokenVerifier* verifier, Clock& clock)
    : repo_(repo),
      notifier_(notifier),
      workers_(workers),
      page_tokens_(page_tokens),
      verifier_(verifier),
      clock_(clock) {}

absl::StatusOr<auth::Principal> OrgRegistryService::Authorize(
    const grpc::CallbackServerContext& ctx, absl::string_view role) const {
  absl::StatusOr<auth::Principal> caller = AuthenticateCall(ctx, verifier_);
  if (!caller.ok()) return caller.status();
  if (!MayAct(*caller, role)) {
    return absl::PermissionDeniedError(
        absl::StrCat("caller ", caller->subject, " lacks the role ", role));
  }
  return caller;
}

WriteContext OrgRegistryService::MakeWriteContext(const grpc::CallbackServerContext& ctx,
                                                  const auth::Principal& caller,
                                                  absl::string_view method,
                                                  const std::string& request_id) const {
  WriteContext w;
  w.scope = caller.org_scope;
  w.audit.caller = caller.subject;
  w.audit.method = FullMethod(method);
  w.audit.request_id = request_id.empty() ? RequestIdOf(ctx) : request_id;
  w.deadline = DeadlineOf(ctx);
  return w;
}

absl::Status OrgRegistryService::RefuseInvalid(const WriteContext& wctx, std::string target,
                                               const FieldErrors& errors) {
  const absl::Status status = errors.ToStatus();
  audit::AuditRecord record = wctx.audit;
  record.target = std::move(target);
  record.outcome = absl::StatusCodeToString(status.code());
  record.detail = std::string(status.message()).substr(0, 300);
  (void)repo_.AuditRefused(record);  // best effort: the refusal stands either way
  return status;
}

absl::Status OrgRegistryService::Answer(absl::StatusOr<WriteResult> result, v1::Org* resp) {
  if (!result.ok()) return result.status();
  notifier_.Advance(result->revision);
  ToProto(result->org, resp);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* OrgRegistryService::Unary(grpc::CallbackServerContext* ctx,
                                                    absl::string_view role,
                                                    absl::string_view method, Work work) {
  return Unary(ctx, Authorize(*ctx, role), role == kWriteRole, method, std::move(work));
}

grpc::ServerUnaryReactor* OrgRegistryService::Unary(grpc::CallbackServerContext* ctx,
                                                    absl::StatusOr<auth::Principal> caller,
                                                    bool mutating, absl::string_view method,
                                                    Work work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time deadline = DeadlineOf(*ctx);
  bool queued =
      workers_.Submit([this, ctx, reactor, work = std::move(work), caller = std::move(caller),
                       deadline, mutating, method = FullMethod(method)]() {
        absl::Status status;
        if (!caller.ok()) {
          status = caller.status();
          if (mutating) {
            // Refused callers of mutating RPCs are audited too (等保: failed access attempts).
            audit::AuditRecord record;
            record.caller = "(unauthenticated)";
            record.method = method;
            record.request_id = RequestIdOf(*ctx);
            record.target = "";
            record.outcome = absl::StatusCodeToString(status.code());
            record.detail = std::string(status.message());
            (void)repo_.AuditRefused(record);
          }
        } else if (clock_.Now() >= deadline) {
          status = absl::DeadlineExceededError("the call's deadline passed before it could run");
        } else {
          status = work(*caller, deadline);
        }
        reactor->Finish(ToGrpcStatus(status));
      });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "the registry is at capacity; retry with backoff"));
  }
  return reactor;
}

absl::StatusOr<Org> OrgRegistryService::GetVisible(int64_t id, const auth::Principal& caller,
                                                   absl::Time deadline, absl::string_view what) {
  absl::StatusOr<Org> org = repo_.Get(id, ReadContext{deadline});
  if (!org.ok()) {
    if (absl::IsNotFound(org.status())) {
      DJ_RETURN_IF_ERROR(CheckInScope(nullptr, caller.org_scope, what));
    }
    return org.status();
  }
  DJ_RETURN_IF_ERROR(CheckInScope(&*org, caller.org_scope, what));
  return org;
}

// --- Reads ------------------------------------------------------------------------------------

grpc::ServerUnaryReactor* OrgRegistryService::GetOrg(grpc::CallbackServerContext* ctx,
                                                     const v1::GetOrgRequest* req, v1::Org* resp) {
  absl::StatusOr<auth::Principal> caller = Authorize(*ctx, kReadRole);
  // The hot path: an org this process holds a copy of that the cache vouches for is answered here
  // on the gRPC thread, without the hop to the workers; nothing on this path blocks. Anything
  // else (not held, out of scope, a bad id or caller) takes the full path below, which also
  // words the error.
  // The held copy is parsed straight into the reply (no domain Org in between).
  if (caller.ok() && req->id() > 0) {
    if (repo_.GetLocal(req->id(), resp)) {
      if (InScope(resp->id(),
                  absl::MakeConstSpan(resp->ancestor_ids().data(), resp->ancestor_ids().size()),
                  caller->org_scope)) {
        grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
        reactor->Finish(grpc::Status::OK);
        return reactor;
      }
    }
    resp->Clear();
  }
  return Unary(ctx, std::move(caller), /*mutating=*/false, "GetOrg",
               [=](const auth::Principal& caller, absl::Time deadline) {
                 FieldErrors errors;
                 ValidateId(req->id(), "id", errors);
                 DJ_RETURN_IF_ERROR(errors.ToStatus());
                 DJ_ASSIGN_OR_RETURN(Org org, GetVisible(req->id(), caller, deadline,
                                                         absl::StrCat("org ", req->id())));
                 ToProto(org, resp);
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* OrgRegistryService::BatchGetOrgs(grpc::CallbackServerContext* ctx,
                                                           const v1::BatchGetOrgsRequest* req,
                                                           v1::BatchGetOrgsResponse* resp) {
  return Unary(
      ctx, kReadRole, "BatchGetOrgs", [=](const auth::Principal& caller, absl::Time deadline) {
        FieldErrors errors;
        if (req->ids().empty()) errors.Add("ids", "must name at least one org");
        if (req->ids_size() > kMaxBatchGet) {
          errors.Add("ids",
                     absl::StrCat("names ", req->ids_size(), " orgs; at most ", kMaxBatchGet));
        }
        for (int i = 0; i < req->ids_size(); ++i) {
          ValidateId(req->ids(i), absl::StrCat("ids[", i, "]"), errors);
        }
        DJ_RETURN_IF_ERROR(errors.ToStatus());
        const std::set<int64_t> unique(req->ids().begin(), req->ids().end());
        DJ_ASSIGN_OR_RETURN(std::vector<Org> orgs,
                            repo_.BatchGet(std::vector<int64_t>(unique.begin(), unique.end()),
                                           ReadContext{deadline}));
        std::unordered_map<int64_t, const Org*> by_id;
        for (const Org& org : orgs) by_id[org.id] = &org;
        for (int64_t id : req->ids()) {
          auto it = by_id.find(id);
          const Org* org = it == by_id.end() ? nullptr : it->second;
          DJ_RETURN_IF_ERROR(CheckInScope(org, caller.org_scope, absl::StrCat("org ", id)));
        }
        for (int64_t id : req->ids()) ToProto(*by_id[id], resp->add_orgs());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* OrgRegistryService::ListOrgs(grpc::CallbackServerContext* ctx,
                                                       const v1::ListOrgsRequest* req,
                                                       v1::ListOrgsResponse* resp) {
  return Unary(ctx, kReadRole, "ListOrgs", [=](const auth::Principal& caller, absl::Time deadline) {
    FieldErrors errors;
    if (req->root_id() < 0) errors.Add("root_id", "must be 0 (the top of your scope) or an org id");
    if (req->page_size() < 0) errors.Add("page_size", "must not be negative");
    if (req->max_depth() < 0) errors.Add("max_depth", "must not be negative");
    ListQuery query;
    ParseEnumFilter<OrgKind, v1::OrgKind>(req->kinds(), IsValidKind, "kinds", query.kinds, errors);
    ParseEnumFilter<OrgDomain, v1::OrgDomain>(req->domains(), IsValidDomain, "domains",
                                              query.domains, errors);
    ParseEnumFilter<OrgStatus, v1::OrgStatus>(req->statuses(), IsValidStatus, "statuses",
                                              query.statuses, errors);
    DJ_RETURN_IF_ERROR(errors.ToStatus());
    query.page_size =
        req->page_size() == 0 ? kDefaultPageSize : std::min(req->page_size(), kMaxPageSize);
    query.max_depth = req->max_depth();

    const int64_t root_id = req->root_id() != 0 ? req->root_id() : caller.org_scope.value_or(0);
    if (root_id == 0) {
      query.root_path = "/";
      query.root_depth = -1;
    } else {
      DJ_ASSIGN_OR_RETURN(Org root,
                          GetVisible(root_id, caller, deadline, absl::StrCat("org ", root_id)));
      query.root_path = absl::StrCat("/", absl::StrJoin(root.path, "/"), "/");
      query.root_depth = root.depth;
    }
    const uint64_t fingerprint = Fingerprint64(absl::StrCat(
        root_id, "|", absl::StrJoin(req->kinds(), ","), "|", absl::StrJoin(req->domains(), ","),
        "|", absl::StrJoin(req->statuses(), ","), "|", req->max_depth()));
    // Loads the keys again if the token names one added since (a rotation).
    const std::shared_ptr<const PageTokenSealer> sealer = page_tokens_.Sealer(req->page_token());
    if (!req->page_token().empty()) {
      DJ_ASSIGN_OR_RETURN(query.after_path,
                          DecodePageToken(*sealer, req->page_token(), fingerprint));
    }
    DJ_ASSIGN_OR_RETURN(ListPage page, repo_.List(query, ReadContext{deadline}));
    std::string last_path;  // the last org's, "/1/5/9/"
    if (page.wire) {
      // A cached page, already in wire form: moved into the reply as it is.
      resp->Swap(page.wire.get());
      resp->clear_next_page_token();
      if (!resp->orgs().empty()) {
        const v1::Org& last = *resp->orgs().rbegin();
        last_path = absl::StrCat("/", absl::StrJoin(last.ancestor_ids(), "/"),
                                 last.ancestor_ids().empty() ? "" : "/", last.id(), "/");
      }
    } else {
      for (const Org& org : page.orgs) ToProto(org, resp->add_orgs());
      if (!page.orgs.empty())
        last_path = absl::StrCat("/", absl::StrJoin(page.orgs.back().path, "/"), "/");
    }
    if (page.more && !last_path.empty()) {
      resp->set_next_page_token(EncodePageToken(*sealer, fingerprint, last_path));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrgRegistryService::GetAncestors(grpc::CallbackServerContext* ctx,
                                                           const v1::GetAncestorsRequest* req,
                                                           v1::GetAncestorsResponse* resp) {
  return Unary(
      ctx, kReadRole, "GetAncestors", [=](const auth::Principal& caller, absl::Time deadline) {
        FieldErrors errors;
        ValidateId(req->id(), "id", errors);
        DJ_RETURN_IF_ERROR(errors.ToStatus());
        DJ_ASSIGN_OR_RETURN(
            Org org, GetVisible(req->id(), caller, deadline, absl::StrCat("org ", req->id())));
        std::vector<int64_t> ids = org.ancestor_ids();
        if (caller.org_scope) {
          // Only the part of the chain inside the caller's subtree.
          auto top = std::find(ids.begin(), ids.end(), *caller.org_scope);
          ids.erase(ids.begin(), top);
        }
        if (ids.empty()) return absl::OkStatus();
        DJ_ASSIGN_OR_RETURN(std::vector<Org> ancestors, repo_.BatchGet(ids, ReadContext{deadline}));
        if (ancestors.size() != ids.size()) {
          return absl::UnavailableError("the org tree changed while reading; retry");
        }
        std::sort(ancestors.begin(), ancestors.end(),
                  [](const Org& a, const Org& b) { return a.depth < b.depth; });
        for (const Org& a : ancestors) ToProto(a, resp->add_ancestors());
        return absl::OkStatus();
      });
}

// --- Writes -----------------------------------------------------------------------------------

grpc::ServerUnaryReactor* OrgRegistryService::CreateOrg(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateOrgRequest* req,
                                                        v1::Org* resp) {
  return Unary(
      ctx, kWriteRole, "CreateOrg", [=](const auth::Principal& caller, absl::Time) -> absl::Status {
        const WriteContext wctx = MakeWriteContext(*ctx, caller, "CreateOrg", req->request_id());
        FieldErrors errors;
        ValidateRequestId(req->request_id(), errors);
        CreateOrgCommand cmd;
        if (!req->has_org()) {
          errors.Add("org", "is required");
        } else {
          cmd.fields = FieldsFromProto(req->org(), "org.", errors);
          ValidateFields(cmd.fields, ShanghaiDate(clock_.Now()), "org.", errors);
          if (req->org().parent_id() < 0) {
            errors.Add("org.parent_id", "must be 0 (a root) or an org id");
          }
        }
        if (!errors.empty()) return RefuseInvalid(wctx, "org/(new)", errors);
        cmd.request_id = req->request_id();
        cmd.parent_id = req->org().parent_id();
        cmd.request_hash = CreateFingerprint(cmd);
        return Answer(repo_.Create(cmd, wctx), resp);
      });
}

namespace {

// Reads update_mask into `mask` and validates the masked fields of `org`.
UpdateOrgCommand ParseUpdate(const v1::UpdateOrgRequest& req, const CivilDate& today,
                             FieldErrors& errors) {
  UpdateOrgCommand cmd;
  const v1::Org& org = req.org();
  cmd.id = org.id();
  cmd.etag = org.etag();
  ValidateId(org.id(), "org.id", errors);
  if (org.etag().empty()) {
    errors.Add("org.etag", "is required: send the etag of the org as you read it");
  } else {
    ValidateEtag(org.etag(), "org.etag", errors);
  }
  if (req.update_mask().paths().empty()) {
    errors.Add("update_mask", "must name at least one field");
  }
  for (int i = 0; i < req.update_mask().paths_size(); ++i) {
    const std::string& path = req.update_mask().paths(i);
    const std::string field = absl::StrCat("update_mask.paths[", i, "]");
    if (path == "code") {
      cmd.mask.code = true;
      cmd.values.code = org.code();
      ValidateCode(org.code(), "org.code", errors);
    } else if (path == "name") {
      cmd.mask.name = true;
      cmd.values.name = org.name();
      ValidateName(org.name(), "org.name", errors);
    } else if (path == "kind") {
      cmd.mask.kind = true;
      if (!IsValidKind(org.kind())) {
        errors.Add("org.kind", "must be a known OrgKind");
      } else {
        cmd.values.kind = static_cast<OrgKind>(org.kind());
      }
    } else if (path == "joint") {
      cmd.mask.joint = true;
      cmd.values.joint = org.joint();
    } else if (path == "domain") {
      cmd.mask.domain = true;
      if (!IsValidDomain(org.domain())) {
        errors.Add("org.domain", "must be a known OrgDomain");
      } else {
        cmd.values.domain = static_cast<OrgDomain>(org.domain());
      }
    } else if (path == "region_code") {
      cmd.mask.region_code = true;
      cmd.values.region_code = org.region_code();
      ValidateRegionCode(org.region_code(), "org.region_code", errors);
    } else if (path == "established_date") {
      cmd.mask.established = true;
      if (org.has_established_date()) {
        cmd.values.established =
            CivilDate{org.established_date().year(), org.established_date().month(),
                      org.established_date().day()};
        ValidateEstablished(*cmd.values.established, today, "org.established_date", errors);
      }
    } else if (path == "parent_id") {
      errors.Add(field, "parent_id is changed with MoveOrg");
    } else if (path == "status") {
      errors.Add(field, "status is changed with DissolveOrg");
    } else {
      errors.Add(field, absl::StrCat("'", path, "' is not an updatable field"));
    }
  }
  return cmd;
}

}  // namespace

grpc::ServerUnaryReactor* OrgRegistryService::UpdateOrg(grpc::CallbackServerContext* ctx,
                                                        const v1::UpdateOrgRequest* req,
                                                        v1::Org* resp) {
  return Unary(ctx, kWriteRole, "UpdateOrg",
               [=](const auth::Principal& caller, absl::Time) -> absl::Status {
                 const WriteContext wctx = MakeWriteContext(*ctx, caller, "UpdateOrg", "");
                 FieldErrors errors;
                 if (!req->has_org()) errors.Add("org", "is required");
                 UpdateOrgCommand cmd = ParseUpdate(*req, ShanghaiDate(clock_.Now()), errors);
                 if (!errors.empty())
                   return RefuseInvalid(wctx, absl::StrCat("org/", req->org().id()), errors);
                 return Answer(repo_.Update(cmd, wctx), resp);
               });
}

grpc::ServerUnaryReactor* OrgRegistryService::MoveOrg(grpc::CallbackServerContext* ctx,
                                                      const v1::MoveOrgRequest* req,
                                                      v1::Org* resp) {
  return Unary(ctx, kWriteRole, "MoveOrg",
               [=](const auth::Principal& caller, absl::Time) -> absl::Status {
                 const WriteContext wctx = MakeWriteContext(*ctx, caller, "MoveOrg", "");
                 FieldErrors errors;
                 ValidateId(req->id(), "id", errors);
                 if (req->new_parent_id() < 0) {
                   errors.Add("new_parent_id", "must be 0 (make it a root) or an org id");
                 }
                 ValidateEtag(req->etag(), "etag", errors);
                 if (!errors.empty())
                   return RefuseInvalid(wctx, absl::StrCat("org/", req->id()), errors);
                 MoveOrgCommand cmd{req->id(), req->new_parent_id(), req->etag()};
                 return Answer(repo_.Move(cmd, wctx), resp);
               });
}

grpc::ServerUnaryReactor* OrgRegistryService::DissolveOrg(grpc::CallbackServerContext* ctx,
                                                          const v1::DissolveOrgRequest* req,
                                                          v1::Org* resp) {
  return Unary(ctx, kWriteRole, "DissolveOrg",
               [=](const auth::Principal& caller, absl::Time) -> absl::Status {
                 const WriteContext wctx = MakeWriteContext(*ctx, caller, "DissolveOrg", "");
                 FieldErrors errors;
                 ValidateId(req->id(), "id", errors);
                 if (req->reason().empty()) {
                   errors.Add("reason", "is required (e.g. the approving document)");
                 } else {
                   ValidateText(req->reason(), "reason",
                                TextRules{kMaxReasonChars, /*required=*/true, /*multiline=*/true},
                                errors);
                 }
                 ValidateEtag(req->etag(), "etag", errors);
                 if (!errors.empty())
                   return RefuseInvalid(wctx, absl::StrCat("org/", req->id()), errors);
                 DissolveOrgCommand cmd{req->id(), req->etag(), req->reason()};
                 return Answer(repo_.Dissolve(cmd, wctx), resp);
               });
}

// --- ImportOrgs --------------------------------------------------------------------------------

// Reads the stream, validates each row as it comes, and writes every kImportChunkRows valid rows
// on the worker pool; it reads no further while a chunk is being written (back-pressure).
//
// The method is served raw (grpc::ByteBuffer) and each message parsed here: gRPC's typed reader
// reports a message that does not parse exactly as it reports the end of the stream
// (OnReadDone(false)), so an unparsable row would silently end the import as if it were complete.
// Here it fails the call, naming the message and the field. Likewise a stream that ends without
// the client's half-close (cancelled, deadline passed) fails: only a half-close reports an import
// as done. Chunks already committed stay (an import is idempotent: the client sends it again).
class OrgRegistryService::ImportReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  ImportReactor(OrgRegistryService& service, grpc::CallbackServerContext* ctx,
                grpc::ByteBuffer* resp)
      : service_(service), ctx_(ctx), resp_(resp) {
    absl::StatusOr<auth::Principal> caller = service_.Authorize(*ctx, kWriteRole);
    if (!caller.ok()) {
      Finish(ToGrpcStatus(caller.status()));
      return;
    }
    wctx_ = service_.MakeWriteContext(*ctx, *caller, "ImportOrgs", "");
    today_ = ShanghaiDate(service_.clock_.Now());
    StartRead(&buffer_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The end of the stream: the client's half-close, or the call broke (then nothing more is
      // written, and the import is not reported as done).
      if (Broken()) {
        Fail(grpc::Status(grpc::StatusCode::CANCELLED,
                          absl::StrCat("the import stream broke off before the client finished "
                                       "it; ",
                                       Written())));
        return;
      }
      Flush(/*last=*/true);
      return;
    }
    ++messages_;
    v1::ImportOrgsRequest request;
    const absl::Status parsed = ParseMessage(buffer_, request);
    buffer_.Clear();
    if (!parsed.ok()) {
      Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("message ", messages_,
                                     " of the stream could not be parsed as ImportOrgsRequest: ",
                                     parsed.message(), "; the import stopped there: ", Written())));
      return;
    }
    for (const v1::ImportOrgRow& row : request.rows()) Accept(row);
    if (static_cast<int>(pending_.size()) >= kImportChunkRows) {
      Flush(/*last=*/false);
    } else {
      StartRead(&buffer_);
    }
  }

  void OnCancel() override { cancelled_.store(true, std::memory_order_relaxed); }

  void OnDone() override { delete this; }

 private:
  bool Broken() const { return cancelled_.load(std::memory_order_relaxed) || ctx_->IsCancelled(); }

  // What earlier chunks committed, for the error that ends an import early.
  std::string Written() const {
    if (created_ + unchanged_ + written_failed_ == 0) {
      return "no row was written; send the whole stream again";
    }
    return absl::StrCat("the rows of earlier chunks (1 to ", written_through_, ") were written (",
                        created_, " created, ", unchanged_, " already registered, ",
                        written_failed_,
                        " refused); an import is idempotent: send the whole stream again");
  }

  void Fail(const grpc::Status& status) {
    log::Warn("import failed", {{"request_id", wctx_.audit.request_id},
                                {"caller", wctx_.audit.caller},
                                {"messages", messages_},
                                {"received", received_},
                                {"written_through", written_through_},
                                {"error", status.error_message()}});
    Finish(status);
  }

  void Accept(const v1::ImportOrgRow& row) {
    ++received_;
    FieldErrors errors;
    ImportRow out;
    out.row_number = received_;
    out.parent_code = row.parent_code();
    if (row.code().empty()) errors.Add("code", "is required: children name their parent by it");
    if (!row.parent_code().empty()) ValidateCode(row.parent_code(), "parent_code", errors);
    v1::Org as_org;
    as_org.set_code(row.code());
    as_org.set_name(row.name());
    as_org.set_kind(row.kind());
    as_org.set_joint(row.joint());
    as_org.set_domain(row.domain());
    as_org.set_region_code(row.region_code());
    if (row.has_established_date()) *as_org.mutable_established_date() = row.established_date();
    out.fields = FieldsFromProto(as_org, "", errors);
    ValidateFields(out.fields, today_, "", errors);
    if (errors.empty()) {
      pending_.push_back(std::move(out));
      return;
    }
    ++failed_;
    if (response_.errors_size() < kMaxImportErrorsListed) {
      const FieldViolation& first = errors.violations().front();
      auto* e = response_.add_errors();
      e->set_row_number(received_);
      e->set_code(row.code());
      e->set_field(first.field);
      std::vector<std::string> reasons;
      for (const FieldViolation& v : errors.violations()) {
        reasons.push_back(absl::StrCat(v.field, ": ", v.description));
      }
      e->set_reason(absl::StrJoin(reasons, "; "));
    }
  }

  void Flush(bool last) {
    std::vector<ImportRow> rows = std::move(pending_);
    pending_.clear();
    const bool queued = service_.workers_.Submit([this, rows = std::move(rows), last]() {
      // A call that broke while this chunk waited writes nothing more.
      if (Broken()) {
        Fail(grpc::Status(grpc::StatusCode::CANCELLED,
                          absl::StrCat("the import stream broke off; ", Written())));
        return;
      }
      if (!rows.empty()) {
        absl::StatusOr<ImportResult> result = service_.repo_.Import(rows, wctx_);
        if (!result.ok()) {
          Fail(ToGrpcStatus(result.status()));
          return;
        }
        service_.notifier_.Advance(result->revision);
        created_ += result->created;
        unchanged_ += result->unchanged;
        failed_ += static_cast<int64_t>(result->errors.size());
        written_failed_ += static_cast<int64_t>(result->errors.size());
        written_through_ = received_;
        for (const ImportRowError& err : result->errors) {
          if (response_.errors_size() >= kMaxImportErrorsListed) break;
          auto* e = response_.add_errors();
          e->set_row_number(err.row_number);
          e->set_code(err.code);
          e->set_field(err.field);
          e->set_rule(err.rule);
          e->set_reason(err.reason);
        }
      }
      if (!last) {
        StartRead(&buffer_);
        return;
      }
      if (Broken()) {  // it broke while the last chunk was written: do not report it done
        Fail(grpc::Status(grpc::StatusCode::CANCELLED,
                          absl::StrCat("the import stream broke off; ", Written())));
        return;
      }
      // Errors from validation and from the store arrive in two passes: restore stream order.
      std::sort(response_.mutable_errors()->begin(), response_.mutable_errors()->end(),
                [](const v1::ImportRowError& a, const v1::ImportRowError& b) {
                  return a.row_number() < b.row_number();
                });
      response_.set_received(received_);
      response_.set_created(created_);
      response_.set_unchanged(unchanged_);
      response_.set_failed(failed_);
      bool own_buffer = false;
      const grpc::Status serialized = grpc::SerializationTraits<v1::ImportOrgsResponse>::Serialize(
          response_, resp_, &own_buffer);
      if (!serialized.ok()) {
        Fail(serialized);
        return;
      }
      log::Info("import finished", {{"request_id", wctx_.audit.request_id},
                                    {"caller", wctx_.audit.caller},
                                    {"received", received_},
                                    {"created", created_},
                                    {"unchanged", unchanged_},
                                    {"failed", failed_}});
      Finish(grpc::Status::OK);
    });
    if (!queued) {
      Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("the registry is at capacity; re-send the import later (it "
                                       "is idempotent); ",
                                       Written())));
    }
  }

  OrgRegistryService& service_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const resp_;
  WriteContext wctx_;
  CivilDate today_;
  grpc::ByteBuffer buffer_;  // the message being read
  v1::ImportOrgsResponse response_;
  std::vector<ImportRow> pending_;
  std::atomic<bool> cancelled_{false};
  int64_t messages_ = 0;
  int64_t received_ = 0;
  int64_t created_ = 0;
  int64_t unchanged_ = 0;
  int64_t failed_ = 0;
  int64_t written_failed_ = 0;   // rows the store refused in committed chunks
  int64_t written_through_ = 0;  // the last row number of the last committed chunk
};

grpc::ServerReadReactor<grpc::ByteBuffer>* OrgRegistryService::ImportOrgs(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp) {
  return new ImportReactor(*this, ctx, resp);
}

// --- WatchOrgChanges ---------------------------------------------------------------------------

// Streams changes after the cursor: fetch a page on the worker pool, write it change by change,
// fetch the next page only when the last write of this one is done (OnWriteDone), so a slow or
// stalled client holds the stream at one page (kWatchPageChanges) however long the history; when
// caught up, wait on the ChangeNotifier. Exactly one of fetching, writing and waiting is under way
// at a time. Each stream holds a slot of the notifier's StreamLimits from its start until OnDone.
//
// Lifetime: gRPC deletes the reactor (OnDone) at any moment after Finish(), on its own thread. So
// everything that worker and notifier threads touch lives in a shared State that they hold a
// reference to, and the reactor pointer in it is used only under the State's mutex while
// `finished` is false: whoever finishes sets `finished` under that mutex, and no one touches the
// reactor afterwards.
class OrgRegistryService::WatchReactor final : public grpc::ServerWriteReactor<v1::OrgChange> {
 public:
  WatchReactor(OrgRegistryService& service, grpc::CallbackServerContext* ctx,
               const v1::WatchOrgChangesRequest* req)
      : state_(std::make_shared<State>(service, this)) {
    absl::StatusOr<auth::Principal> caller = service.Authorize(*ctx, kReadRole);
    absl::MutexLock lock(&state_->mu);
    if (!caller.ok()) {
      FinishLocked(*state_, ToGrpcStatus(caller.status()));
      return;
    }
    if (req->from_revision() < 0) {
      FinishLocked(*state_,
                   ToGrpcStatus(InvalidFieldError("from_revision", "must not be negative")));
      return;
    }
    // Held until OnDone, however the stream ends.
    absl::StatusOr<StreamSlots::Slot> slot = service.notifier_.OpenWatcher(caller->subject);
    if (!slot.ok()) {
      FinishLocked(*state_, ToGrpcStatus(slot.status()));
      return;
    }
    slot_.emplace(*std::move(slot));
    state_->scope = caller->org_scope;
    state_->cursor = req->from_revision();
    ScheduleFetchLocked(state_);
  }

  void OnWriteDone(bool ok) override {
    const v1::OrgChange* next = nullptr;
    {
      absl::MutexLock lock(&state_->mu);
      State& s = *state_;
      if (s.finished) return;
      if (!ok || s.cancelled) {
        FinishLocked(s, grpc::Status::CANCELLED);
        return;
      }
      s.service.notifier_.ChangeSent();
      if (s.next < s.batch.size()) {
        next = &s.batch[s.next++];
      } else {
        // The page is sent: free it before reading the next, which may be long in coming.
        std::vector<v1::OrgChange>().swap(s.batch);
        s.next = 0;
        ScheduleFetchLocked(state_);
        return;
      }
    }
    // Outside the mutex, in case gRPC runs the next reaction on this thread. While a write is
    // under way no other thread finishes the call (only a waiting call is finished from
    // elsewhere), so the reactor is alive.
    StartWrite(next);
  }

  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    State& s = *state_;
    s.cancelled = true;
    if (s.waiting && s.service.notifier_.Cancel(s.wait_handle)) {
      s.waiting = false;
      FinishLocked(s, grpc::Status::CANCELLED);
    }
  }

  void OnDone() override { delete this; }  // frees the slot

 private:
  struct State {
    State(OrgRegistryService& service, WatchReactor* reactor)
        : service(service), reactor(reactor) {}
    OrgRegistryService& service;
    absl::Mutex mu;
    WatchReactor* const reactor;  // only while !finished, under mu
    std::optional<int64_t> scope;
    int64_t cursor ABSL_GUARDED_BY(mu) = 0;
    std::vector<v1::OrgChange> batch ABSL_GUARDED_BY(mu);  // the page being written
    size_t next ABSL_GUARDED_BY(mu) = 0;                   // its next change to write
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    bool waiting ABSL_GUARDED_BY(mu) = false;
    uint64_t wait_handle ABSL_GUARDED_BY(mu) = 0;
    uint64_t wait_seq ABSL_GUARDED_BY(mu) = 0;  // which wait wait_handle belongs to
  };

  static void FinishLocked(State& s, const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    if (s.finished) return;
    s.finished = true;
    s.reactor->Finish(status);  // the reactor may be gone once this returns
  }

  static void ScheduleFetchLocked(const std::shared_ptr<State>& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
    if (!state->service.workers_.Submit([state] { Fetch(state); })) {
      FinishLocked(*state,
                   grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "the registry is at capacity; resume from the last revision seen"));
    }
  }

  static void Fetch(const std::shared_ptr<State>& state) {
    State& s = *state;
    int64_t from = 0;
    {
      absl::MutexLock lock(&s.mu);
      if (s.finished) return;
      if (s.cancelled) {
        FinishLocked(s, grpc::Status::CANCELLED);
        return;
      }
      from = s.cursor;
    }
    absl::StatusOr<std::vector<Change>> changes =
        s.service.repo_.ChangesSince(from, kWatchPageChanges, ReadContext{});
    if (changes.ok()) s.service.notifier_.ChangesRead(static_cast<int64_t>(changes->size()));
    uint64_t wait_seq = 0;
    const v1::OrgChange* first = nullptr;
    WatchReactor* reactor = nullptr;
    {
      absl::MutexLock lock(&s.mu);
      if (s.finished) return;
      if (s.cancelled) {
        FinishLocked(s, grpc::Status::CANCELLED);
        return;
      }
      if (!changes.ok()) {
        FinishLocked(s, ToGrpcStatus(absl::UnavailableError(absl::StrCat(
                            "the change feed cannot be read now; resume from revision ", from))));
        return;
      }
      s.batch.clear();
      s.batch.reserve(changes->size());
      s.next = 0;
      for (const Change& c : *changes) {
        s.cursor = c.revision;
        if (VisibleTo(c, s.scope)) s.batch.push_back(ChangeToProto(c));
      }
      if (!s.batch.empty()) {
        first = &s.batch[s.next++];
        reactor = s.reactor;
      } else if (static_cast<int>(changes->size()) == kWatchPageChanges) {
        ScheduleFetchLocked(state);  // a full page outside the caller's scope: read on
        return;
      } else {
        s.waiting = true;
        wait_seq = ++s.wait_seq;
        from = s.cursor;
      }
    }
    if (first != nullptr) {
      reactor->StartWrite(first);  // see OnWriteDone: the call cannot be finished meanwhile
      return;
    }
    // Not under the mutex: the notifier may run the wake at once, on this thread.
    const uint64_t handle = s.service.notifier_.WaitBeyond(from, [state](bool stopping) {
      absl::MutexLock lock(&state->mu);
      if (state->finished) return;
      state->waiting = false;
      if (stopping) {
        FinishLocked(*state, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                          absl::StrCat("the server is shutting down; resume from "
                                                       "revision ",
                                                       state->cursor)));
      } else if (state->cancelled) {
        FinishLocked(*state, grpc::Status::CANCELLED);
      } else {
        ScheduleFetchLocked(state);
      }
    });
    absl::MutexLock lock(&s.mu);
    // The wake may already have run (and a later fetch be waiting under another handle).
    if (s.finished || !s.waiting || s.wait_seq != wait_seq) return;
    s.wait_handle = handle;
    if (s.cancelled && s.service.notifier_.Cancel(handle)) {
      s.waiting = false;
      FinishLocked(s, grpc::Status::CANCELLED);
    }
  }

  const std::shared_ptr<State> state_;
  // In the notifier's StreamLimits (and dj_registry_feed_watchers); set in the constructor only.
  std::optional<StreamSlots::Slot> slot_;
};

grpc::ServerWriteReactor<v1::OrgChange>* OrgRegistryService::WatchOrgChanges(
    grpc::CallbackServerContext* ctx, const v1::WatchOrgChangesRequest* req) {
  return new WatchReactor(*this, ctx, req);
}

}  // namespace dangjian::registry
