#include "common/grpc_metrics.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/status.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>

#include <array>
#include <atomic>
#include <chrono>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"

namespace dangjian::metrics {
namespace {

using grpc::experimental::InterceptionHookPoints;
using Clock = std::chrono::steady_clock;

// One more than the largest canonical code (UNAUTHENTICATED = 16).
constexpr int kNumCodes = 17;
// grpc_code values as go-grpc-prometheus writes them (Go's codes.Code.String()), so dashboards
// and alert rules written for other gRPC services work on ours unchanged. Indexed by code number.
constexpr const char* kCodeNames[] = {
    "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated"};
static_assert(sizeof(kCodeNames) / sizeof(kCodeNames[0]) == kNumCodes,
              "one name per canonical code");

// The families of one side (server or client), named `grpc_<side>_...`.
struct Families {
  Families(prometheus::Registry& registry, const std::string& side)
      : started(prometheus::BuildCounter()
                    .Name("grpc_" + side + "_started_total")
                    .Help("Total number of RPCs started on the " + side + ".")
                    .Register(registry)),
        handled(prometheus::BuildCounter()
                    .Name("grpc_" + side + "_handled_total")
                    .Help("Total number of RPCs completed on the " + side +
                          ", regardless of success or failure.")
                    .Register(registry)),
        handling_seconds(prometheus::BuildHistogram()
                             .Name("grpc_" + side + "_handling_seconds")
                             .Help("Histogram of response latency (seconds) of gRPC that had "
                                   "been application-level handled by the " +
                                   side + ".")
                             .Register(registry)),
        msg_received(prometheus::BuildCounter()
                         .Name("grpc_" + side + "_msg_received_total")
                         .Help("Total number of RPC stream messages received on the " + side + ".")
                         .Register(registry)),
        msg_sent(prometheus::BuildCounter()
                     .Name("grpc_" + side + "_msg_sent_total")
                     .Help("Total number of gRPC stream messages sent by the " + side + ".")
                     .Register(registry)) {}

  prometheus::Family<prometheus::Counter>& started;
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling_seconds;
  prometheus::Family<prometheus::Counter>& msg_received;
  prometheus::Family<prometheus::Counter>& msg_sent;
};

// The children of one method, created once and then shared by every call of that method.
class MethodMetrics {
 public:
  MethodMetrics(Families& families, const prometheus::Labels& labels)
      : started(families.started.Add(labels)),
        handling_seconds(families.handling_seconds.Add(labels, LatencyBuckets())),
        msg_received(families.msg_received.Add(labels)),
        msg_sent(families.msg_sent.Add(labels)),
        families_(families),
        labels_(labels) {}

  // The handled counter for `code`, created on first use. Racing first uses are harmless:
  // Family::Add returns the existing child for the same labels.
  prometheus::Counter& Handled(grpc::StatusCode code) {
    int index = static_cast<int>(code);
    if (index < 0 || index >= kNumCodes) index = static_cast<int>(grpc::StatusCode::UNKNOWN);
    prometheus::Counter* counter = handled_[index].load(std::memory_order_acquire);
    if (counter == nullptr) {
      prometheus::Labels labels = labels_;
      labels["grpc_code"] = kCodeNames[index];
      counter = &families_.handled.Add(labels);
      handled_[index].store(counter, std::memory_order_release);
    }
    return *counter;
  }

  prometheus::Counter& started;
  prometheus::Histogram& handling_seconds;
  prometheus::Counter& msg_received;
  prometheus::Counter& msg_sent;

 private:
  Families& families_;
  const prometheus::Labels labels_;
  std::array<std::atomic<prometheus::Counter*>, kNumCodes> handled_{};
};

// The go-grpc-prometheus grpc_type values, indexed by RpcMethod::RpcType (both ServerRpcInfo::Type
// and ClientRpcInfo::Type use that numbering); anything else is "unknown".
std::string TypeName(int type) {
  switch (type) {
    case 0:
      return "unary";
    case 1:
      return "client_stream";
    case 2:
      return "server_stream";
    case 3:
      return "bidi_stream";
    default:
      return "unknown";
  }
}

// Whether `method` ("/pkg.Service/Method") is one this binary can serve: a method of a service
// compiled in (the generated descriptor pool, which holds our services and gRPC's reflection) or
// of the standard health service (which gRPC implements without a generated descriptor).
bool IsKnownMethod(absl::string_view method) {
  if (!absl::ConsumePrefix(&method, "/")) return false;
  if (method == "grpc.health.v1.Health/Check" || method == "grpc.health.v1.Health/Watch") {
    return true;
  }
  const size_t slash = method.rfind('/');
  if (slash == absl::string_view::npos) return false;
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
             absl::StrCat(method.substr(0, slash), ".", method.substr(slash + 1))) != nullptr;
}

// Caches MethodMetrics by (type, method): looking children up by labels hashes and compares label
// maps under the family's lock, which is too much for every call. On the server, a method no
// service of the binary has (any caller can send any path, and gRPC answers UNIMPLEMENTED) is
// counted under grpc_service="unknown", grpc_method="unknown", grpc_type="unknown", and not
// remembered by name: callers cannot grow the series or this cache.
class MethodCache {
 public:
  MethodCache(prometheus::Registry& registry, const std::string& side, bool collapse_unknown)
      : families_(registry, side), collapse_unknown_(collapse_unknown) {}

