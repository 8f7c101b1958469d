#include "common/server.h"

#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/impl/server_initializer.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/support/server_interceptor.h>
#include <netinet/in.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <ctime>
#include <exception>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/grpc_metrics.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb.h"

namespace dangjian {
namespace {

using grpc::experimental::InterceptionHookPoints;

constexpr absl::string_view kRequestIdKey = "x-request-id";
// A client-chosen id is logged and echoed, so it is bounded and printable; anything else is
// replaced by a generated one.
constexpr size_t kMaxRequestIdLength = 128;
constexpr absl::Duration kMinReadinessInterval = absl::Milliseconds(10);

bool IsValidRequestId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

std::optional<std::string> ClientRequestId(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  auto it = metadata.find(grpc::string_ref(kRequestIdKey.data(), kRequestIdKey.size()));
  if (it == metadata.end()) return std::nullopt;
  absl::string_view id(it->second.data(), it->second.size());
  if (!IsValidRequestId(id)) return std::nullopt;
  return std::string(id);
}

// 128 random bits as 32 hex digits. Request ids need to be unique, not unpredictable, so a
// per-thread generator seeded from the OS is enough and takes no lock.
std::string NewRequestId() {
  thread_local std::mt19937_64 generator = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  const uint64_t high = generator();
  const uint64_t low = generator();
  return absl::StrCat(absl::Hex(high, absl::kZeroPad16), absl::Hex(low, absl::kZeroPad16));
}

// Set by ServiceHost::Start: from then on the process's calls carry the logging interceptor,
// which takes every id RequestIdOf generates out of GeneratedRequestIds again.
std::atomic<bool> g_request_id_interceptor{false};

// How RequestIdOf and the logging interceptor agree on a generated id. A server interceptor
// cannot add to the metadata a handler sees through the context's public API, so an id is
// generated only when a handler asks for one (RequestIdOf: writes, audit rows) and kept here,
// keyed by the call's context, until the interceptor takes it when the status goes out (or
// erases it when the call ends without one). Most calls (reads) never ask: their id is made by
// the interceptor alone, with no lock and no map. Ids the client sent are not stored:
// RequestIdOf reads them from the client metadata directly.
class GeneratedRequestIds {
 public:
  static GeneratedRequestIds& Get() {
    static auto* const kIds = new GeneratedRequestIds;
    return *kIds;
  }
  std::string FindOrCreate(const grpc::ServerContextBase* context) {
    absl::MutexLock lock(&mu_);
    std::string& id = ids_[context];
    if (id.empty()) id = NewRequestId();
    return id;
  }
  std::optional<std::string> Take(const grpc::ServerContextBase* context) {
    absl::MutexLock lock(&mu_);
    auto it = ids_.find(context);
    if (it == ids_.end()) return std::nullopt;
    std::string id = std::move(it->second);
    ids_.erase(it);
    return id;
  }
  void Erase(const grpc::ServerContextBase* context) {
    absl::MutexLock lock(&mu_);
    ids_.erase(context);
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<const grpc::ServerContextBase*, std::string> ids_ ABSL_GUARDED_BY(mu_);
};

// A call slower than this is logged at info even when it is a successful read.
constexpr double kSlowCallMs = 500;

// Health probes (every few seconds from every orchestrator) and methods the .proto marks
// `option idempotency_level = NO_SIDE_EFFECTS` (reads). `method` is gRPC's "/pkg.Service/Method".
bool IsQuietWhenOk(absl::string_view method) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* const known = new absl::flat_hash_map<std::string, bool>();
  {
    absl::ReaderMutexLock lock(&mu);
    auto it = known->find(method);  // heterogeneous: no string is built per call
    if (it != known->end()) return it->second;
  }
  bool quiet = absl::StartsWith(method, "/grpc.health.v1.Health/");
  if (!quiet && absl::StartsWith(method, "/")) {
    const google::protobuf::MethodDescriptor* descriptor =
        google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
            absl::StrReplaceAll(method.substr(1), {{"/", "."}}));
    quiet = descriptor != nullptr && descriptor->options().idempotency_level() ==
                                         google::protobuf::MethodOptions::NO_SIDE_EFFECTS;
  }
  // Bounded: only successful calls ask, and only methods the server has can succeed.
  absl::MutexLock lock(&mu);
  known->emplace(std::string(method), quiet);
  return quiet;
}

// The message a unary or server-streaming call whose request did not parse gets instead of gRPC
// 1.51's bare UNIMPLEMENTED (its callback handlers answer so before any code of ours runs, which
// reads as a missing method): INVALID_ARGUMENT naming the request type the bytes did not parse
// as. `method` is gRPC's "/pkg.Service/Method".
grpc::Status UnparsableRequestStatus(absl::string_view method) {
  std::string type = "the method's request message";
  if (absl::StartsWith(method, "/")) {
    const google::protobuf::MethodDescriptor* descriptor =
        google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
            absl::StrReplaceAll(method.substr(1), {{"/", "."}}));
    if (descriptor != nullptr) type = descriptor->input_type()->full_name();
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("the request could not be parsed as ", type,
                                   " (not protobuf, a field of the wrong wire type, or a string "
                                   "field that is not valid UTF-8)"));
}

