// ServiceHost (common/server.h) end to end on loopback: health follows readiness and draining,
// reflection lists the services, calls are counted and logged with a request id, TLS is enforced
// off loopback and works on it, and Shutdown drains in-flight calls before it returns.
//
// The client side of grpc.health.v1 and grpc.reflection.v1alpha is spoken through the generic
// stub with hand-encoded messages: Debian ships neither proto nor a client helper for them.
#include "common/server.h"

#include <gmock/gmock.h>
#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <prometheus/registry.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/testing/harness.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"
#include "tests/common/raw_call.h"

namespace dangjian {
namespace {

using registry::v1::DissolveOrgRequest;
using registry::v1::GetOrgRequest;
using registry::v1::Org;
using registry::v1::OrgRegistry;
using ::testing::Contains;
using ::testing::MatchesRegex;

constexpr char kRegistryService[] = "dangjian.registry.v1.OrgRegistry";
constexpr int64_t kSlowOrgId = 99;
constexpr int64_t kMissingOrgId = 404;
// grpc.health.v1.HealthCheckResponse.ServingStatus
constexpr uint64_t kServing = 1;
constexpr uint64_t kNotServing = 2;

// GetOrg answers at once, except for kSlowOrgId, which waits until ReleaseSlow() (or until the
// call is cancelled). Records the request id each handler saw.
class TestRegistry final : public OrgRegistry::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetOrg(grpc::CallbackServerContext* context,
                                   const GetOrgRequest* request, Org* response) override {
    {
      absl::MutexLock lock(&mu_);
      seen_request_ids_.push_back(RequestIdOf(*context));
    }
    if (request->id() == kMissingOrgId) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such org"));
      return reactor;
    }
    if (request->id() != kSlowOrgId) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      response->set_id(request->id());
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    response->set_id(kSlowOrgId);
    auto* reactor = new SlowReactor(this);
    absl::MutexLock lock(&mu_);
    slow_ = reactor;
    return reactor;
  }

  // A mutating method (the .proto does not mark it free of side effects).
  grpc::ServerUnaryReactor* DissolveOrg(grpc::CallbackServerContext* context,
                                        const DissolveOrgRequest* request, Org* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    response->set_id(request->id());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  bool slow_call_pending() const {
    absl::MutexLock lock(&mu_);
    return slow_ != nullptr;
  }
  void ReleaseSlow() {
    absl::MutexLock lock(&mu_);
    if (slow_ != nullptr) slow_->FinishOnce(grpc::Status::OK);
  }
  std::vector<std::string> seen_request_ids() const {
    absl::MutexLock lock(&mu_);
    return seen_request_ids_;
  }

 private:
  class SlowReactor final : public grpc::ServerUnaryReactor {
   public:
    explicit SlowReactor(TestRegistry* owner) : owner_(owner) {}
    void FinishOnce(const grpc::Status& status) {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      Finish(status);
    }
    void OnCancel() override { FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")); }
    void OnDone() override {
      {
        absl::MutexLock lock(&owner_->mu_);
        if (owner_->slow_ == this) owner_->slow_ = nullptr;
      }
      delete this;
    }

   private:
    TestRegistry* const owner_;
    absl::Mutex mu_;
    bool finished_ = false;
  };

  mutable absl::Mutex mu_;
  SlowReactor* slow_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<std::string> seen_request_ids_ ABSL_GUARDED_BY(mu_);
};

using testing::BytesFields;
using testing::RawCall;
using testing::StringField;
using testing::VarintField;

// grpc.health.v1.Health/Check: the status, or nullopt if the call failed.
std::optional<uint64_t> HealthOf(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& service) {
  RawCall call(channel, "/grpc.health.v1.Health/Check");
  if (!call.Write(StringField(1, service)) || !call.WritesDone()) return std::nullopt;
  std::optional<std::string> response = call.Read();
  if (!call.Finish().ok() || !response.has_value()) return std::nullopt;
  return VarintField(*response, 1);
}

// The status in the next message of a grpc.health.v1 Watch (nullopt once the stream ended).
std::optional<uint64_t> NextStatus(RawCall& watch) {
  std::optional<std::string> message = watch.Read();
  if (!message.has_value()) return std::nullopt;
  return VarintField(*message, 1);
}

// Every service name server reflection lists.
std::vector<std::string> ReflectedServices(const std::shared_ptr<grpc::Channel>& channel) {
  std::vector<std::string> names;
  RawCall call(channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  // ServerReflectionRequest{list_services: ""} (field 7).
  if (!call.Write(StringField(7, "")) || !call.WritesDone()) return names;
  std::optional<std::string> response = call.Read();
  call.Finish();
  if (!response.has_value()) return names;
  // ServerReflectionResponse.list_services_response (6) -> ListServiceResponse.service (1)
  // -> ServiceResponse.name (1).
  for (const std::string& list : BytesFields(*response, 6)) {
    for (const std::string& service : BytesFields(list, 1)) {
      for (const std::string& name : BytesFields(service, 1)) names.push_back(name);
    }
  }
  return names;
}

std::optional<double> CounterValue(const prometheus::Registry& registry, const std::string& name,
                                   const std::string& method, const std::string& code) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      bool method_matches = false;
      bool code_matches = code.empty();
      for (const auto& label : metric.label) {
        if (label.name == "grpc_method" && label.value == method) method_matches = true;
        if (label.name == "grpc_code" && label.value == code) code_matches = true;
      }
      if (method_matches && code_matches) return metric.counter.value;
    }
  }
  return std::nullopt;
}