  MethodMetrics& Get(const char* method, int type) {
    absl::string_view full(method == nullptr ? "" : method);
    const size_t index = type >= 0 && type < kNumTypes ? static_cast<size_t>(type) : kNumTypes;
    {
      absl::ReaderMutexLock lock(&mu_);
      // Heterogeneous lookup: the per-call path builds no string.
      auto it = methods_[index].find(full);
      if (it != methods_[index].end()) return *it->second;
    }
    const bool known = !collapse_unknown_ || IsKnownMethod(full);
    absl::MutexLock lock(&mu_);
    if (!known) {
      if (unknown_ == nullptr) {
        unknown_ = std::make_unique<MethodMetrics>(
            families_,
            prometheus::Labels{
                {"grpc_service", "unknown"}, {"grpc_method", "unknown"}, {"grpc_type", "unknown"}});
      }
      return *unknown_;
    }
    auto& slot = methods_[index][full];
    if (slot == nullptr) {
      // "/dangjian.registry.v1.OrgRegistry/GetOrg" -> service and method.
      absl::string_view trimmed = absl::StripPrefix(full, "/");
      const size_t slash = trimmed.rfind('/');
      absl::string_view service =
          slash == absl::string_view::npos ? "unknown" : trimmed.substr(0, slash);
      absl::string_view name =
          slash == absl::string_view::npos ? trimmed : trimmed.substr(slash + 1);
      slot = std::make_unique<MethodMetrics>(
          families_, prometheus::Labels{{"grpc_service", std::string(service)},
                                        {"grpc_method", std::string(name)},
                                        {"grpc_type", TypeName(type)}});
    }
    return *slot;
  }

 private:
  // Unary, client, server and bidi streaming, plus one slot for anything else.
  static constexpr int kNumTypes = 4;

  Families families_;
  const bool collapse_unknown_;
  absl::Mutex mu_;
  std::array<absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>>, kNumTypes + 1>
      methods_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<MethodMetrics> unknown_ ABSL_GUARDED_BY(mu_);
};

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One per server call. Counts started on creation, messages at each hook, handled and latency
// when the status goes out; a call torn down without a status (never expected with the callback
// API, which always finishes) is counted as CANCELLED so started and handled stay balanced.
class ServerMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ServerMetricsInterceptor(MethodMetrics& metrics)
      : metrics_(metrics), start_(Clock::now()) {
    metrics_.started.Increment();
  }
  ~ServerMetricsInterceptor() override {
    if (!handled_) Finish(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {  // null: the client half-closed
      metrics_.msg_received.Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      metrics_.msg_sent.Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) && !handled_) {
      Finish(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Finish(grpc::StatusCode code) {
    handled_ = true;
    metrics_.Handled(code).Increment();
    metrics_.handling_seconds.Observe(SecondsSince(start_));
  }

  MethodMetrics& metrics_;
  const Clock::time_point start_;
  bool handled_ = false;  // hooks of one call never run concurrently
};

class ServerMetricsFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ServerMetricsFactory(prometheus::Registry& registry)
      : cache_(registry, "server", /*collapse_unknown=*/true) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ServerMetricsInterceptor(cache_.Get(info->method(), static_cast<int>(info->type())));
  }

 private:
  MethodCache cache_;
};

// One per client call; handled and latency are recorded when the status arrives.
class ClientMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ClientMetricsInterceptor(MethodMetrics& metrics)
      : metrics_(metrics), start_(Clock::now()) {
    metrics_.started.Increment();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      metrics_.msg_sent.Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {  // null: end of the server's stream
      metrics_.msg_received.Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      const grpc::Status* status = methods->GetRecvStatus();
      metrics_.Handled(status == nullptr ? grpc::StatusCode::UNKNOWN : status->error_code())
          .Increment();
      metrics_.handling_seconds.Observe(SecondsSince(start_));
    }
    methods->Proceed();
  }

 private:
  MethodMetrics& metrics_;
  const Clock::time_point start_;
};

class ClientMetricsFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  // A client calls only the methods of the stubs it was built with: no collapsing needed.
  explicit ClientMetricsFactory(prometheus::Registry& registry)
      : cache_(registry, "client", /*collapse_unknown=*/false) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new ClientMetricsInterceptor(cache_.Get(info->method(), static_cast<int>(info->type())));
  }

 private:
  MethodCache cache_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewServerMetricsInterceptor(
    prometheus::Registry& registry) {
  return std::make_unique<ServerMetricsFactory>(registry);
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> NewClientMetricsInterceptor(
    prometheus::Registry& registry) {
  return std::make_unique<ClientMetricsFactory>(registry);
}

}  // namespace dangjian::metrics
