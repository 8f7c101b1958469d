// The gRPC metrics interceptors of common/grpc_metrics.h: a real server and client on loopback,
// each with its interceptor and its own registry, and the go-grpc-prometheus series read back.
// Also the shared families and the HTTP exposer of common/metrics.h.
#include "common/grpc_metrics.h"

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/testing/harness.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"
#include "tests/common/metric_reader.h"

namespace dangjian::metrics {
namespace {

using registry::v1::GetOrgRequest;
using registry::v1::ImportOrgsRequest;
using registry::v1::ImportOrgsResponse;
using registry::v1::Org;
using registry::v1::OrgChange;
using registry::v1::OrgRegistry;
using registry::v1::WatchOrgChangesRequest;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr char kService[] = "dangjian.registry.v1.OrgRegistry";

// GetOrg: INVALID_ARGUMENT for id <= 0, else the org. WatchOrgChanges: from_revision messages.
// ImportOrgs: counts the rows of every message.
class TestRegistry final : public OrgRegistry::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetOrg(grpc::CallbackServerContext* context,
                                   const GetOrgRequest* request, Org* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (request->id() <= 0) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id: must be positive"));
    } else {
      response->set_id(request->id());
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  grpc::ServerWriteReactor<OrgChange>* WatchOrgChanges(
      grpc::CallbackServerContext* /*context*/, const WatchOrgChangesRequest* request) override {
    class Writer final : public grpc::ServerWriteReactor<OrgChange> {
     public:
      explicit Writer(int64_t count) : remaining_(count) { WriteNext(); }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
          return;
        }
        WriteNext();
      }
      void OnDone() override { delete this; }

     private:
      void WriteNext() {
        if (remaining_ == 0) {
          Finish(grpc::Status::OK);
          return;
        }
        change_.set_revision(remaining_--);
        StartWrite(&change_);
      }
      int64_t remaining_;
      OrgChange change_;
    };
    return new Writer(request->from_revision());
  }

  grpc::ServerReadReactor<ImportOrgsRequest>* ImportOrgs(grpc::CallbackServerContext* /*context*/,
                                                         ImportOrgsResponse* response) override {
    class Reader final : public grpc::ServerReadReactor<ImportOrgsRequest> {
     public:
      explicit Reader(ImportOrgsResponse* response) : response_(response) { StartRead(&request_); }
      void OnReadDone(bool ok) override {
        if (!ok) {  // the client half-closed
          Finish(grpc::Status::OK);
          return;
        }
        response_->set_received(response_->received() + request_.rows_size());
        StartRead(&request_);
      }
      void OnDone() override { delete this; }

     private:
      ImportOrgsResponse* const response_;
      ImportOrgsRequest request_;
    };
    return new Reader(response);
  }
};

using Labels = std::map<std::string, std::string>;

// The series of family `name` whose labels include `labels`, if exactly one matches.
std::optional<prometheus::ClientMetric> FindSeries(const prometheus::Registry& registry,
                                                   const std::string& name, const Labels& labels) {
  std::optional<prometheus::ClientMetric> found;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      size_t matched = 0;
      for (const auto& label : metric.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched != labels.size()) continue;
      if (found.has_value()) return std::nullopt;  // ambiguous: the test asked too loosely
      found = metric;
    }
  }
  return found;
}

std::optional<double> CounterValue(const prometheus::Registry& registry, const std::string& name,
                                   const Labels& labels) {
  std::optional<prometheus::ClientMetric> metric = FindSeries(registry, name, labels);
  if (!metric.has_value()) return std::nullopt;
  return metric->counter.value;
}

std::optional<uint64_t> HistogramCount(const prometheus::Registry& registry,
                                       const std::string& name, const Labels& labels) {
  std::optional<prometheus::ClientMetric> metric = FindSeries(registry, name, labels);
  if (!metric.has_value()) return std::nullopt;
  return metric->histogram.sample_count;
}

Labels MethodLabels(const std::string& method, const std::string& type) {
  return {{"grpc_service", kService}, {"grpc_method", method}, {"grpc_type", type}};
}

Labels WithCode(Labels labels, const std::string& code) {
  labels["grpc_code"] = code;
  return labels;
}

class GrpcMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> server;
    server.push_back(NewServerMetricsInterceptor(server_registry_));
    builder.experimental().SetInterceptorCreators(std::move(server));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = ChannelTo(port_, client_registry_);
    stub_ = OrgRegistry::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  static std::shared_ptr<grpc::Channel> ChannelTo(int port, prometheus::Registry& registry) {
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> client;
    client.push_back(NewClientMetricsInterceptor(registry));
    return grpc::experimental::CreateCustomChannelWithInterceptors(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(),
        grpc::ChannelArguments(), std::move(client));
  }

  static void SetDeadline(grpc::ClientContext& context) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  }

  // Calls `method` ("/pkg.Service/Method") with an empty request, as any client can, whether or
  // not the server has that method.
  grpc::Status CallByName(const std::string& method) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    SetDeadline(context);
    grpc::Slice empty;
    grpc::ByteBuffer request(&empty, 1);  // an empty message
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();
    return status;
  }

  // The number of samples the server's /metrics would show (one per line of the exposition,
  // histogram buckets included).
  size_t ServerSampleCount() {
    const std::string text = prometheus::TextSerializer().Serialize(server_registry_.Collect());
    size_t samples = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      if (line[0] != '#') ++samples;
    }
    return samples;
  }

  grpc::Status GetOrg(int64_t id) {
    grpc::ClientContext context;
    SetDeadline(context);
    GetOrgRequest request;
    request.set_id(id);
    Org org;
    return stub_->GetOrg(&context, request, &org);
  }

  TestRegistry service_;
  prometheus::Registry server_registry_;
  prometheus::Registry client_registry_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<OrgRegistry::Stub> stub_;
};

TEST_F(GrpcMetricsTest, Unary_ServerCountsStartedAndHandledByCode) {
  ASSERT_TRUE(GetOrg(1).ok());
  ASSERT_TRUE(GetOrg(2).ok());
  ASSERT_EQ(GetOrg(0).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  const Labels get_org = MethodLabels("GetOrg", "unary");
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_started_total", get_org), Optional(3.0));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_handled_total", WithCode(get_org, "OK")),
              Optional(2.0));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_handled_total",
                           WithCode(get_org, "InvalidArgument")),
              Optional(1.0));
  EXPECT_THAT(HistogramCount(server_registry_, "grpc_server_handling_seconds", get_org),
              Optional(3u));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_msg_received_total", get_org),
              Optional(3.0));
  // The failed call sends no response message.
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_msg_sent_total", get_org), Optional(2.0));
}

TEST_F(GrpcMetricsTest, Unary_ClientCountsStartedAndHandledByCode) {
  ASSERT_TRUE(GetOrg(1).ok());
  ASSERT_EQ(GetOrg(-5).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  const Labels get_org = MethodLabels("GetOrg", "unary");
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_started_total", get_org), Optional(2.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_handled_total", WithCode(get_org, "OK")),
              Optional(1.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_handled_total",
                           WithCode(get_org, "InvalidArgument")),
              Optional(1.0));
  EXPECT_THAT(HistogramCount(client_registry_, "grpc_client_handling_seconds", get_org),
              Optional(2u));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_msg_sent_total", get_org), Optional(2.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_msg_received_total", get_org),
              Optional(1.0));
}

TEST_F(GrpcMetricsTest, HandledSeries_CarryExactlyTheGoGrpcPrometheusLabels) {
  ASSERT_TRUE(GetOrg(7).ok());
  for (const auto& [registry, name] : {std::pair<prometheus::Registry*, std::string>{
                                           &server_registry_, "grpc_server_handled_total"},
                                       {&client_registry_, "grpc_client_handled_total"}}) {
    std::optional<prometheus::ClientMetric> metric =
        FindSeries(*registry, name, WithCode(MethodLabels("GetOrg", "unary"), "OK"));
    ASSERT_TRUE(metric.has_value()) << name;
    std::set<std::string> label_names;
    for (const auto& label : metric->label) label_names.insert(label.name);
    EXPECT_EQ(label_names,
              (std::set<std::string>{"grpc_code", "grpc_method", "grpc_service", "grpc_type"}))
        << name;
  }
}

TEST_F(GrpcMetricsTest, ServerStream_CountsEachMessageUnderServerStreamType) {
  grpc::ClientContext context;
  SetDeadline(context);
  WatchOrgChangesRequest request;
  request.set_from_revision(3);
  std::unique_ptr<grpc::ClientReader<OrgChange>> reader = stub_->WatchOrgChanges(&context, request);
  OrgChange change;
  int received = 0;
  while (reader->Read(&change)) ++received;
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(received, 3);

  const Labels watch = MethodLabels("WatchOrgChanges", "server_stream");
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_msg_sent_total", watch), Optional(3.0));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_msg_received_total", watch),
              Optional(1.0));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_handled_total", WithCode(watch, "OK")),
              Optional(1.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_msg_received_total", watch),
              Optional(3.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_handled_total", WithCode(watch, "OK")),
              Optional(1.0));
}

