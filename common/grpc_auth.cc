#include "common/grpc_auth.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace dangjian {

absl::StatusOr<auth::Principal> AuthenticateCall(const grpc::ServerContextBase& context,
                                                 const auth::TokenVerifier* verifier) {
  if (verifier == nullptr) {
    auth::Principal dev;
    dev.subject = "insecure-dev";
    dev.roles = {std::string(auth::kAdminRole)};
    return dev;
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing authorization metadata (Bearer token)");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "bearer ";
  if (value.size() <= kBearer.size() || !absl::StartsWithIgnoreCase(value, kBearer)) {
    return absl::UnauthenticatedError("authorization metadata is not 'Bearer <token>'");
  }
  return verifier->Verify(absl::StripAsciiWhitespace(value.substr(kBearer.size())));
}

absl::Time DeadlineOf(const grpc::ServerContextBase& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace dangjian