// Takes the client's request id when the metadata arrives; when the status goes out, settles the
// id (the client's, else the one a handler was given, else a new one), echoes it in the
// trailers and writes one JSON log line.
class LoggingInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit LoggingInterceptor(grpc::experimental::ServerRpcInfo* info)
      : context_(info->server_context()),
        // gRPC's own string, alive as long as the call (no copy per call).
        method_(info->method() == nullptr ? "" : info->method()),
        // Calls that carry one request message, which gRPC parses before our handlers run.
        single_request_(info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY ||
                        info->type() == grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING),
        start_(std::chrono::steady_clock::now()) {}
  ~LoggingInterceptor() override {
    // A call that ended without a status (cancelled) may still hold an id a handler asked for.
    if (!status_sent_ && request_id_.empty()) GeneratedRequestIds::Get().Erase(context_);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      std::optional<std::string> client_id = ClientRequestId(*methods->GetRecvInitialMetadata());
      if (client_id.has_value()) request_id_ = std::move(*client_id);
    }
    // A request that did not parse reaches the interceptors as no message at all.
    if (single_request_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      request_unparsable_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      status_sent_ = true;
      if (request_unparsable_ &&
          methods->GetSendStatus().error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        // Later interceptors (metrics) and the log see the status the client gets.
        methods->ModifySendStatus(UnparsableRequestStatus(method_));
      }
      if (request_id_.empty()) {
        std::optional<std::string> given = GeneratedRequestIds::Get().Take(context_);
        request_id_ = given.has_value() ? *std::move(given) : NewRequestId();
      }
      methods->GetSendTrailingMetadata()->emplace(std::string(kRequestIdKey), request_id_);
      Log(methods->GetSendStatus());
    }
    methods->Proceed();
  }

 private:
  void Log(const grpc::Status& status) const {
    const double duration_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
            .count();
    const auto code = static_cast<absl::StatusCode>(status.error_code());
    // Codes that mean the server failed are errors; the rest are the caller's business. Reads
    // that succeed in good time are debug: at thousands a second they would drown the info log
    // (and cost a good part of a cached read); writes, refusals, failures and slow calls are info.
    log::Level level = log::Level::kInfo;
    if (code == absl::StatusCode::kInternal || code == absl::StatusCode::kUnknown ||
        code == absl::StatusCode::kDataLoss) {
      level = log::Level::kError;
    } else if (status.ok() && duration_ms < kSlowCallMs && IsQuietWhenOk(method_)) {
      level = log::Level::kDebug;
    }
    if (!log::Enabled(level)) return;
    nlohmann::json fields = {
        {"method", method_},
        {"request_id", request_id_},
        {"code", absl::StatusCodeToString(code)},
        {"duration_ms", duration_ms},
        {"peer", context_->peer()},
    };
    if (!status.ok()) fields["error"] = status.error_message();
    log::Write(level, "rpc", std::move(fields));
  }

  grpc::ServerContextBase* const context_;
  const char* const method_;
  const bool single_request_;
  const std::chrono::steady_clock::time_point start_;
  std::string request_id_;    // the client's, until the status settles it
  bool status_sent_ = false;  // hooks of one call never run concurrently
  bool request_unparsable_ = false;
};

class LoggingInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new LoggingInterceptor(info);
  }
};

// grpc::Service does not expose its name, but BuildAndStart records the full name of every
// registered service (the list server reflection serves). This plugin copies that list at the
// end of BuildAndStart; ServerBuilderOption is the builder's hook for adding a plugin instance.
class ServiceListPlugin final : public grpc::ServerBuilderPlugin {
 public:
  explicit ServiceListPlugin(std::vector<std::string>* names) : names_(names) {}
  std::string name() override { return "dangjian_service_list"; }
  void InitServer(grpc::ServerInitializer* /*si*/) override {}
  void Finish(grpc::ServerInitializer* si) override { *names_ = *si->GetServiceList(); }
  void ChangeArguments(const std::string& /*name*/, void* /*value*/) override {}

 private:
  std::vector<std::string>* const names_;
};

class ServiceListOption final : public grpc::ServerBuilderOption {
 public:
  explicit ServiceListOption(std::vector<std::string>* names) : names_(names) {}
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->push_back(std::make_unique<ServiceListPlugin>(names_));
  }

 private:
  std::vector<std::string>* const names_;
};

int ToMillisArg(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 0, INT_MAX));
}

absl::StatusOr<std::string> ReadFile(absl::string_view what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " ", path));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " ", path));
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is empty"));
  return text;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const ServerOptions& options) {
  const bool has_cert = !options.tls_cert_file.empty();
  const bool has_key = !options.tls_key_file.empty();
  if (has_cert != has_key) {
    return absl::InvalidArgumentError("tls_cert_file and tls_key_file must be given together");
  }
  if (!has_cert) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError("tls_client_ca_file needs tls_cert_file and tls_key_file");
    }
    // Plaintext is for local development only.
    if (!IsLoopbackAddress(options.address)) {
      return absl::FailedPreconditionError(
          absl::StrCat("TLS is required to listen on ", options.address,
                       ", which is not a loopback address: give tls_cert_file and tls_key_file"));
    }
    return grpc::InsecureServerCredentials();
  }
  auto cert = ReadFile("tls_cert_file", options.tls_cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadFile("tls_key_file", options.tls_key_file);
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.tls_client_ca_file.empty()) {
    auto ca = ReadFile("tls_client_ca_file", options.tls_client_ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

bool IsPort(absl::string_view text) {
  return !text.empty() && text.size() <= 5 && std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceHost>> ServiceHost::Start(
    const ServerOptions& options, const std::vector<grpc::Service*>& services,
    prometheus::Registry& registry, std::function<bool()> ready) {
  auto credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();
  for (grpc::Service* service : services) {
    if (service == nullptr) return absl::InvalidArgumentError("a service is null");
  }

  // Both are process-wide switches read by every ServerBuilder made afterwards.
  static std::once_flag global_setup;
  std::call_once(global_setup, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    // Reflection serves descriptors from the generated pool, where gRPC's own health service has
    // none; naming a message of common/proto/grpc/health/v1/health.proto links that file (and its
    // descriptor) into every server, so reflection clients can call grpc.health.v1.Health too.
    grpc::health::v1::HealthCheckRequest::descriptor();
  });

  std::unique_ptr<ServiceHost> host(new ServiceHost());
  host->options_ = options;
  host->ready_ = std::move(ready);

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, *std::move(credentials), &host->port_);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillisArg(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillisArg(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ToMillisArg(options.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             ToMillisArg(options.max_connection_idle));
  // gRPC sets SO_REUSEPORT by default, which would let a second instance (an old one still
  // running, say) silently share the port; a taken port must fail the start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<std::string> registered_names;
  builder.SetOption(std::make_unique<ServiceListOption>(&registered_names));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<LoggingInterceptorFactory>());
  g_request_id_interceptor.store(true);
  interceptors.push_back(metrics::NewServerMetricsInterceptor(registry));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  host->server_ = builder.BuildAndStart();
  if (host->server_ == nullptr || host->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.address));
  }
  if (host->server_->GetHealthCheckService() == nullptr) {
    return absl::InternalError("the gRPC health service is missing");
  }
  for (std::string& name : registered_names) {
    if (!absl::StartsWith(name, "grpc.")) host->service_names_.push_back(std::move(name));
  }
  if (!options.health_address.empty()) {
    grpc::ServerBuilder health_builder;
    health_builder.AddListeningPort(options.health_address, grpc::InsecureServerCredentials(),
                                    &host->health_port_);
    health_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    host->health_server_ = health_builder.BuildAndStart();
    if (host->health_server_ == nullptr || host->health_port_ == 0 ||
        host->health_server_->GetHealthCheckService() == nullptr) {
      return absl::UnavailableError(  // ~ServiceHost stops the main server
          absl::StrCat("cannot listen on health_address ", options.health_address));
    }
  }

  // The default health service starts with "" SERVING; correct that before returning, so callers
  // never see SERVING from a host whose readiness check fails.
  {
    absl::MutexLock lock(&host->health_mu_);
    host->SetHealthLocked(false);
    host->server_->GetHealthCheckService()->SetServingStatus(kLivenessService, true);
    if (host->health_server_ != nullptr) {
      host->health_server_->GetHealthCheckService()->SetServingStatus(kLivenessService, true);
    }
  }
  host->CheckReadiness();
  host->readiness_thread_ = std::thread([h = host.get()] { h->ReadinessLoop(); });
  log::Info("server started", {{"address", options.address},
                               {"port", host->port_},
                               {"health_port", host->health_port_},
                               {"tls", !options.tls_cert_file.empty()},
                               {"services", absl::StrJoin(host->service_names_, ",")},
                               {"serving", host->serving()}});
  return host;
}