class ServiceHostTest : public ::testing::Test {
 protected:
  ServerOptions Options() const {
    ServerOptions options;
    options.service_name = "test";
    options.address = "127.0.0.1:0";
    options.readiness_interval = absl::Milliseconds(20);
    options.shutdown_grace = absl::Seconds(30);
    return options;
  }

  void StartHost(const ServerOptions& options) {
    auto host =
        ServiceHost::Start(options, {&service_}, registry_, [this] { return ready_.load(); });
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);
    ASSERT_GT(host_->port(), 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(host_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = OrgRegistry::NewStub(channel_);
  }

  grpc::Status GetOrg(int64_t id, grpc::ClientContext& context,
                      absl::Duration timeout = absl::Seconds(10)) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    GetOrgRequest request;
    request.set_id(id);
    Org org;
    return stub_->GetOrg(&context, request, &org);
  }

  // Runs host_->Shutdown() on a thread of its own; shutdown_done_ is notified when it returns.
  void StartShutdown() {
    shutdown_thread_ = std::thread([this] {
      host_->Shutdown();
      shutdown_done_.Notify();
    });
  }
  void TearDown() override {
    if (!shutdown_thread_.joinable()) return;
    host_->EndShutdownDelay();  // should the test have stopped before it ended the delay
    shutdown_thread_.join();
  }

  static std::string TrailerRequestId(const grpc::ClientContext& context) {
    const auto& trailers = context.GetServerTrailingMetadata();
    auto it = trailers.find("x-request-id");
    if (it == trailers.end()) return "";
    return std::string(it->second.data(), it->second.size());
  }

  TestRegistry service_;
  prometheus::Registry registry_;
  std::atomic<bool> ready_{true};
  std::unique_ptr<ServiceHost> host_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<OrgRegistry::Stub> stub_;
  absl::Notification shutdown_done_;
  std::thread shutdown_thread_;
};

