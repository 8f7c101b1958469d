// dj-echo-server: a bare callback-API unary echo server on 127.0.0.1, the baseline of the
// benchmarks ("what does gRPC itself cost on this machine?"). It uses the same server settings as
// our services (common/server.cc with ServerOptions defaults: message size, keepalive, no
// SO_REUSEPORT) but no interceptors, no auth, no health or reflection, and does no work in the
// handler.
//
//   dj-echo-server --port 0     prints the port it listens on (one line), then serves until
//                               SIGTERM or SIGINT.
//   --service_host              serves through common/server.h's ServiceHost instead, as our
//                               services do: the metrics and logging interceptors, health and
//                               reflection. The difference to the bare echo is what that
//                               bootstrap costs per call (bench/README.md, callgrind).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/server.h"
#include "echo/echo.grpc.pb.h"

ABSL_FLAG(int, port, 0, "port on 127.0.0.1 to listen on; 0 picks a free one");
ABSL_FLAG(bool, service_host, false,
          "serve through common/server.h's ServiceHost (interceptors, health, reflection)");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(2),
          "how long in-flight calls may take to finish after SIGTERM");

namespace dangjian::bench {
namespace {

// The largest payload a caller may ask for; larger requests are INVALID_ARGUMENT.
constexpr int kMaxReplyBytes = 1 << 20;

// Our services' defaults (common/server.h ServerOptions), so the baseline pays what they pay.
constexpr int kMaxMessageBytes = 16 * 1024 * 1024;
constexpr int kKeepaliveTimeMs = 60 * 1000;
constexpr int kKeepaliveTimeoutMs = 20 * 1000;
constexpr int kMinClientPingIntervalMs = 10 * 1000;
constexpr int kMaxConnectionIdleMs = 30 * 60 * 1000;

class EchoService final : public dj::bench::echo::Echo::CallbackService {
 public:
  EchoService() : filler_(kMaxReplyBytes, 'x') {}

  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const dj::bench::echo::EchoRequest* request,
                                 dj::bench::echo::EchoResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (request->reply_bytes() < 0 || request->reply_bytes() > kMaxReplyBytes) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("reply_bytes must be 0..", kMaxReplyBytes)));
      return reactor;
    }
    response->set_id(request->id());
    response->set_payload(filler_.data(), static_cast<size_t>(request->reply_bytes()));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const std::string filler_;
};

int Run() {
  const int port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "dj-echo-server: --port must be 0..65535\n");
    return 2;
  }
  EchoService service;
  if (absl::GetFlag(FLAGS_service_host)) {
    log::Init("echo", log::Level::kInfo);
    ServerOptions options;
    options.service_name = "echo";
    options.address = absl::StrCat("127.0.0.1:", port);
    options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
    prometheus::Registry registry;
    auto host = ServiceHost::Start(options, {&service}, registry, [] { return true; });
    if (!host.ok()) {
      std::fprintf(stderr, "dj-echo-server: %s\n", std::string(host.status().message()).c_str());
      return 1;
    }
    std::printf("%d\n", (*host)->port());
    std::fflush(stdout);
    WaitForShutdownSignal();
    (*host)->Shutdown();
    return 0;
  }
  grpc::ServerBuilder builder;
  int selected_port = 0;
  // Plaintext is acceptable only because the address is loopback.
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                           &selected_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kMinClientPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, kMaxConnectionIdleMs);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) {
    std::fprintf(stderr, "dj-echo-server: could not listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  std::printf("%d\n", selected_port);
  std::fflush(stdout);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoSeconds(absl::GetFlag(FLAGS_shutdown_grace)));
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace dangjian::bench

int main(int argc, char** argv) {
  // As dj-registry does: no lock-order checking on every Mutex (gRPC's included), so the baseline
  // runs gRPC as the services do.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Blocked before gRPC starts its threads, so only sigwait() in Run() ever receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  absl::ParseCommandLine(argc, argv);
  return dangjian::bench::Run();
}
