// The change feed's metrics over gRPC against real PostgreSQL and Redis: the notified revision
// follows a write, the watchers gauge counts open WatchOrgChanges streams as they open and close,
// and the poller's errors and last success follow a database that refuses connections and
// comes back. Worker-pool gauges and dj_build_info are exported by the running registry.
#include <pqxx/pqxx>
#include <thread>

#include "common/build_info.h"
#include "tests/common/metric_reader.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

// Holds one WatchOrgChanges stream open on a thread of its own until Cancel().
class OpenStream {
 public:
  OpenStream(v1::OrgRegistry::Stub& stub, std::unique_ptr<grpc::ClientContext> ctx)
      : ctx_(std::move(ctx)) {
    v1::WatchOrgChangesRequest req;
    req.set_from_revision(0);
    reader_ = stub.WatchOrgChanges(ctx_.get(), req);
    thread_ = std::thread([this] {
      v1::OrgChange change;
      while (reader_->Read(&change)) {
      }
      (void)reader_->Finish();
    });
  }
  ~OpenStream() { Cancel(); }
  void Cancel() {
    ctx_->TryCancel();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReader<v1::OrgChange>> reader_;
  std::thread thread_;
};

class FeedMetricsTest : public RegistryFixture {
 protected:
  void SetUp() override {
    RegistryFixture::SetUp();
    StartRegistry();
  }

  double Value(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return testing::MetricValue(app_->metrics(), name, labels).value_or(-1);
  }

  // Allows or refuses new connections to the test's database (for everyone, superusers too).
  void AllowConnections(bool allow) {
    pqxx::connection conn(pg_->ConnInfo("postgres"));
    pqxx::nontransaction tx(conn);
    tx.exec0(absl::StrCat("ALTER DATABASE ", conn.quote_name(database_), " ALLOW_CONNECTIONS ",
                          allow ? "true" : "false"));
  }
};

TEST_F(FeedMetricsTest, NotifiedRevision_FollowsAWrite) {
  const double before = Value("dj_registry_feed_notified_revision");
  ASSERT_GE(before, 0);
  const v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委", "CITY");
  ASSERT_GT(city.id(), 0);
  // The write's own revision is announced to the notifier as it commits.
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value("dj_registry_feed_notified_revision") > before; }, absl::Seconds(10)));
  const double after_one = Value("dj_registry_feed_notified_revision");
  Create(city.id(), v1::ORG_KIND_COMMITTEE, "甲区委");
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value("dj_registry_feed_notified_revision") == after_one + 1; },
      absl::Seconds(10)));
}

TEST_F(FeedMetricsTest, Watchers_CountStreamsAsTheyOpenAndClose) {
  EXPECT_EQ(Value("dj_registry_feed_watchers"), 0);
  auto first = std::make_unique<OpenStream>(*stub_, Ctx(admin_, absl::Seconds(60)));
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == 1; },
                                 absl::Seconds(10)));
  auto second = std::make_unique<OpenStream>(*stub_, Ctx(admin_, absl::Seconds(60)));
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == 2; },
                                 absl::Seconds(10)));
  first->Cancel();
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == 1; },
                                 absl::Seconds(10)));
  second->Cancel();
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == 0; },
                                 absl::Seconds(10)));
}

TEST_F(FeedMetricsTest, Watchers_DoNotCountARefusedStream) {
  // No token: refused in the handler before the stream counts.
  auto refused = std::make_unique<OpenStream>(*stub_, Ctx("", absl::Seconds(60)));
  refused->Cancel();
  auto open = std::make_unique<OpenStream>(*stub_, Ctx(admin_, absl::Seconds(60)));
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == 1; },
                                 absl::Seconds(10)));
  open->Cancel();
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == 0; },
                                 absl::Seconds(10)));
}

TEST_F(FeedMetricsTest, Poll_CountsErrorsWhileTheDatabaseRefusesAndRecovers) {
  // Polls succeed every feed_poll_interval (50 ms here).
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value("dj_registry_feed_last_poll_success_timestamp_seconds") > 0; },
      absl::Seconds(10)));
  EXPECT_EQ(Value("dj_registry_feed_poll_errors_total"), 0);

  ::testing::internal::CaptureStderr();
  const absl::Time stalled_since = absl::Now();
  AllowConnections(false);
  ASSERT_TRUE(pg_->TerminateConnections(database_).ok());
  ASSERT_TRUE(testing::PollUntil([&] { return Value("dj_registry_feed_poll_errors_total") >= 2; },
                                 absl::Seconds(20)));
  // No success while the database refuses: the stamp stays put across further failed polls.
  const double stalled_at = Value("dj_registry_feed_last_poll_success_timestamp_seconds");
  const double errors = Value("dj_registry_feed_poll_errors_total");
  ASSERT_TRUE(
      testing::PollUntil([&] { return Value("dj_registry_feed_poll_errors_total") >= errors + 2; },
                         absl::Seconds(20)));
  EXPECT_EQ(Value("dj_registry_feed_last_poll_success_timestamp_seconds"), stalled_at);

  AllowConnections(true);
  const double restored_at = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value("dj_registry_feed_last_poll_success_timestamp_seconds") >= restored_at; },
      absl::Seconds(20)));
  const double failed = Value("dj_registry_feed_poll_errors_total");
  const std::string log = ::testing::internal::GetCapturedStderr();

  // The log has the first failure, then (log::RateLimitedLog) a line per 10 s at most, not one per
  // failed poll; the recovery line counts the failures.
  int failure_lines = 0;
  for (size_t at = log.find("change feed cannot read the head revision"); at != std::string::npos;
       at = log.find("change feed cannot read the head revision", at + 1)) {
    ++failure_lines;
  }
  EXPECT_GE(failure_lines, 1);
  EXPECT_LE(failure_lines, 1 + (absl::Now() - stalled_since) / absl::Seconds(10)) << failed;
  EXPECT_THAT(log, ::testing::HasSubstr(absl::StrCat("\"failed_polls\":", failed)));
}

TEST_F(FeedMetricsTest, RunningRegistry_ExportsWorkerPoolGaugesAndBuildInfo) {
  const RegistryConfig config = MakeConfig();
  EXPECT_EQ(Value("dj_worker_queue_capacity"), config.worker_queue);
  EXPECT_EQ(Value("dj_worker_threads"), config.worker_threads);
  EXPECT_EQ(Value("dj_worker_queue_depth"), 0);
  EXPECT_EQ(Value("dj_worker_rejected_total"), 0);
  EXPECT_EQ(Value("dj_build_info", {{"service", "registry"},
                                    {"version", std::string(BuildVersion())},
                                    {"revision", std::string(BuildRevision())}}),
            1);
  EXPECT_EQ(Value("dj_schema_migration_failing", {{"component", "registry"}}), 0);
  EXPECT_EQ(Value("dj_schema_migration_failing", {{"component", "audit"}}), 0);
  EXPECT_GE(Value("dj_schema_version", {{"component", "registry"}}), 1);
}

}  // namespace
}  // namespace dangjian::registry
