// WatchOrgChanges limits and resources over gRPC against real PostgreSQL: streams per caller and
// per process are capped (RESOURCE_EXHAUSTED stating the limit; a closed stream frees its slot), a
// client that stops reading holds the server at one page of the feed, and many replaying streams
// leave no memory behind once they end.
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "services/registry/api/registry_service.h"
#include "tests/common/metric_reader.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using ::testing::HasSubstr;

// Resident memory of this process (server and clients), from /proc/self/statm.
double ResidentMb() {
  std::ifstream in("/proc/self/statm");
  long size = 0;
  long resident = 0;
  in >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1048576.0;
}

// One WatchOrgChanges stream from revision 0. With `read` false the client never reads (a stalled
// consumer) until StartReading().
class Stream {
 public:
  Stream(v1::OrgRegistry::Stub& stub, std::unique_ptr<grpc::ClientContext> ctx, bool read = true)
      : ctx_(std::move(ctx)) {
    reader_ = stub.WatchOrgChanges(ctx_.get(), v1::WatchOrgChangesRequest());
    if (read) StartReading();
  }
  ~Stream() { Cancel(); }

  void StartReading() {
    thread_ = std::thread([this] {
      v1::OrgChange change;
      int64_t last = 0;
      while (reader_->Read(&change)) {
        if (change.revision() != last + 1) in_order_ = false;
        last = change.revision();
        count_.fetch_add(1);
      }
      grpc::Status status = reader_->Finish();
      absl::MutexLock lock(&mu_);
      status_ = std::move(status);
      ended_ = true;
    });
  }
  void Cancel() {
    ctx_->TryCancel();
    if (thread_.joinable()) thread_.join();
  }
  size_t count() const { return count_.load(); }
  bool in_order() const { return in_order_.load(); }
  bool ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }
  grpc::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReader<v1::OrgChange>> reader_;
  std::atomic<size_t> count_{0};
  std::atomic<bool> in_order_{true};
  mutable absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class WatchLimitsTest : public RegistryFixture {
 protected:
  void Start(StreamLimits limits) {
    RegistryConfig config = MakeConfig();
    config.watch_limits = limits;
    StartRegistry(std::move(config));
  }

  double Value(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return testing::MetricValue(app_->metrics(), name, labels).value_or(-1);
  }

  // A read-only token of caller `subject`.
  static std::string TokenOf(const std::string& subject) {
    auth::MintOptions options;
    options.issuer = "dangjian";
    options.audience = "dangjian";
    options.subject = subject;
    options.roles = {"registry.read"};
    options.ttl = absl::Hours(1);
    auto token = auth::MintHs256(auth::JwtKey{kKeyId, auth::Algorithm::kHs256, kSecret}, options,
                                 absl::Now());
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }

  std::unique_ptr<Stream> Open(const std::string& token, bool read = true) {
    return std::make_unique<Stream>(*stub_, Ctx(token, absl::Seconds(300)), read);
  }

  // A stream ended by the server: waits for its end and returns its status.
  static grpc::Status Refusal(Stream& stream) {
    EXPECT_TRUE(testing::PollUntil([&] { return stream.ended(); }, absl::Seconds(20)));
    return stream.status();
  }

  bool WaitForWatchers(double n) {
    return testing::PollUntil([&] { return Value("dj_registry_feed_watchers") == n; },
                              absl::Seconds(20));
  }

  // `n` changes from one import: a committee and n - 1 branches under it.
  void ImportChanges(int n) {
    std::vector<v1::ImportOrgsRequest> messages(1);
    auto add = [&](const std::string& code, const std::string& parent, v1::OrgKind kind) {
      if (messages.back().rows_size() == 500) messages.emplace_back();
      v1::ImportOrgRow* row = messages.back().add_rows();
      row->set_code(code);
      row->set_parent_code(parent);
      row->set_name(absl::StrCat("第一街道第二社区党支部委员会 ", code));
      row->set_kind(kind);
      row->set_domain(v1::ORG_DOMAIN_COMMUNITY);
      row->set_region_code("320102");
    };
    add("R", "", v1::ORG_KIND_COMMITTEE);
    for (int i = 1; i < n; ++i) add(absl::StrCat("B", i), "R", v1::ORG_KIND_BRANCH);
    v1::ImportOrgsResponse resp;
    auto ctx = Ctx(admin_, absl::Seconds(120));
    auto writer = stub_->ImportOrgs(ctx.get(), &resp);
    for (const auto& m : messages) ASSERT_TRUE(writer->Write(m));
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    ASSERT_EQ(resp.created(), n);
  }

  // A stub on a channel of its own whose HTTP/2 window stays at gRPC's initial 64 KB (no BDP
  // probing): what such a client has not read bounds what the server can send it.
  std::unique_ptr<v1::OrgRegistry::Stub> SmallWindowStub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    return v1::OrgRegistry::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", app_->grpc_port()), grpc::InsecureChannelCredentials(), args));
  }
};