TEST_F(GrpcMetricsTest, ClientStream_CountsEachMessageUnderClientStreamType) {
  grpc::ClientContext context;
  SetDeadline(context);
  ImportOrgsResponse response;
  std::unique_ptr<grpc::ClientWriter<ImportOrgsRequest>> writer =
      stub_->ImportOrgs(&context, &response);
  ImportOrgsRequest request;
  request.add_rows();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(writer->Write(request));
  ASSERT_TRUE(writer->WritesDone());
  ASSERT_TRUE(writer->Finish().ok());
  ASSERT_EQ(response.received(), 4);

  const Labels import = MethodLabels("ImportOrgs", "client_stream");
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_msg_received_total", import),
              Optional(4.0));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_msg_sent_total", import), Optional(1.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_msg_sent_total", import), Optional(4.0));
  EXPECT_THAT(CounterValue(client_registry_, "grpc_client_handled_total", WithCode(import, "OK")),
              Optional(1.0));
}

TEST_F(GrpcMetricsTest, Client_CountsUnavailableWhenNoServerListens) {
  prometheus::Registry registry;
  auto stub = OrgRegistry::NewStub(ChannelTo(testing::PickFreePort(), registry));
  grpc::ClientContext context;
  SetDeadline(context);
  GetOrgRequest request;
  request.set_id(1);
  Org org;
  ASSERT_EQ(stub->GetOrg(&context, request, &org).error_code(), grpc::StatusCode::UNAVAILABLE);

  const Labels get_org = MethodLabels("GetOrg", "unary");
  EXPECT_THAT(CounterValue(registry, "grpc_client_started_total", get_org), Optional(1.0));
  EXPECT_THAT(CounterValue(registry, "grpc_client_handled_total", WithCode(get_org, "Unavailable")),
              Optional(1.0));
  EXPECT_THAT(CounterValue(registry, "grpc_client_msg_received_total", get_org), Optional(0.0));
}

// Any caller can send any method name; each must not add its own ~20 series (a /metrics that
// grows without bound). The server counts them all under one "unknown" label value.
TEST_F(GrpcMetricsTest, UnknownMethods_AreCountedUnderOneLabelValue) {
  ASSERT_EQ(CallByName("/no.such.Service/Method0").error_code(), grpc::StatusCode::UNIMPLEMENTED);
  const size_t after_one = ServerSampleCount();
  for (int i = 1; i < 100; ++i) {
    // Made-up methods of a real service and of made-up services alike.
    const std::string method = i % 2 == 0 ? absl::StrCat("/no.such.Service", i, "/Method", i)
                                          : absl::StrCat("/", kService, "/NoSuchMethod", i);
    ASSERT_EQ(CallByName(method).error_code(), grpc::StatusCode::UNIMPLEMENTED) << method;
  }
  EXPECT_EQ(ServerSampleCount(), after_one);

  const Labels unknown = {
      {"grpc_service", "unknown"}, {"grpc_method", "unknown"}, {"grpc_type", "unknown"}};
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_started_total", unknown),
              Optional(100.0));
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_handled_total",
                           WithCode(unknown, "Unimplemented")),
              Optional(100.0));
  // Real methods keep their own names, including the standard health service's.
  ASSERT_TRUE(GetOrg(1).ok());
  EXPECT_THAT(
      CounterValue(server_registry_, "grpc_server_started_total", MethodLabels("GetOrg", "unary")),
      Optional(1.0));
  CallByName("/grpc.health.v1.Health/Check");
  EXPECT_THAT(CounterValue(server_registry_, "grpc_server_started_total",
                           {{"grpc_service", "grpc.health.v1.Health"}, {"grpc_method", "Check"}}),
              Optional(1.0));
}

