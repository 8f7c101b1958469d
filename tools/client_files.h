// What the command-line clients (dj-import, dj-health) share: reading a whole file, and channel
// credentials from an optional CA file (TLS verified against it, plaintext without one).
// Stateless and thread-safe.
#pragma once

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace dangjian::tools {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// Plaintext when `ca_file` is empty (the suite serves plaintext only on loopback); else TLS with
// the server verified against the PEM bundle in `ca_file`.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const std::string& ca_file);

}  // namespace dangjian::tools