TEST(IsLoopbackAddressTest, AcceptsLoopbackForms) {
  for (const char* address :
       {"127.0.0.1:50051", "127.3.4.5:1", "[::1]:50051", "localhost:0", "LOCALHOST:8080",
        "127.0.0.1", "[::1]", "::1", "[::ffff:127.0.0.1]:80", "ipv4:127.0.0.1:9"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
}

TEST(IsLoopbackAddressTest, RejectsEverythingElse) {
  for (const char* address : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051", "128.0.0.1:1",
                              "localhost.example.com:1", "127.0.0.1.nip.io:80", "127.0.0.1:port",
                              "127.0.0.1:", "[::1", "", "unix:/tmp/sock", "[::2]:80", "::"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST_F(ServiceHostTest, Start_RefusesPlaintextOffLoopback) {
  for (const char* address : {"0.0.0.0:0", "[::]:0", "10.1.2.3:50051"}) {
    ServerOptions options = Options();
    options.address = address;
    auto host = ServiceHost::Start(options, {&service_}, registry_, [] { return true; });
    ASSERT_FALSE(host.ok()) << address;
    EXPECT_EQ(host.status().code(), absl::StatusCode::kFailedPrecondition) << address;
    EXPECT_TRUE(absl::StrContains(host.status().message(), "TLS")) << host.status();
  }
}

TEST_F(ServiceHostTest, Start_RefusesCertificateWithoutKey) {
  ServerOptions options = Options();
  options.tls_cert_file = "/nonexistent/cert.pem";
  auto host = ServiceHost::Start(options, {&service_}, registry_, [] { return true; });
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ServiceHostTest, Start_RefusesUnreadableCertificate) {
  ServerOptions options = Options();
  options.tls_cert_file = "/nonexistent/cert.pem";
  options.tls_key_file = "/nonexistent/key.pem";
  auto host = ServiceHost::Start(options, {&service_}, registry_, [] { return true; });
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(host.status().message(), "tls_cert_file")) << host.status();
}

TEST_F(ServiceHostTest, Start_FailsWhenThePortIsTaken) {
  StartHost(Options());
  ServerOptions options = Options();
  options.address = "127.0.0.1:" + std::to_string(host_->port());
  TestRegistry other_service;
  auto second = ServiceHost::Start(options, {&other_service}, registry_, [] { return true; });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(second.status().message(), options.address)) << second.status();
}

TEST_F(ServiceHostTest, Health_ServingWhileReadyAndNotServingWhenReadinessFails) {
  StartHost(Options());
  EXPECT_EQ(HealthOf(channel_, ""), kServing);
  EXPECT_EQ(HealthOf(channel_, kRegistryService), kServing);
  EXPECT_TRUE(host_->serving());

  ready_ = false;
  EXPECT_TRUE(
      testing::PollUntil([&] { return HealthOf(channel_, "") == kNotServing; }, absl::Seconds(10)));
  EXPECT_EQ(HealthOf(channel_, kRegistryService), kNotServing);
  EXPECT_FALSE(host_->serving());

  ready_ = true;
  EXPECT_TRUE(testing::PollUntil([&] { return HealthOf(channel_, kRegistryService) == kServing; },
                                 absl::Seconds(10)));
}

TEST_F(ServiceHostTest, Health_NotServingFromTheStartWhenNotReady) {
  ready_ = false;
  StartHost(Options());
  // No polling: Start must not return while the default health service still says SERVING.
  EXPECT_EQ(HealthOf(channel_, ""), kNotServing);
  EXPECT_EQ(HealthOf(channel_, kRegistryService), kNotServing);
  EXPECT_FALSE(host_->serving());
}

TEST_F(ServiceHostTest, Health_LivenessServesWhileNotReady) {
  ready_ = false;
  StartHost(Options());
  EXPECT_EQ(HealthOf(channel_, kRegistryService), kNotServing);
  EXPECT_EQ(HealthOf(channel_, kLivenessService), kServing);

  ready_ = true;
  ASSERT_TRUE(testing::PollUntil([&] { return HealthOf(channel_, kRegistryService) == kServing; },
                                 absl::Seconds(10)));
  ready_ = false;
  ASSERT_TRUE(testing::PollUntil(
      [&] { return HealthOf(channel_, kRegistryService) == kNotServing; }, absl::Seconds(10)));
  EXPECT_EQ(HealthOf(channel_, kLivenessService), kServing);
}

TEST_F(ServiceHostTest, Health_UnknownServiceIsNotFound) {
  StartHost(Options());
  RawCall call(channel_, "/grpc.health.v1.Health/Check");
  ASSERT_TRUE(call.Write(StringField(1, "no.such.Service")));
  ASSERT_TRUE(call.WritesDone());
  call.Read();
  EXPECT_EQ(call.Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceHostTest, Reflection_ListsRegisteredServices) {
  StartHost(Options());
  const std::vector<std::string> names = ReflectedServices(channel_);
  EXPECT_THAT(names, Contains(kRegistryService));
  EXPECT_THAT(names, Contains("grpc.health.v1.Health"));
}

TEST_F(ServiceHostTest, Metrics_CountCallsByMethodAndCode) {
  StartHost(Options());
  for (int64_t id : {1, 2}) {
    grpc::ClientContext context;
    ASSERT_TRUE(GetOrg(id, context).ok());
  }
  EXPECT_EQ(CounterValue(registry_, "grpc_server_started_total", "GetOrg", ""), 2.0);
  EXPECT_EQ(CounterValue(registry_, "grpc_server_handled_total", "GetOrg", "OK"), 2.0);
}

TEST_F(ServiceHostTest, RequestId_GeneratedWhenAbsentAndEchoedInTrailer) {
  StartHost(Options());
  grpc::ClientContext first;
  ASSERT_TRUE(GetOrg(1, first).ok());
  grpc::ClientContext second;
  ASSERT_TRUE(GetOrg(2, second).ok());

  const std::string first_id = TrailerRequestId(first);
  EXPECT_THAT(first_id, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(first_id, TrailerRequestId(second));
  // The handler saw the same id through RequestIdOf.
  EXPECT_EQ(service_.seen_request_ids(),
            (std::vector<std::string>{first_id, TrailerRequestId(second)}));
}

TEST_F(ServiceHostTest, RequestId_ClientIdIsKeptAndEchoed) {
  StartHost(Options());
  grpc::ClientContext context;
  context.AddMetadata("x-request-id", "import-2024-07-01.row-17");
  ASSERT_TRUE(GetOrg(1, context).ok());
  EXPECT_EQ(TrailerRequestId(context), "import-2024-07-01.row-17");
  EXPECT_EQ(service_.seen_request_ids(), std::vector<std::string>{"import-2024-07-01.row-17"});
}

TEST_F(ServiceHostTest, RequestId_OverlongClientIdIsReplaced) {
  StartHost(Options());
  grpc::ClientContext context;
  context.AddMetadata("x-request-id", std::string(500, 'a'));
  ASSERT_TRUE(GetOrg(1, context).ok());
  const std::string id = TrailerRequestId(context);
  EXPECT_THAT(id, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(service_.seen_request_ids(), std::vector<std::string>{id});
}

// The access-log lines of `captured` (stderr) that mention `request_id`.
std::vector<nlohmann::json> LinesOf(const std::string& captured, absl::string_view request_id) {
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(captured, '\n')) {
    if (!absl::StrContains(line, request_id)) continue;
    lines.push_back(nlohmann::json::parse(line.begin(), line.end()));
  }
  return lines;
}

TEST_F(ServiceHostTest, Logging_SuccessfulReadIsOneDebugLine) {
  StartHost(Options());
  {
    // At info, a read that succeeds in good time writes nothing (GetOrg is NO_SIDE_EFFECTS).
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "log-line-test-0");
    ::testing::internal::CaptureStderr();
    ASSERT_TRUE(GetOrg(1, context).ok());
    const std::string captured = ::testing::internal::GetCapturedStderr();
    EXPECT_TRUE(LinesOf(captured, "log-line-test-0").empty()) << captured;
  }
  log::Init("dangjian", log::Level::kDebug);
  grpc::ClientContext context;
  context.AddMetadata("x-request-id", "log-line-test-1");
  ::testing::internal::CaptureStderr();
  const grpc::Status status = GetOrg(1, context);
  const std::string captured = ::testing::internal::GetCapturedStderr();
  log::Init("dangjian", log::Level::kInfo);
  ASSERT_TRUE(status.ok());

  const std::vector<nlohmann::json> lines = LinesOf(captured, "log-line-test-1");
  ASSERT_EQ(lines.size(), 1u) << captured;
  const nlohmann::json& line = lines[0];
  EXPECT_EQ(line["level"], "debug");
  EXPECT_EQ(line["method"], "/dangjian.registry.v1.OrgRegistry/GetOrg");
  EXPECT_EQ(line["request_id"], "log-line-test-1");
  EXPECT_EQ(line["code"], "OK");
  EXPECT_TRUE(line["duration_ms"].is_number());
  EXPECT_THAT(line["peer"].get<std::string>(), ::testing::HasSubstr("127.0.0.1"));
}

TEST_F(ServiceHostTest, Logging_FailedReadsAndWritesAreInfo) {
  StartHost(Options());
  grpc::ClientContext read_context;
  read_context.AddMetadata("x-request-id", "log-line-test-2");
  grpc::ClientContext write_context;
  write_context.AddMetadata("x-request-id", "log-line-test-3");
  write_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  DissolveOrgRequest dissolve;
  dissolve.set_id(5);
  Org dissolved;
  ::testing::internal::CaptureStderr();
  const grpc::Status read_status = GetOrg(kMissingOrgId, read_context);
  const grpc::Status write_status = stub_->DissolveOrg(&write_context, dissolve, &dissolved);
  const std::string captured = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(read_status.error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(write_status.ok()) << write_status.error_message();

  const std::vector<nlohmann::json> read_lines = LinesOf(captured, "log-line-test-2");
  ASSERT_EQ(read_lines.size(), 1u) << captured;
  EXPECT_EQ(read_lines[0]["level"], "info");
  EXPECT_EQ(read_lines[0]["code"], "NOT_FOUND");
  EXPECT_EQ(read_lines[0]["error"], "no such org");
  const std::vector<nlohmann::json> write_lines = LinesOf(captured, "log-line-test-3");
  ASSERT_EQ(write_lines.size(), 1u) << captured;
  EXPECT_EQ(write_lines[0]["level"], "info");
  EXPECT_EQ(write_lines[0]["method"], "/dangjian.registry.v1.OrgRegistry/DissolveOrg");
  EXPECT_EQ(write_lines[0]["code"], "OK");
}

TEST_F(ServiceHostTest, Shutdown_DrainsInFlightCallAndReportsNotServing) {
  ServerOptions options = Options();
  options.health_address = "127.0.0.1:0";
  StartHost(options);
  auto probe = grpc::CreateChannel(absl::StrCat("127.0.0.1:", host_->health_port()),
                                   grpc::InsecureChannelCredentials());
  // A health watcher sees the drain begin.
  RawCall watch(channel_, "/grpc.health.v1.Health/Watch", absl::Seconds(30));
  ASSERT_TRUE(watch.Write(StringField(1, "")));
  ASSERT_TRUE(watch.WritesDone());
  ASSERT_EQ(NextStatus(watch), kServing);

  // A slow call is in flight when Shutdown starts.
  grpc::ClientContext slow_context;
  slow_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  GetOrgRequest request;
  request.set_id(kSlowOrgId);
  Org slow_response;
  grpc::Status slow_status;
  absl::Notification slow_done;
  stub_->async()->GetOrg(&slow_context, &request, &slow_response, [&](grpc::Status s) {
    slow_status = std::move(s);
    slow_done.Notify();
  });
  ASSERT_TRUE(testing::PollUntil([&] { return service_.slow_call_pending(); }, absl::Seconds(10)));

  StartShutdown();
  EXPECT_EQ(NextStatus(watch), kNotServing);
  EXPECT_FALSE(host_->serving());
  // The probes' listener outlives the drain and tells them: out of rotation, but alive (a
  // liveness probe must not have the pod killed mid-drain). It is updated just after the main one.
  EXPECT_TRUE(testing::PollUntil([&] { return HealthOf(probe, kRegistryService) == kNotServing; },
                                 absl::Seconds(10)));
  EXPECT_EQ(HealthOf(probe, kLivenessService), kServing);
  // The slow call still holds the drain open.
  EXPECT_FALSE(shutdown_done_.HasBeenNotified());
  EXPECT_FALSE(slow_done.HasBeenNotified());

  watch.Cancel();
  watch.Finish();
  service_.ReleaseSlow();
  EXPECT_TRUE(slow_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(slow_status.ok()) << slow_status.error_message();
  EXPECT_EQ(slow_response.id(), kSlowOrgId);
  EXPECT_TRUE(shutdown_done_.WaitForNotificationWithTimeout(absl::Seconds(10)));

  // Nothing is accepted any more: refused, as clients retry, not cancelled.
  grpc::ClientContext after;
  EXPECT_EQ(GetOrg(1, after, absl::Seconds(2)).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// With a shutdown delay, the host says NOT_SERVING at once but goes on serving until the delay
// ends: a client that follows health stops sending, and none of its calls meets a closing port.
// Calls after the close are refused with UNAVAILABLE (retried by clients), never CANCELLED.
TEST_F(ServiceHostTest, Shutdown_ServesThroughTheDelayWhileNotServing) {
  ServerOptions options = Options();
  options.health_address = "127.0.0.1:0";
  // Long enough never to end by itself here: the test ends it with EndShutdownDelay().
  options.shutdown_delay = absl::Minutes(10);
  StartHost(options);
  auto probe = grpc::CreateChannel(absl::StrCat("127.0.0.1:", host_->health_port()),
                                   grpc::InsecureChannelCredentials());
  // Watches the service's own name, which is updated after "" (and before the probe listener).
  RawCall watch(channel_, "/grpc.health.v1.Health/Watch", absl::Seconds(60));
  ASSERT_TRUE(watch.Write(StringField(1, kRegistryService)));
  ASSERT_TRUE(watch.WritesDone());
  ASSERT_EQ(NextStatus(watch), kServing);

  // A client that keeps calling until the health it watches says NOT_SERVING.
  std::atomic<bool> not_serving_seen{false};
  std::atomic<int> calls{0};
  std::vector<grpc::StatusCode> failures;
  std::thread client([&] {
    while (!not_serving_seen.load()) {
      grpc::ClientContext context;
      const grpc::Status status = GetOrg(1, context);
      ++calls;
      if (!status.ok()) failures.push_back(status.error_code());
    }
  });
  ASSERT_TRUE(testing::PollUntil([&] { return calls.load() > 0; }, absl::Seconds(10)));

  StartShutdown();
  EXPECT_EQ(NextStatus(watch), kNotServing);
  not_serving_seen = true;
  client.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " calls failed, the first with code "
                                << static_cast<int>(failures.front());

  // Within the delay: readiness NOT_SERVING on both listeners, liveness SERVING, and calls are
  // still served, on the open connection and on a new one.
  EXPECT_FALSE(host_->serving());
  EXPECT_EQ(HealthOf(channel_, ""), kNotServing);
  EXPECT_TRUE(testing::PollUntil([&] { return HealthOf(probe, kRegistryService) == kNotServing; },
                                 absl::Seconds(10)));
  EXPECT_EQ(HealthOf(probe, kLivenessService), kServing);
  grpc::ClientContext during;
  EXPECT_TRUE(GetOrg(1, during).ok());
  auto fresh = OrgRegistry::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", host_->port()),
                                                        grpc::InsecureChannelCredentials()));
  grpc::ClientContext fresh_context;
  fresh_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  GetOrgRequest request;
  request.set_id(2);
  Org org;
  EXPECT_TRUE(fresh->GetOrg(&fresh_context, request, &org).ok());
  EXPECT_EQ(org.id(), 2);
  EXPECT_FALSE(shutdown_done_.HasBeenNotified());

  watch.Cancel();
  watch.Finish();
  host_->EndShutdownDelay();
  EXPECT_TRUE(shutdown_done_.WaitForNotificationWithTimeout(absl::Seconds(30)));

  grpc::ClientContext after;
  EXPECT_EQ(GetOrg(1, after, absl::Seconds(2)).error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::ClientContext after_fresh;
  after_fresh.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  EXPECT_EQ(fresh->GetOrg(&after_fresh, request, &org).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServiceHostTest, Shutdown_CancelsWhatOutlivesTheGrace) {
  ServerOptions options = Options();
  options.shutdown_grace = absl::Milliseconds(200);
  StartHost(options);

  grpc::ClientContext slow_context;
  slow_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  GetOrgRequest request;
  request.set_id(kSlowOrgId);
  Org slow_response;
  grpc::Status slow_status;
  absl::Notification slow_done;
  stub_->async()->GetOrg(&slow_context, &request, &slow_response, [&](grpc::Status s) {
    slow_status = std::move(s);
    slow_done.Notify();
  });
  ASSERT_TRUE(testing::PollUntil([&] { return service_.slow_call_pending(); }, absl::Seconds(10)));

  const absl::Time begin = absl::Now();
  host_->Shutdown();  // never released: returns only because the grace ran out
  EXPECT_LT(absl::Now() - begin, absl::Seconds(10));
  EXPECT_TRUE(slow_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(slow_status.ok());
  host_->Shutdown();  // a second call returns at once
}

// A self-signed P-256 certificate for localhost and 127.0.0.1, written to files.
class TlsFiles {
 public:
  TlsFiles() {
    std::string dir_template = ::testing::TempDir() + "dj_tls_XXXXXX";
    char* dir = mkdtemp(dir_template.data());
    if (dir == nullptr) return;
    dir_ = dir;
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(cert, key, EVP_sha256());

    BIO* cert_bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(cert_bio, cert);
    cert_pem_ = BioText(cert_bio);
    BIO* key_bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    key_pem_ = BioText(key_bio);
    X509_free(cert);
    EVP_PKEY_free(key);

    std::ofstream(cert_file()) << cert_pem_;
    std::ofstream(key_file()) << key_pem_;
  }
  ~TlsFiles() {
    if (dir_.empty()) return;
    std::remove(cert_file().c_str());
    std::remove(key_file().c_str());
    rmdir(dir_.c_str());
  }

  bool ok() const { return !dir_.empty() && !cert_pem_.empty() && !key_pem_.empty(); }
  // Makes `options` serve TLS with this certificate and key.
  void ApplyTo(ServerOptions& options) const {
    options.tls_cert_file = cert_file();
    options.tls_key_file = key_file();
  }
  std::string cert_file() const { return dir_ + "/cert.pem"; }
  std::string key_file() const { return dir_ + "/key.pem"; }
  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }

 private:
  static std::string BioText(BIO* bio) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<size_t>(size));
    BIO_free(bio);
    return text;
  }

  std::string dir_;
  std::string cert_pem_;
  std::string key_pem_;
};

TEST_F(ServiceHostTest, Tls_ServesTlsClientsAndRefusesPlaintext) {
  TlsFiles tls;
  ASSERT_TRUE(tls.ok());
  ServerOptions options = Options();
  tls.ApplyTo(options);
  StartHost(options);
  // An IP target (matched against the IP SAN) keeps the DNS resolver out of the test.
  const std::string target = "127.0.0.1:" + std::to_string(host_->port());

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls.cert_pem();
  auto secure = grpc::CreateChannel(target, grpc::SslCredentials(ssl));
  EXPECT_EQ(HealthOf(secure, ""), kServing);

  // channel_ (plaintext, set up by StartHost) cannot talk to a TLS listener.
  EXPECT_EQ(HealthOf(channel_, ""), std::nullopt);
}

// dj-health (the containers' health probe) speaks TLS when given the CA, and only then.
TEST_F(ServiceHostTest, Tls_HealthCliProbesWithTheCaOnly) {
  TlsFiles tls;
  ASSERT_TRUE(tls.ok());
  ServerOptions options = Options();
  tls.ApplyTo(options);
  StartHost(options);
  const std::string probe =
      absl::StrCat(DJ_HEALTH_BIN, " --timeout 1s --target 127.0.0.1:", host_->port(),
                   " --service dangjian.registry.v1.OrgRegistry");
  auto exit_code = [](const std::string& command) {
    const int status = std::system((command + " >/dev/null 2>&1").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  // A negative probe waits out its 1 s deadline (the channel never becomes ready).
  EXPECT_EQ(exit_code(absl::StrCat(probe, " --timeout 5s --tls_ca_file ", tls.cert_file())), 0);
  EXPECT_EQ(exit_code(probe), 1) << "plaintext must not reach a TLS listener";
  // The certificate names 127.0.0.1, not this name: verification fails.
  EXPECT_EQ(exit_code(absl::StrCat(probe, " --tls_ca_file ", tls.cert_file(),
                                   " --tls_server_name other.example")),
            1);
  EXPECT_EQ(exit_code(absl::StrCat(probe, " --tls_ca_file /nonexistent/ca.pem")), 2);
}

TEST_F(ServiceHostTest, Tls_ClientCaRequiresClientCertificates) {
  TlsFiles tls;
  ASSERT_TRUE(tls.ok());
  ServerOptions options = Options();
  tls.ApplyTo(options);
  options.tls_client_ca_file = tls.cert_file();  // the self-signed certificate is its own CA
  StartHost(options);
  // An IP target (matched against the IP SAN) keeps the DNS resolver out of the test.
  const std::string target = "127.0.0.1:" + std::to_string(host_->port());

  grpc::SslCredentialsOptions with_cert;
  with_cert.pem_root_certs = tls.cert_pem();
  with_cert.pem_cert_chain = tls.cert_pem();
  with_cert.pem_private_key = tls.key_pem();
  EXPECT_EQ(HealthOf(grpc::CreateChannel(target, grpc::SslCredentials(with_cert)), ""), kServing);

  grpc::SslCredentialsOptions without_cert;
  without_cert.pem_root_certs = tls.cert_pem();
  EXPECT_EQ(HealthOf(grpc::CreateChannel(target, grpc::SslCredentials(without_cert)), ""),
            std::nullopt);
}

TEST(ShutdownSignalsTest, WaitReturnsTheBlockedSignal) {
  BlockShutdownSignals();
  // Aimed at this thread, where the signal is blocked: it stays pending until sigwait takes it.
  ASSERT_EQ(pthread_kill(pthread_self(), SIGTERM), 0);
  EXPECT_EQ(WaitForShutdownSignal(), SIGTERM);
  ASSERT_EQ(pthread_kill(pthread_self(), SIGINT), 0);
  EXPECT_EQ(WaitForShutdownSignal(), SIGINT);
}

TEST(ShutdownSignalsTest, TimedWait_ReturnsZeroWhenNoSignalArrivesInTime) {
  BlockShutdownSignals();
  const absl::Time start = absl::Now();
  EXPECT_EQ(WaitForShutdownSignalFor(absl::Milliseconds(100)), 0);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
}

TEST(ShutdownSignalsTest, TimedWait_ReturnsASignalSentWhileWaitingAtOnce) {
  BlockShutdownSignals();
  const pthread_t waiter = pthread_self();
  const absl::Time start = absl::Now();
  // Sent from another thread while (or just before) this one waits: either way it is taken.
  std::thread sender([waiter] { pthread_kill(waiter, SIGINT); });
  EXPECT_EQ(WaitForShutdownSignalFor(absl::Seconds(60)), SIGINT);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  sender.join();
}

// The plaintext health-only listener (for probes that cannot speak TLS) mirrors the main
// server's statuses, serves nothing else, and closes with the host.
TEST_F(ServiceHostTest, HealthListener_MirrorsStatusAndServesOnlyHealth) {
  TlsFiles tls;
  ASSERT_TRUE(tls.ok());
  ServerOptions options = Options();
  tls.ApplyTo(options);  // the main port speaks TLS only
  options.health_address = "127.0.0.1:0";
  StartHost(options);
  ASSERT_GT(host_->health_port(), 0);
  ASSERT_NE(host_->health_port(), host_->port());
  auto probe = grpc::CreateChannel(absl::StrCat("127.0.0.1:", host_->health_port()),
                                   grpc::InsecureChannelCredentials());
  EXPECT_EQ(HealthOf(probe, ""), kServing);
  EXPECT_EQ(HealthOf(probe, kRegistryService), kServing);
  EXPECT_EQ(HealthOf(probe, kLivenessService), kServing);

  ready_ = false;
  EXPECT_TRUE(testing::PollUntil([&] { return HealthOf(probe, kRegistryService) == kNotServing; },
                                 absl::Seconds(10)));
  EXPECT_EQ(HealthOf(probe, kLivenessService), kServing);
  ready_ = true;
  EXPECT_TRUE(testing::PollUntil([&] { return HealthOf(probe, kRegistryService) == kServing; },
                                 absl::Seconds(10)));

  // The application's methods are not there.
  auto stub = OrgRegistry::NewStub(probe);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  GetOrgRequest request;
  request.set_id(1);
  Org org;
  EXPECT_EQ(stub->GetOrg(&context, request, &org).error_code(), grpc::StatusCode::UNIMPLEMENTED);

  host_->Shutdown();
  EXPECT_EQ(HealthOf(probe, ""), std::nullopt) << "the health listener outlived the host";
}

}  // namespace
}  // namespace dangjian