ServiceHost::~ServiceHost() { Shutdown(); }

void ServiceHost::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    if (server_ != nullptr) {
      const absl::Time begin = absl::Now();
      {
        absl::MutexLock lock(&health_mu_);
        draining_.store(true);
        SetHealthLocked(false);
      }
      if (options_.shutdown_delay > absl::ZeroDuration()) {
        // Still listening and serving: only the health answer has changed.
        log::Info("server not serving; closing the listener after the delay",
                  {{"delay_ms", absl::ToInt64Milliseconds(options_.shutdown_delay)}});
        delay_over_.WaitForNotificationWithTimeout(options_.shutdown_delay);
      }
      log::Info("server draining",
                {{"grace_ms", absl::ToInt64Milliseconds(options_.shutdown_grace)}});
      // Stops accepting calls, lets in-flight ones finish until the deadline, then cancels them;
      // returns once every call is done. The grace counts from here, after the delay.
      server_->Shutdown(absl::ToChronoTime(absl::Now() + options_.shutdown_grace));
      server_->Wait();
      // Probes saw NOT_SERVING throughout the drain; the health listener goes last.
      if (health_server_ != nullptr) {
        health_server_->Shutdown(absl::ToChronoTime(absl::Now()));
        health_server_->Wait();
      }
      log::Info("server stopped", {{"drain_ms", absl::ToDoubleMilliseconds(absl::Now() - begin)}});
    }
    stop_.Notify();
    if (readiness_thread_.joinable()) readiness_thread_.join();
  });
}

