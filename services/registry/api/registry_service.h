// gRPC handlers of dangjian.registry.v1.OrgRegistry (callback API).
//
// Each handler authenticates the caller, checks its role, validates the request (naming every bad
// field), then runs the blocking work (PostgreSQL, Redis) on the WorkerPool, off gRPC's threads,
// and maps the result with the one status mapping of common/. The call's deadline bounds the SQL.
// Domain rules live in domain/, storage in store/; nothing here decides a rule by itself.
// Thread-safe.
#pragma once

#include "common/auth.h"
#include "common/clock.h"
#include "common/page_token.h"
#include "common/status.h"
#include "common/worker_pool.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"
#include "services/registry/store/change_notifier.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

// Roles this service knows (plus auth::kAdminRole, which grants both).
inline constexpr absl::string_view kReadRole = "registry.read";
inline constexpr absl::string_view kWriteRole = "registry.write";

// Rows of an import are validated as they arrive and written in chunks of this many.
inline constexpr int kImportChunkRows = 1000;
// An import reply lists at most this many bad rows (the counts stay exact).
inline constexpr int kMaxImportErrorsListed = 10000;
// A WatchOrgChanges stream reads the feed in pages of this many changes, and reads the next page
// only once its client has taken the last: a stream holds one page at most (about 100 KB).
inline constexpr int kWatchPageChanges = 100;

// ImportOrgs is served raw (grpc::ByteBuffer) so that it parses each message itself; see
// ImportReactor. Reflection still describes it with its real types: it reads the proto files.
class OrgRegistryService final
    : public v1::OrgRegistry::WithRawCallbackMethod_ImportOrgs<v1::OrgRegistry::CallbackService> {
 public:
  // `page_tokens` seals ListOrgs' page tokens. `verifier` null disables authentication (dev
  // switch). All references must outlive the service.
  OrgRegistryService(OrgRepository& repo, ChangeNotifier& notifier, WorkerPool& workers,
                     PageTokenKeyring& page_tokens, const auth::TokenVerifier* verifier,
                     Clock& clock = RealClock::Get());

  grpc::ServerUnaryReactor* CreateOrg(grpc::CallbackServerContext* ctx,
                                      const v1::CreateOrgRequest* req, v1::Org* resp) override;
  grpc::ServerUnaryReactor* GetOrg(grpc::CallbackServerContext* ctx, const v1::GetOrgRequest* req,
                                   v1::Org* resp) override;
  grpc::ServerUnaryReactor* BatchGetOrgs(grpc::CallbackServerContext* ctx,
                                         const v1::BatchGetOrgsRequest* req,
                                         v1::BatchGetOrgsResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateOrg(grpc::CallbackServerContext* ctx,
                                      const v1::UpdateOrgRequest* req, v1::Org* resp) override;
  grpc::ServerUnaryReactor* MoveOrg(grpc::CallbackServerContext* ctx, const v1::MoveOrgRequest* req,
                                    v1::Org* resp) override;
  grpc::ServerUnaryReactor* DissolveOrg(grpc::CallbackServerContext* ctx,
                                        const v1::DissolveOrgRequest* req, v1::Org* resp) override;
  grpc::ServerUnaryReactor* ListOrgs(grpc::CallbackServerContext* ctx,
                                     const v1::ListOrgsRequest* req,
                                     v1::ListOrgsResponse* resp) override;
  grpc::ServerUnaryReactor* GetAncestors(grpc::CallbackServerContext* ctx,
                                         const v1::GetAncestorsRequest* req,
                                         v1::GetAncestorsResponse* resp) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* ImportOrgs(grpc::CallbackServerContext* ctx,
                                                        grpc::ByteBuffer* resp) override;
  grpc::ServerWriteReactor<v1::OrgChange>* WatchOrgChanges(
      grpc::CallbackServerContext* ctx, const v1::WatchOrgChangesRequest* req) override;

 private:
  class ImportReactor;
  class WatchReactor;

  using Work = std::function<absl::Status(const auth::Principal&, absl::Time deadline)>;
  // Authorizes the caller for `role`, then runs `work` on the worker pool and finishes the call.
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, absl::string_view role,
                                  absl::string_view method, Work work);
  // The same with the caller already authorized (or refused) by the handler.
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx,
                                  absl::StatusOr<auth::Principal> caller, bool mutating,
                                  absl::string_view method, Work work);
  absl::StatusOr<auth::Principal> Authorize(const grpc::CallbackServerContext& ctx,
                                            absl::string_view role) const;
  WriteContext MakeWriteContext(const grpc::CallbackServerContext& ctx,
                                const auth::Principal& caller, absl::string_view method,
                                const std::string& request_id) const;
  // Audits a write refused for bad fields, and returns the INVALID_ARGUMENT naming them.
  absl::Status RefuseInvalid(const WriteContext& wctx, std::string target,
                             const FieldErrors& errors);
  // Wakes the change feed for a committed write and writes the org into the reply.
  absl::Status Answer(absl::StatusOr<WriteResult> result, v1::Org* resp);
  // The org `id` if the caller may see it (see [org-scope]).
  absl::StatusOr<Org> GetVisible(int64_t id, const auth::Principal& caller, absl::Time deadline,
                                 absl::string_view what);

  OrgRepository& repo_;
  ChangeNotifier& notifier_;
  WorkerPool& workers_;
  PageTokenKeyring& page_tokens_;
  const auth::TokenVerifier* const verifier_;
  Clock& clock_;
};

}  // namespace dangjian::registry
