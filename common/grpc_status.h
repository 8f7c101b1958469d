// The one mapping from absl::Status to grpc::Status used by every handler. Field violations and
// rule violations become a dangjian.common.v1.ErrorStatus in the status details (the
// grpc-status-details-bin trailer). INTERNAL and UNKNOWN messages are replaced by a generic text,
// so no SQL, host name or stack detail reaches a caller. Thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace dangjian {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The inverse, for clients of our services (and tests): code, message and details come back.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace dangjian
