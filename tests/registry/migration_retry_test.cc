// Failed schema migrations at start, against a real PostgreSQL: the registry stays up with its
// metrics exposed (dj_schema_migration_failing 1, failures counted), does not listen for gRPC,
// retries every interval, and serves once the cause is removed; a stop request while it waits
// to retry ends the start at once. Without a retry hook the start fails as before.

#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "tests/common/metric_reader.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using testing::MetricValue;

// RegistryApp::Start on a thread of its own, with a retry hook a test can stop.
class AsyncStart {
 public:
  explicit AsyncStart(RegistryConfig config) {
    config.wait_to_retry = [this](absl::Duration interval) {
      return !stop_.WaitForNotificationWithTimeout(interval);
    };
    thread_ = std::thread([this, config = std::move(config)]() mutable {
      auto app = RegistryApp::Start(std::move(config));
      absl::MutexLock lock(&mu_);
      result_ = std::move(app);
      done_ = true;
    });
  }
  ~AsyncStart() {
    RequestStop();
    Join();
  }

  void RequestStop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
  }
  bool done() const {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // After done(): what Start() returned.
  absl::StatusOr<std::unique_ptr<RegistryApp>> TakeResult() {
    Join();
    absl::MutexLock lock(&mu_);
    return std::move(result_);
  }

 private:
  absl::Notification stop_;
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<std::unique_ptr<RegistryApp>> result_ ABSL_GUARDED_BY(mu_) =
      absl::UnknownError("not started");
  std::thread thread_;
};

class MigrationRetryTest : public RegistryFixture {
 protected:
  void Sql(const std::string& sql) {
    pqxx::connection conn(pg_->ConnInfo(database_));
    pqxx::work tx(conn);
    tx.exec0(sql);
    tx.commit();
  }

  // schema_migrations as common/sql/migrations.cc creates it, with one row for `component`.
  void Record(const std::string& component, int version, const std::string& checksum) {
    Sql(R"sql(CREATE TABLE IF NOT EXISTS schema_migrations (
                component  text        NOT NULL,
                version    integer     NOT NULL,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (component, version)))sql");
    Sql(absl::StrCat("INSERT INTO schema_migrations (component, version, name, checksum) VALUES ('",
                     component, "', ", version, ", 'recorded_by_test', '", checksum, "')"));
  }

  double Value(prometheus::Registry& registry, const std::string& name,
               const std::string& component) {
    return MetricValue(registry, name, {{"component", component}}).value_or(-1);
  }

  // True if something accepts a gRPC connection on 127.0.0.1:`port` within `timeout`.
  static bool GrpcAnswers(int port, absl::Duration timeout) {
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    return channel->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout));
  }

  // Makes the fixture's stub call `app`.
  void Adopt(std::unique_ptr<RegistryApp> app) {
    app_ = std::move(app);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", app_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::OrgRegistry::NewStub(channel_);
    admin_ = Token({"admin"}, std::nullopt);
  }
};

TEST_F(MigrationRetryTest, NewerSchema_KeepsMetricsUpWithoutGrpcUntilFixedThenServes) {
  // The database claims a registry schema newer than this binary's: refused, as it must be.
  Record("registry", 9999, "from-a-newer-binary");
  const int grpc_port = testing::PickFreePort();
  const int metrics_port = testing::PickFreePort();
  RegistryConfig config = MakeConfig();
  config.server.address = absl::StrCat("127.0.0.1:", grpc_port);
  config.metrics_address = absl::StrCat("127.0.0.1:", metrics_port);
  config.migration_retry_interval = absl::Milliseconds(100);
  auto registry = std::make_shared<prometheus::Registry>();
  config.metrics_registry = registry;
  AsyncStart start(std::move(config));

  // Failing, counted, and retried (a second failure), while Start() has not returned.
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value(*registry, "dj_schema_migration_failures_total", "registry") >= 2; },
      absl::Seconds(20)));
  EXPECT_FALSE(start.done());
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failing", "registry"), 1);
  // common's audit schema applied fine before the registry's failed.
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failing", "audit"), 0);
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failures_total", "audit"), 0);
  EXPECT_FALSE(MetricValue(*registry, "dj_schema_version", {{"component", "registry"}}));
  // The exposer answers over HTTP and says so; gRPC does not listen.
  const std::string scraped = testing::HttpGet(metrics_port, "/metrics");
  EXPECT_TRUE(absl::StrContains(scraped, "dj_schema_migration_failing{component=\"registry\"} 1"))
      << scraped.substr(0, 2000);
  EXPECT_TRUE(absl::StrContains(scraped, "dj_build_info{")) << scraped.substr(0, 2000);
  EXPECT_FALSE(GrpcAnswers(grpc_port, absl::Milliseconds(300)));

  // The cause goes (the newer binary's row is removed): the next attempt succeeds.
  Sql("DELETE FROM schema_migrations WHERE component = 'registry' AND version = 9999");
  ASSERT_TRUE(testing::PollUntil([&] { return start.done(); }, absl::Seconds(20)));
  auto app = start.TakeResult();
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failing", "registry"), 0);
  EXPECT_GE(Value(*registry, "dj_schema_version", "registry"), 1);
  EXPECT_GE(Value(*registry, "dj_schema_migration_failures_total", "registry"), 2);
  Adopt(*std::move(app));
  EXPECT_EQ(app_->grpc_port(), grpc_port);
  const v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委", "CITY");
  EXPECT_GT(city.id(), 0);
}

TEST_F(MigrationRetryTest, StopWhileWaitingToRetry_EndsTheStartAtOnce) {
  // A recorded migration whose checksum differs from the binary's.
  Record("registry", 1, "0000000000000000000000000000000000000000000000000000000000000000");
  RegistryConfig config = MakeConfig();
  config.migration_retry_interval = absl::Hours(1);
  auto registry = std::make_shared<prometheus::Registry>();
  config.metrics_registry = registry;
  AsyncStart start(std::move(config));
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value(*registry, "dj_schema_migration_failing", "registry") == 1; },
      absl::Seconds(20)));
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failures_total", "registry"), 1);

  const absl::Time stop_at = absl::Now();
  start.RequestStop();
  ASSERT_TRUE(testing::PollUntil([&] { return start.done(); }, absl::Seconds(5)));
  EXPECT_LT(absl::Now() - stop_at, absl::Seconds(5));
  auto app = start.TakeResult();
  ASSERT_FALSE(app.ok());
  EXPECT_EQ(app.status().code(), absl::StatusCode::kCancelled) << app.status();
  EXPECT_TRUE(absl::StrContains(app.status().message(), "checksum")) << app.status();
}

TEST_F(MigrationRetryTest, WithoutRetryHook_StartFailsAtTheFirstFailure) {
  Record("registry", 9999, "from-a-newer-binary");
  RegistryConfig config = MakeConfig();
  auto registry = std::make_shared<prometheus::Registry>();
  config.metrics_registry = registry;
  auto app = RegistryApp::Start(std::move(config));
  ASSERT_FALSE(app.ok());
  EXPECT_EQ(app.status().code(), absl::StatusCode::kFailedPrecondition) << app.status();
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failing", "registry"), 1);
  EXPECT_EQ(Value(*registry, "dj_schema_migration_failures_total", "registry"), 1);
}

}  // namespace
}  // namespace dangjian::registry