TEST_F(GrpcMetricsTest, Exposition_UsesTheStandardSeriesNames) {
  ASSERT_TRUE(GetOrg(1).ok());
  const std::string text = prometheus::TextSerializer().Serialize(server_registry_.Collect());
  EXPECT_THAT(text, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"GetOrg\","
                              "grpc_service=\"dangjian.registry.v1.OrgRegistry\","
                              "grpc_type=\"unary\"} 1"));
  EXPECT_THAT(text, HasSubstr("grpc_server_handling_seconds_bucket{"));
  EXPECT_THAT(text, HasSubstr("# TYPE grpc_server_started_total counter"));
}

// The families common/metrics.h promises, by the names dashboards and alerts use.
TEST(MetricsTest, DbAndCacheMetrics_RegisterTheDocumentedSeries) {
  prometheus::Registry registry;
  DbMetrics db(registry);
  CacheMetrics cache(registry);
  db.pool_in_use.Set(3);
  db.errors.Add({{"kind", "serialization"}}).Increment();
  db.query_seconds.Add({{"query", "get_org"}}, LatencyBuckets()).Observe(0.002);
  cache.hits.Increment();
  cache.skipped.Increment();

  EXPECT_THAT(
      FindSeries(registry, "dj_db_pool_connections", {{"state", "in_use"}}),
      Optional(::testing::Field(&prometheus::ClientMetric::gauge,
                                ::testing::Field(&prometheus::ClientMetric::Gauge::value, 3.0))));
  EXPECT_THAT(CounterValue(registry, "dj_db_errors_total", {{"kind", "serialization"}}),
              Optional(1.0));
  EXPECT_THAT(HistogramCount(registry, "dj_db_query_duration_seconds", {{"query", "get_org"}}),
              Optional(1u));
  EXPECT_THAT(CounterValue(registry, "dj_cache_requests_total", {{"result", "hit"}}),
              Optional(1.0));
  EXPECT_THAT(CounterValue(registry, "dj_cache_requests_total", {{"result", "skipped"}}),
              Optional(1.0));
  for (const char* name : {"dj_db_pool_acquire_seconds", "dj_db_pool_acquire_timeouts_total",
                           "dj_db_retries_total", "dj_cache_breaker_open",
                           "dj_cache_breaker_trips_total", "dj_cache_command_duration_seconds"}) {
    EXPECT_TRUE(FindSeries(registry, name, {}).has_value()) << name;
  }
}

TEST(MetricsTest, SecondDbMetricsOnOneRegistry_SharesTheSeries) {
  prometheus::Registry registry;
  DbMetrics first(registry);
  DbMetrics second(registry);
  first.retries.Increment();
  second.retries.Increment();
  EXPECT_EQ(&first.retries, &second.retries);
  EXPECT_THAT(CounterValue(registry, "dj_db_retries_total", {}), Optional(2.0));
}

TEST(MetricsTest, LatencyBuckets_SpanHalfAMillisecondToTenSeconds) {
  const std::vector<double>& buckets = LatencyBuckets();
  ASSERT_FALSE(buckets.empty());
  EXPECT_DOUBLE_EQ(buckets.front(), 0.0005);
  EXPECT_DOUBLE_EQ(buckets.back(), 10.0);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
}

TEST(MetricsTest, Exposer_ServesTheRegistryOverHttp) {
  auto registry = std::make_shared<prometheus::Registry>();
  DbMetrics db(*registry);
  db.retries.Increment();
  auto exposer = MetricsExposer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  ASSERT_GT((*exposer)->port(), 0);
  const std::string response = testing::HttpGet((*exposer)->port(), "/metrics");
  EXPECT_THAT(response, HasSubstr("200 OK"));
  EXPECT_THAT(response, HasSubstr("dj_db_retries_total 1"));
}

TEST(MetricsTest, Exposer_ClosesItsPortWhenDestroyedAfterAScrape) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto exposer = MetricsExposer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  const int port = (*exposer)->port();
  EXPECT_THAT(testing::HttpGet(port, "/metrics"), HasSubstr("200 OK"));
  exposer->reset();
  EXPECT_EQ(testing::HttpGet(port, "/metrics"), "") << "the port still answers after destruction";
}

TEST(MetricsTest, Exposer_RefusesAnAddressWithoutPort) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto exposer = MetricsExposer::Start("localhost", registry);
  ASSERT_FALSE(exposer.ok());
  EXPECT_EQ(exposer.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MetricsTest, Exposer_TakenPortIsUnavailableNamingTheAddress) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = MetricsExposer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string address = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsExposer::Start(address, registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(address));
}

}  // namespace
}  // namespace dangjian::metrics
