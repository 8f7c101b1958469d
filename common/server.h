// Server bootstrap shared by every service's composition root.
//
// ServiceHost builds a gRPC server with: the standard health service (grpc.health.v1; SERVING
// only while the readiness check passes, NOT_SERVING once draining; and kLivenessService, SERVING
// for as long as the host runs, for probes that must not follow the database), server reflection,
// message size and keepalive limits, TLS when listening beyond loopback, and interceptors that
// record the standard gRPC metrics and log one JSON line per call (method, request id, code,
// duration). Shutdown: mark NOT_SERVING and keep serving for shutdown_delay (so clients and load
// balancers that follow health move away before the port closes), then stop accepting, let
// in-flight calls finish until the grace deadline, and cancel what is left. Thread-safe:
// Shutdown() may be called from any thread, once or more.
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace dangjian {

// The health "service" a liveness probe asks for: SERVING from Start() until the host stops,
// whatever the readiness check says, so an outage of a dependency (PostgreSQL) takes replicas
// out of rotation (readiness) without having them all restarted (liveness).
inline constexpr char kLivenessService[] = "liveness";

struct ServerOptions {
  std::string service_name;             // e.g. "registry", for logs
  std::string address = "127.0.0.1:0";  // port 0 picks a free port
  // TLS: required when `address` is not a loopback address.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;  // optional: require client certificates signed by this CA
  // Optional second listener, plaintext on any address, serving only grpc.health.v1 (and gRPC's
  // reflection, which every server here carries) with the same statuses as the main one: for
  // orchestrator probes that cannot speak TLS, such as Kubernetes' native gRPC probes. It
  // reveals whether the service is serving, nothing else. Empty: none.
  std::string health_address;
  int max_message_bytes = 16 * 1024 * 1024;
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  absl::Duration max_connection_idle = absl::Minutes(30);
  // On Shutdown(), how long to go on serving while health says NOT_SERVING, before the listener
  // closes. gRPC refuses calls that arrive after the close with UNAVAILABLE, which clients retry
  // elsewhere; but calls that reach it in the instant it closes end CANCELLED, which they do not
  // retry. The delay lets the clients and balancers that watch health stop sending first.
  absl::Duration shutdown_delay = absl::ZeroDuration();
  absl::Duration shutdown_grace = absl::Seconds(10);
  absl::Duration readiness_interval = absl::Seconds(1);
};

class ServiceHost {
 public:
  // `services` must outlive the host. `ready` is polled every readiness_interval off the gRPC
  // threads; health is SERVING (for "" and each service's full name) only while it returns true.
  static absl::StatusOr<std::unique_ptr<ServiceHost>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services,
      prometheus::Registry& registry, std::function<bool()> ready);
  ~ServiceHost();  // Shutdown()

  int port() const { return port_; }
  int health_port() const { return health_port_; }  // 0 without a health listener
  // Drains and stops (see above). Blocks until the server has stopped.
  void Shutdown();
  // Cuts Shutdown()'s delay short: the listener closes now, or as soon as Shutdown() starts if it
  // has not yet (for a second stop request, and for tests). Any thread, once or more.
  void EndShutdownDelay();
  bool serving() const { return serving_.load(); }

 private:
  ServiceHost() = default;
  void ReadinessLoop();
  // Runs ready_ (an exception counts as not ready) and publishes the result unless draining.
  void CheckReadiness();
  // Sets "" and every entry of service_names_ to SERVING or NOT_SERVING.
  void SetHealthLocked(bool serving) ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mu_);

  ServerOptions options_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;  // the health-only listener, if any
  // Full names of the registered application services ("dangjian.registry.v1.OrgRegistry"), as
  // gRPC itself recorded them when BuildAndStart registered the services; grpc.* services (health,
  // reflection) are left out.
  std::vector<std::string> service_names_;
  std::function<bool()> ready_;
  int port_ = 0;
  int health_port_ = 0;
  std::atomic<bool> serving_{false};
  std::atomic<bool> draining_{false};
  // Orders health updates: once Shutdown() has set NOT_SERVING under it, a readiness check that
  // was already running cannot publish SERVING again.
  absl::Mutex health_mu_;
  absl::Notification stop_;
  absl::Notification delay_over_;  // see EndShutdownDelay()
  std::once_flag delay_over_once_;
  std::thread readiness_thread_;
  std::once_flag shutdown_once_;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later; call first
// thing in main(). WaitForShutdownSignal() then returns the signal that arrived.
void BlockShutdownSignals();
int WaitForShutdownSignal();
// The same, waiting at most `timeout`: the signal that arrived, or 0 when none did in time (e.g.
// to sleep between retries at start and still stop at once on SIGTERM).
int WaitForShutdownSignalFor(absl::Duration timeout);

// True for 127.0.0.0/8, ::1 and "localhost" addresses ("host:port" form).
bool IsLoopbackAddress(const std::string& address);

// The request id of a call: the client's x-request-id metadata, else one generated per call
// by the logging interceptor (and echoed in the x-request-id trailing metadata).
std::string RequestIdOf(const grpc::ServerContextBase& context);

}  // namespace dangjian
