// dj-health: a grpc.health.v1 probe for scripts, CI and container health checks.
//
//   dj-health --target 127.0.0.1:50051 [--service dangjian.registry.v1.OrgRegistry] [--timeout 5s]
//             [--tls_ca_file ca.pem [--tls_server_name registry.example]]
//
// Exits 0 when the server answers SERVING for --service ("" is the server as a whole), 1 for any
// other answer or error (printed on stderr), 2 for bad flags. The call waits for the channel to
// connect until --timeout, so a script can start a server and probe it without sleeping first.
//
// Debian ships no generated client for grpc.health.v1 (only the server side in grpcpp), so the
// two messages are encoded by hand through the generic stub. They are stable and tiny:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2,
//                                                      SERVICE_UNKNOWN = 3
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/usage.h"
#include "tools/client_files.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "host:port of the gRPC server to probe");
ABSL_FLAG(std::string, service, "",
          "service name to ask about (e.g. dangjian.registry.v1.OrgRegistry); empty asks about "
          "the server as a whole");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5),
          "deadline for connecting and answering, e.g. 500ms or 5s");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle: use TLS and verify the server against it (plaintext when empty, which "
          "the suite serves only on loopback)");
ABSL_FLAG(std::string, tls_server_name, "",
          "with --tls_ca_file: the name the server's certificate must carry, when it differs from "
          "the host of --target (e.g. probing 127.0.0.1 inside a container)");

namespace {

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";
constexpr uint8_t kFieldOneLengthDelimited = (1 << 3) | 2;  // tag of `string service = 1`
constexpr uint8_t kFieldOneVarint = (1 << 3) | 0;           // tag of `ServingStatus status = 1`
constexpr uint64_t kServing = 1;

const char* StatusName(uint64_t status) {
  switch (status) {
    case 0:
      return "UNKNOWN";
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "unrecognised status";
  }
}

void AppendVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

// Reads a varint at `pos`, advancing it; nullopt if the bytes end inside it or it is too long.
std::optional<uint64_t> ReadVarint(absl::string_view bytes, size_t& pos) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64 && pos < bytes.size(); shift += 7) {
    const auto byte = static_cast<uint8_t>(bytes[pos++]);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  return std::nullopt;
}

std::string EncodeRequest(absl::string_view service) {
  std::string out;
  if (service.empty()) return out;  // proto3 omits a default field
  out.push_back(static_cast<char>(kFieldOneLengthDelimited));
  AppendVarint(service.size(), out);
  out.append(service.data(), service.size());
  return out;
}

// Returns the `status` field (0 when absent, as proto3 says); skips fields it does not know, so a
// newer server's additions do not break the probe. nullopt when the bytes are malformed.
std::optional<uint64_t> DecodeStatus(absl::string_view bytes) {
  uint64_t status = 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const std::optional<uint64_t> key = ReadVarint(bytes, pos);
    if (!key) return std::nullopt;
    const uint64_t wire_type = *key & 7;
    if (*key == kFieldOneVarint) {
      const std::optional<uint64_t> value = ReadVarint(bytes, pos);
      if (!value) return std::nullopt;
      status = *value;
    } else if (wire_type == 0) {
      if (!ReadVarint(bytes, pos)) return std::nullopt;
    } else if (wire_type == 1 || wire_type == 5) {
      pos += wire_type == 1 ? 8 : 4;
    } else if (wire_type == 2) {
      const std::optional<uint64_t> length = ReadVarint(bytes, pos);
      if (!length || *length > bytes.size() - pos) return std::nullopt;
      pos += *length;
    } else {
      return std::nullopt;
    }
  }
  if (pos != bytes.size()) return std::nullopt;
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  dangjian::flags::ListOwnFlagsInHelp(__FILE__);
  absl::SetProgramUsageMessage(
      "Asks a gRPC server's grpc.health.v1 service whether it is SERVING; exit 0 if so, else 1.");
  absl::ParseCommandLine(argc, argv);
  const std::string target = absl::GetFlag(FLAGS_target);
  const std::string service = absl::GetFlag(FLAGS_service);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (target.empty() || timeout <= absl::ZeroDuration()) {
    std::fprintf(stderr, "dj-health: --target must be set and --timeout positive\n");
    return 2;
  }

  const std::string ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  const std::string server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (!server_name.empty() && ca_file.empty()) {
    std::fprintf(stderr, "dj-health: --tls_server_name needs --tls_ca_file\n");
    return 2;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      dangjian::tools::ChannelCredentialsFor(ca_file);
  if (!credentials.ok()) {
    std::fprintf(stderr, "dj-health: --tls_ca_file: %s\n",
                 std::string(credentials.status().message()).c_str());
    return 2;
  }
  grpc::ChannelArguments args;
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  grpc::GenericStub stub(grpc::CreateCustomChannel(target, *credentials, args));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  context.set_wait_for_ready(true);  // a server still starting is waited for, up to the deadline

  const std::string request_bytes = EncodeRequest(service);
  grpc::Slice request_slice(request_bytes);
  grpc::ByteBuffer request(&request_slice, 1);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&context, kCheckMethod, request, &cq);
  grpc::ByteBuffer response;
  grpc::Status status;
  call->StartCall();
  call->Finish(&response, &status, /*tag=*/&status);
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || tag != &status) {
    std::fprintf(stderr, "dj-health: %s: the call did not complete\n", target.c_str());
    return 1;
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }

  if (!status.ok()) {
    std::fprintf(stderr, "dj-health: %s: %s (code %d)\n", target.c_str(),
                 status.error_message().c_str(), static_cast<int>(status.error_code()));
    return 1;
  }
  grpc::Slice response_slice;
  std::string response_bytes;
  if (response.Length() > 0) {
    if (!response.DumpToSingleSlice(&response_slice).ok()) {
      std::fprintf(stderr, "dj-health: %s: unreadable response\n", target.c_str());
      return 1;
    }
    response_bytes.assign(reinterpret_cast<const char*>(response_slice.begin()),
                          response_slice.size());
  }
  const std::optional<uint64_t> serving_status = DecodeStatus(response_bytes);
  if (!serving_status) {
    std::fprintf(stderr, "dj-health: %s: malformed HealthCheckResponse\n", target.c_str());
    return 1;
  }
  const char* what = service.empty() ? "(server)" : service.c_str();
  if (*serving_status != kServing) {
    std::fprintf(stderr, "dj-health: %s %s: %s\n", target.c_str(), what,
                 StatusName(*serving_status));
    return 1;
  }
  std::printf("%s %s: SERVING\n", target.c_str(), what);
  return 0;
}
