// Authenticates a gRPC call from its `authorization: Bearer <JWT>` metadata. With a null verifier
// (auth disabled by the dev switch of the local run command) every call is a city-wide admin named
// "insecure-dev". Thread-safe.
#pragma once

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"

namespace dangjian {

absl::StatusOr<auth::Principal> AuthenticateCall(const grpc::ServerContextBase& context,
                                                 const auth::TokenVerifier* verifier);

// The call's deadline as absl::Time (InfiniteFuture when the client set none).
absl::Time DeadlineOf(const grpc::ServerContextBase& context);

}  // namespace dangjian