TEST_F(WatchLimitsTest, Watch_RefusesBeyondThePerCallerLimitAndAClosedStreamFreesItsSlot) {
  Start({/*max_open=*/100, /*max_per_caller=*/2});
  const std::string alice = TokenOf("alice");
  auto first = Open(alice);
  auto second = Open(alice);
  ASSERT_TRUE(WaitForWatchers(2));

  auto third = Open(alice);
  const grpc::Status refused = Refusal(*third);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("the limit per caller is 2"));
  EXPECT_THAT(refused.error_message(), HasSubstr("alice"));
  EXPECT_EQ(Value("dj_registry_feed_refused_total", {{"limit", "caller"}}), 1);
  EXPECT_EQ(Value("dj_registry_feed_refused_total", {{"limit", "process"}}), 0);

  // Another caller is not held back by alice's streams.
  auto bob = Open(TokenOf("bob"));
  ASSERT_TRUE(WaitForWatchers(3));
  EXPECT_FALSE(bob->ended());

  // A closed stream frees its slot for the same caller.
  first->Cancel();
  ASSERT_TRUE(WaitForWatchers(2));
  auto again = Open(alice);
  ASSERT_TRUE(WaitForWatchers(3));
  EXPECT_FALSE(again->ended()) << again->status().error_message();
  EXPECT_FALSE(second->ended());
}

TEST_F(WatchLimitsTest, Watch_RefusesBeyondThePerProcessLimitAndAClosedStreamFreesItsSlot) {
  Start({/*max_open=*/3, /*max_per_caller=*/10});
  EXPECT_EQ(Value("dj_registry_feed_watchers_limit"), 3);
  std::vector<std::unique_ptr<Stream>> open;
  for (const char* who : {"a", "b", "c"}) open.push_back(Open(TokenOf(who)));
  ASSERT_TRUE(WaitForWatchers(3));

  auto fourth = Open(TokenOf("d"));
  const grpc::Status refused = Refusal(*fourth);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("its limit is 3"));
  EXPECT_EQ(Value("dj_registry_feed_refused_total", {{"limit", "process"}}), 1);
  // A refused stream holds no slot.
  EXPECT_EQ(Value("dj_registry_feed_watchers"), 3);

  open.front()->Cancel();
  ASSERT_TRUE(WaitForWatchers(2));
  auto fifth = Open(TokenOf("d"));
  ASSERT_TRUE(WaitForWatchers(3));
  EXPECT_FALSE(fifth->ended()) << fifth->status().error_message();
}

TEST_F(WatchLimitsTest, Watch_AStalledReaderHoldsTheServerAtOnePage) {
  Start(StreamLimits());
  constexpr int kChanges = 4000;
  ImportChanges(kChanges);
  auto stub = SmallWindowStub();
  Stream stalled(*stub, Ctx(admin_, absl::Seconds(300)), /*read=*/false);

  // The server sends until the client's window is full, then waits for it: the sent count stops
  // moving. (Deciding too early only makes the checks below easier to fail, never to pass.)
  double sent = -1;
  int unchanged_polls = 0;
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        const double now = Value("dj_registry_feed_changes_sent_total");
        unchanged_polls = now > 0 && now == sent ? unchanged_polls + 1 : 0;
        sent = now;
        return unchanged_polls >= 50;  // 0.5 s without progress
      },
      absl::Seconds(60)));
  const double read = Value("dj_registry_feed_changes_read_total");
  // What the stream read beyond what it sent is the page it holds: one page at most, never the
  // history behind it.
  EXPECT_LE(read - sent, kWatchPageChanges) << "read " << read << ", sent " << sent;
  EXPECT_LT(read, kChanges / 2) << "a client that reads nothing made the server read on";

  // The stream is intact: once the client reads, the whole history arrives, in order.
  stalled.StartReading();
  ASSERT_TRUE(testing::PollUntil([&] { return stalled.count() >= kChanges; }, absl::Seconds(60)))
      << stalled.count();
  EXPECT_TRUE(stalled.in_order());
  EXPECT_EQ(Value("dj_registry_feed_changes_read_total"), kChanges);
}

TEST_F(WatchLimitsTest, Watch_ManyReplayingStreamsLeaveNoMemoryBehind) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer holds freed memory in its quarantine: resident memory says "
                  "nothing here";
#endif
  constexpr int kStreams = 200;
  constexpr int kChanges = 2000;
  Start({/*max_open=*/kStreams, /*max_per_caller=*/kStreams});
  ImportChanges(kChanges);

  // Replays everything to `n` streams at once, then ends them; returns the peak resident MB.
  auto replay = [&](int n) {
    double peak = 0;
    std::vector<std::unique_ptr<Stream>> streams;
    for (int i = 0; i < n; ++i) streams.push_back(Open(admin_));
    EXPECT_TRUE(testing::PollUntil(
        [&] {
          peak = std::max(peak, ResidentMb());
          for (const auto& s : streams) {
            if (s->count() < static_cast<size_t>(kChanges)) return false;
          }
          return true;
        },
        absl::Seconds(300)));
    for (const auto& s : streams) EXPECT_TRUE(s->in_order());
    streams.clear();
    EXPECT_TRUE(WaitForWatchers(0));
    return peak;
  };
  // A first round warms up what stays for good (gRPC's and the pool's buffers, the threads).
  replay(20);
  const double baseline = ResidentMb();
  const double peak = replay(kStreams);
  // The memory the replays freed goes back to the system within a few trims.
  double after = 0;
  const bool returned = testing::PollUntil(
      [&] {
        after = ResidentMb();
        return after <= baseline + 40;
      },
      absl::Seconds(30));
  // Measured here (clients included): baseline 34 MB, peak 82 MB, after 36 MB. With pages of 500
  // and no trim, as before: baseline 42 MB, peak 119 MB, after 108 MB, which stayed.
  std::printf("resident MB: baseline %.1f, peak %.1f, after the streams ended %.1f\n", baseline,
              peak, after);
  EXPECT_TRUE(returned) << "resident " << after << " MB after the streams ended, baseline "
                        << baseline << " MB";
}

}  // namespace
}  // namespace dangjian::registry