void ServiceHost::EndShutdownDelay() {
  // absl::Notification must be notified once only.
  std::call_once(delay_over_once_, [this] { delay_over_.Notify(); });
}

void ServiceHost::ReadinessLoop() {
  const absl::Duration interval = std::max(options_.readiness_interval, kMinReadinessInterval);
  while (!stop_.WaitForNotificationWithTimeout(interval)) CheckReadiness();
}

void ServiceHost::CheckReadiness() {
  bool is_ready = true;
  if (ready_) {
    try {
      is_ready = ready_();
    } catch (const std::exception& e) {
      log::Warn("readiness check threw", {{"error", e.what()}});
      is_ready = false;
    } catch (...) {
      log::Warn("readiness check threw");
      is_ready = false;
    }
  }
  absl::MutexLock lock(&health_mu_);
  // The default health service pushes every update to its watchers, so publish changes only.
  if (draining_.load() || is_ready == serving_.load()) return;
  log::Info(is_ready ? "readiness check passes: serving" : "readiness check fails: not serving");
  SetHealthLocked(is_ready);
}

void ServiceHost::SetHealthLocked(bool serving) {
  // serving_ first, so whoever sees the new status on the wire also sees it in serving().
  serving_.store(serving);
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", serving);
  for (const std::string& name : service_names_) health->SetServingStatus(name, serving);
  if (health_server_ != nullptr) {
    grpc::HealthCheckServiceInterface* probe = health_server_->GetHealthCheckService();
    probe->SetServingStatus("", serving);
    for (const std::string& name : service_names_) probe->SetServingStatus(name, serving);
  }
}

namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void BlockShutdownSignals() {
  const sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForShutdownSignal() {
  const sigset_t set = ShutdownSignals();
  int signal = 0;
  // sigwait fails only for an invalid set; treat that as a request to stop rather than hang.
  if (sigwait(&set, &signal) != 0) return SIGTERM;
  return signal;
}

int WaitForShutdownSignalFor(absl::Duration timeout) {
  const sigset_t set = ShutdownSignals();
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    const timespec wait = absl::ToTimespec(left);
    const int signal = sigtimedwait(&set, nullptr, &wait);
    if (signal > 0) return signal;
    // EAGAIN: the time is up. EINTR: another signal's handler ran; wait out the rest.
    if (errno != EINTR) return errno == EAGAIN ? 0 : SIGTERM;
  }
}

bool IsLoopbackAddress(const std::string& address) {
  absl::string_view host = address;
  if (!absl::ConsumePrefix(&host, "ipv4:")) absl::ConsumePrefix(&host, "ipv6:");
  if (absl::ConsumePrefix(&host, "[")) {
    // "[::1]:port" or "[::1]"
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) return false;
    absl::string_view rest = host.substr(close + 1);
    if (!rest.empty() && !(absl::ConsumePrefix(&rest, ":") && IsPort(rest))) return false;
    host = host.substr(0, close);
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    // "host:port"; more colons without brackets can only be a bare IPv6 literal.
    const size_t colon = host.find(':');
    if (!IsPort(host.substr(colon + 1))) return false;
    host = host.substr(0, colon);
  }
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  const std::string literal(host);
  in_addr v4;
  if (inet_pton(AF_INET, literal.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, literal.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;  // ::ffff:127.x.y.z
  }
  return false;
}

std::string RequestIdOf(const grpc::ServerContextBase& context) {
  if (std::optional<std::string> id = ClientRequestId(context.client_metadata())) return *id;
  // Without ServiceHost's interceptor nothing would take a generated id out of the map again.
  if (!g_request_id_interceptor.load(std::memory_order_relaxed)) return "";
  return GeneratedRequestIds::Get().FindOrCreate(&context);
}

}  // namespace dangjian
