// WatchOrgChanges over gRPC against real PostgreSQL and Redis: the full history in revision order,
// live changes, resuming without loss or repetition, concurrent writers, subtree scope, argument
// and authentication errors, and shutdown while a stream is open.
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/status.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// Reads one WatchOrgChanges stream on its own thread, so a test can wait for changes with a
// deadline instead of blocking in Read().
class FeedReader {
 public:
  // With `limit` > 0 the reader hangs up after that many changes, as a client that disconnects
  // mid-stream.
  FeedReader(v1::OrgRegistry::Stub& stub, std::unique_ptr<grpc::ClientContext> ctx,
             int64_t from_revision, size_t limit = 0)
      : ctx_(std::move(ctx)), limit_(limit) {
    v1::WatchOrgChangesRequest req;
    req.set_from_revision(from_revision);
    reader_ = stub.WatchOrgChanges(ctx_.get(), req);
    thread_ = std::thread([this] { Run(); });
  }
  ~FeedReader() { Cancel(); }

  // True once at least `n` changes have arrived, false if `timeout` passes first.
  bool WaitForCount(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    return testing::PollUntil([&] { return count() >= n; }, timeout);
  }
  // True once the stream has ended.
  bool WaitForEnd(absl::Duration timeout = absl::Seconds(20)) {
    return testing::PollUntil([&] { return ended(); }, timeout);
  }
  void Cancel() {
    ctx_->TryCancel();
    if (thread_.joinable()) thread_.join();
  }

  size_t count() const {
    absl::MutexLock lock(&mu_);
    return changes_.size();
  }
  bool ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }
  std::vector<v1::OrgChange> changes() const {
    absl::MutexLock lock(&mu_);
    return changes_;
  }
  grpc::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  absl::Time end_time() const {
    absl::MutexLock lock(&mu_);
    return end_time_;
  }

 private:
  void Run() {
    v1::OrgChange change;
    while (reader_->Read(&change)) {
      absl::MutexLock lock(&mu_);
      changes_.push_back(change);
      if (limit_ > 0 && changes_.size() >= limit_) {
        ctx_->TryCancel();
        break;
      }
    }
    grpc::Status st = reader_->Finish();
    absl::MutexLock lock(&mu_);
    status_ = st;
    ended_ = true;
    end_time_ = absl::Now();
  }

  std::unique_ptr<grpc::ClientContext> ctx_;  // outlives reader_
  const size_t limit_;
  std::unique_ptr<grpc::ClientReader<v1::OrgChange>> reader_;
  mutable absl::Mutex mu_;
  std::vector<v1::OrgChange> changes_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Time end_time_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

std::vector<int64_t> Revisions(const std::vector<v1::OrgChange>& changes) {
  std::vector<int64_t> out;
  for (const auto& c : changes) out.push_back(c.revision());
  return out;
}

std::vector<int64_t> OrgIds(const std::vector<v1::OrgChange>& changes) {
  std::vector<int64_t> out;
  for (const auto& c : changes) out.push_back(c.org().id());
  return out;
}

std::vector<v1::ChangeType> Types(const std::vector<v1::OrgChange>& changes) {
  std::vector<v1::ChangeType> out;
  for (const auto& c : changes) out.push_back(c.type());
  return out;
}

// Each revision is exactly one more than the one before it.
void ExpectContiguous(const std::vector<v1::OrgChange>& changes) {
  for (size_t i = 1; i < changes.size(); ++i) {
    ASSERT_EQ(changes[i].revision(), changes[i - 1].revision() + 1)
        << "gap or repeat after revision " << changes[i - 1].revision();
  }
}

class WatchTest : public RegistryFixture {
 protected:
  // Opens a feed as `token` (the admin when empty) from `from_revision`.
  std::unique_ptr<FeedReader> Watch(int64_t from_revision, const std::string& token = "",
                                    size_t limit = 0) {
    return std::make_unique<FeedReader>(
        *stub_, Ctx(token.empty() ? admin_ : token, absl::Seconds(120)), from_revision, limit);
  }

  // Every org under `root_id` (0: all), in tree order.
  std::vector<v1::Org> ListAll(int64_t root_id) {
    std::vector<v1::Org> all;
    v1::ListOrgsRequest req;
    req.set_root_id(root_id);
    req.set_page_size(1000);
    for (int pages = 0; pages < 100; ++pages) {
      v1::ListOrgsResponse page;
      grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &page);
      EXPECT_TRUE(st.ok()) << st.error_message();
      if (!st.ok()) break;
      all.insert(all.end(), page.orgs().begin(), page.orgs().end());
      if (page.next_page_token().empty()) break;
      req.set_page_token(page.next_page_token());
    }
    return all;
  }

  grpc::Status Rename(v1::Org* org, const std::string& name) {
    v1::UpdateOrgRequest req;
    *req.mutable_org() = *org;
    req.mutable_org()->set_name(name);
    req.mutable_update_mask()->add_paths("name");
    return stub_->UpdateOrg(Ctx(admin_).get(), req, org);
  }

  grpc::Status Move(v1::Org* org, int64_t new_parent) {
    v1::MoveOrgRequest req;
    req.set_id(org->id());
    req.set_new_parent_id(new_parent);
    req.set_etag(org->etag());
    return stub_->MoveOrg(Ctx(admin_).get(), req, org);
  }

  grpc::Status Dissolve(v1::Org* org) {
    v1::DissolveOrgRequest req;
    req.set_id(org->id());
    req.set_etag(org->etag());
    req.set_reason("撤销文件 2024-1");
    return stub_->DissolveOrg(Ctx(admin_).get(), req, org);
  }

  v1::Org Fresh(int64_t id) {
    v1::Org out;
    EXPECT_TRUE(Get(id, &out, admin_).ok());
    return out;
  }
};

TEST_F(WatchTest, Watch_FromZeroStreamsTheWholeHistoryInRevisionOrder) {
  StartRegistry();
  v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委");
  v1::Org d1 = Create(city.id(), v1::ORG_KIND_COMMITTEE, "甲区委");
  v1::Org general = Create(d1.id(), v1::ORG_KIND_GENERAL_BRANCH, "党总支");
  v1::Org branch = Create(general.id(), v1::ORG_KIND_BRANCH, "支部");
  v1::Org group = Create(branch.id(), v1::ORG_KIND_GROUP, "小组");
  v1::Org d2 = Create(city.id(), v1::ORG_KIND_COMMITTEE, "乙区委");
  ASSERT_TRUE(Rename(&branch, "第一支部").ok());
  ASSERT_TRUE(Move(&general, d2.id()).ok());  // general, branch and group move
  group = Fresh(group.id());
  ASSERT_TRUE(Dissolve(&group).ok());

  auto feed = Watch(0);
  ASSERT_TRUE(feed->WaitForCount(11)) << "got " << feed->count() << " of 11 changes";
  const std::vector<v1::OrgChange> changes = feed->changes();
  ASSERT_EQ(changes.size(), 11u) << "nothing beyond the history";
  ExpectContiguous(changes);
  EXPECT_EQ(changes.front().revision(), 1);
  EXPECT_THAT(Types(changes),
              ElementsAre(v1::CHANGE_TYPE_CREATED, v1::CHANGE_TYPE_CREATED, v1::CHANGE_TYPE_CREATED,
                          v1::CHANGE_TYPE_CREATED, v1::CHANGE_TYPE_CREATED, v1::CHANGE_TYPE_CREATED,
                          v1::CHANGE_TYPE_UPDATED, v1::CHANGE_TYPE_MOVED, v1::CHANGE_TYPE_MOVED,
                          v1::CHANGE_TYPE_MOVED, v1::CHANGE_TYPE_DISSOLVED));
  EXPECT_THAT(OrgIds(changes),
              ElementsAre(city.id(), d1.id(), general.id(), branch.id(), group.id(), d2.id(),
                          branch.id(), general.id(), branch.id(), group.id(), group.id()));
  for (const v1::OrgChange& c : changes) {
    SCOPED_TRACE(absl::StrCat("revision ", c.revision()));
    EXPECT_EQ(c.org().revision(), c.revision()) << "the org as of its change";
    EXPECT_GT(c.change_time().seconds(), 0);
  }
  // Creates carry the org as created.
  EXPECT_EQ(changes[4].org().parent_id(), branch.id());
  EXPECT_EQ(changes[4].org().depth(), 4);
  EXPECT_EQ(changes[3].org().name(), "支部");
  // The update carries the new value.
  EXPECT_EQ(changes[6].org().name(), "第一支部");
  // The move: the moved root names its previous parent; the subtree follows with new ancestors.
  EXPECT_EQ(changes[7].previous_parent_id(), d1.id());
  EXPECT_EQ(changes[7].org().parent_id(), d2.id());
  EXPECT_THAT(changes[7].org().ancestor_ids(), ElementsAre(city.id(), d2.id()));
  EXPECT_EQ(changes[8].org().parent_id(), general.id());
  EXPECT_THAT(changes[8].org().ancestor_ids(), ElementsAre(city.id(), d2.id(), general.id()));
  EXPECT_EQ(changes[8].org().name(), "第一支部");
  EXPECT_THAT(changes[9].org().ancestor_ids(),
              ElementsAre(city.id(), d2.id(), general.id(), branch.id()));
  EXPECT_EQ(changes[9].org().depth(), 4);
  // The dissolution.
  EXPECT_EQ(changes[10].org().status(), v1::ORG_STATUS_DISSOLVED);
  EXPECT_EQ(changes[10].org().dissolve_reason(), "撤销文件 2024-1");

  // The stream then follows: the next change arrives with the next revision.
  v1::Org d3 = Create(city.id(), v1::ORG_KIND_COMMITTEE, "丙区委");
  ASSERT_TRUE(feed->WaitForCount(12));
  EXPECT_EQ(feed->changes().back().revision(), 12);
  EXPECT_EQ(feed->changes().back().org().id(), d3.id());
  EXPECT_FALSE(feed->ended()) << feed->status().error_message();
}

TEST_F(WatchTest, Watch_ReaderAtTheHeadReceivesEachNewChange) {
  // No polling: only the writes' own notifications can wake the stream.
  RegistryConfig config = MakeConfig();
  config.feed_poll_interval = absl::Hours(1);
  StartRegistry(std::move(config));
  v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委");
  auto feed = Watch(city.revision());
  for (int i = 0; i < 20; ++i) {
    v1::Org org = Create(city.id(), v1::ORG_KIND_COMMITTEE, absl::StrCat("区委", i));
    ASSERT_TRUE(feed->WaitForCount(i + 1, absl::Seconds(10)))
        << "change " << i << " (revision " << org.revision() << ") never arrived";
    const v1::OrgChange last = feed->changes().back();
    EXPECT_EQ(last.revision(), org.revision());
    EXPECT_EQ(last.org().id(), org.id());
    EXPECT_EQ(last.type(), v1::CHANGE_TYPE_CREATED);
  }
  ExpectContiguous(feed->changes());
  EXPECT_EQ(feed->count(), 20u);
}

TEST_F(WatchTest, Watch_ResumeFromTheLastRevisionSeenMissesAndRepeatsNothing) {
  StartRegistry();
  std::vector<int64_t> ids;
  v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委");
  ids.push_back(city.id());
  for (int i = 0; i < 9; ++i) {
    ids.push_back(Create(city.id(), v1::ORG_KIND_COMMITTEE, absl::StrCat("区委", i)).id());
  }
  // A client that hangs up after 4 changes, with 6 more already waiting to be sent.
  auto first = Watch(0, "", 4);
  ASSERT_TRUE(first->WaitForEnd());
  const std::vector<v1::OrgChange> seen = first->changes();
  ASSERT_EQ(seen.size(), 4u);
  const int64_t last = seen.back().revision();

  // Changes while it is away.
  for (int i = 0; i < 3; ++i) {
    ids.push_back(Create(city.id(), v1::ORG_KIND_COMMITTEE, absl::StrCat("新区委", i)).id());
  }
  auto second = Watch(last);
  ASSERT_TRUE(second->WaitForCount(9)) << "got " << second->count() << " of 9";
  const std::vector<v1::OrgChange> rest = second->changes();
  ASSERT_EQ(rest.size(), 9u);
  EXPECT_EQ(rest.front().revision(), last + 1);
  ExpectContiguous(rest);

  std::vector<v1::OrgChange> all = seen;
  all.insert(all.end(), rest.begin(), rest.end());
  ExpectContiguous(all);
  EXPECT_THAT(OrgIds(all), ElementsAreArray(ids)) << "every create exactly once, in order";

  // Resuming from the head sends nothing old, then the next change.
  auto third = Watch(all.back().revision());
  v1::Org next = Create(city.id(), v1::ORG_KIND_COMMITTEE, "最后");
  ASSERT_TRUE(third->WaitForCount(1));
  EXPECT_EQ(third->changes().front().org().id(), next.id());
  EXPECT_EQ(third->changes().front().revision(), all.back().revision() + 1);
}

TEST_F(WatchTest, Watch_ConcurrentWritersEachCreateAppearsOnceInOrder) {
  StartRegistry();
  v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委", "ROOT");
  auto live = Watch(0);  // follows while the writers run

  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  constexpr int kImported = 30;
  std::vector<std::thread> writers;
  std::vector<std::vector<int64_t>> created(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        v1::CreateOrgRequest req;
        req.set_request_id(absl::StrCat("w", t, "-", i));
        *req.mutable_org() =
            MakeOrg(city.id(), v1::ORG_KIND_COMMITTEE, absl::StrCat("区委 ", t, "-", i));
        v1::Org out;
        grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &out);
        EXPECT_TRUE(st.ok()) << st.error_message();
        if (st.ok()) created[t].push_back(out.id());
      }
    });
  }
  // An import of many rows in one transaction, racing the single creates.
  writers.emplace_back([&] {
    v1::ImportOrgsResponse resp;
    auto ctx = Ctx(admin_, absl::Seconds(60));
    auto writer = stub_->ImportOrgs(ctx.get(), &resp);
    for (int i = 0; i < kImported; ++i) {
      v1::ImportOrgsRequest msg;
      v1::ImportOrgRow* row = msg.add_rows();
      row->set_code(absl::StrCat("IMP", i));
      row->set_parent_code("ROOT");
      row->set_name(absl::StrCat("导入区委 ", i));
      row->set_kind(v1::ORG_KIND_COMMITTEE);
      row->set_domain(v1::ORG_DOMAIN_COMMUNITY);
      row->set_region_code("320102");
      if (!writer->Write(msg)) break;
    }
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.created(), kImported);
  });
  for (auto& w : writers) w.join();

  std::set<int64_t> expected;
  for (const v1::Org& o : ListAll(0)) expected.insert(o.id());
  const size_t total = 1 + kThreads * kPerThread + kImported;
  ASSERT_EQ(expected.size(), total);
  for (const auto& ids : created) {
    for (int64_t id : ids) EXPECT_EQ(expected.count(id), 1u);
  }

  ASSERT_TRUE(live->WaitForCount(total)) << "got " << live->count() << " of " << total;
  const std::vector<v1::OrgChange> changes = live->changes();
  ASSERT_EQ(changes.size(), total);
  EXPECT_EQ(changes.front().revision(), 1);
  ExpectContiguous(changes);
  std::multiset<int64_t> seen;
  for (const v1::OrgChange& c : changes) {
    EXPECT_EQ(c.type(), v1::CHANGE_TYPE_CREATED);
    seen.insert(c.org().id());
  }
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()), expected);
  EXPECT_EQ(seen.size(), expected.size()) << "no create appears twice";

  // A reader arriving afterwards sees exactly the same sequence.
  auto later = Watch(0);
  ASSERT_TRUE(later->WaitForCount(total));
  EXPECT_EQ(Revisions(later->changes()), Revisions(changes));
  EXPECT_EQ(OrgIds(later->changes()), OrgIds(changes));
}

TEST_F(WatchTest, Watch_HistoryLongerThanABatchAndScopeSkippingWholeBatches) {
  StartRegistry();
  // 1203 changes from one import: R, D1, D2, 1200 branches under D2, then one under D1. The
  // feed reads 500 changes per query, so a reader scoped to D1 finds whole batches with nothing
  // for it and must read on.
  std::vector<v1::ImportOrgsRequest> messages(1);
  auto add = [&](const std::string& code, const std::string& parent, v1::OrgKind kind) {
    if (messages.back().rows_size() == 200) messages.emplace_back();
    v1::ImportOrgRow* row = messages.back().add_rows();
    row->set_code(code);
    row->set_parent_code(parent);
    row->set_name(absl::StrCat("组织 ", code));
    row->set_kind(kind);
    row->set_domain(v1::ORG_DOMAIN_COMMUNITY);
    row->set_region_code("320102");
  };
  add("R", "", v1::ORG_KIND_COMMITTEE);
  add("D1", "R", v1::ORG_KIND_COMMITTEE);
  add("D2", "R", v1::ORG_KIND_COMMITTEE);
  for (int i = 0; i < 1200; ++i) add(absl::StrCat("B", i), "D2", v1::ORG_KIND_BRANCH);
  add("IN", "D1", v1::ORG_KIND_BRANCH);
  v1::ImportOrgsResponse resp;
  {
    auto ctx = Ctx(admin_, absl::Seconds(60));
    auto writer = stub_->ImportOrgs(ctx.get(), &resp);
    for (const auto& m : messages) ASSERT_TRUE(writer->Write(m));
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  ASSERT_EQ(resp.created(), 1204);
  std::map<std::string, v1::Org> by_code;
  for (const v1::Org& o : ListAll(0)) by_code[o.code()] = o;

  auto all = Watch(0);
  ASSERT_TRUE(all->WaitForCount(1204)) << "got " << all->count();
  const std::vector<v1::OrgChange> changes = all->changes();
  ASSERT_EQ(changes.size(), 1204u);
  EXPECT_EQ(changes.front().revision(), 1);
  ExpectContiguous(changes);
  EXPECT_EQ(changes.back().org().id(), by_code.at("IN").id());

  auto scoped = Watch(0, Token({"registry.read"}, by_code.at("D1").id()));
  ASSERT_TRUE(scoped->WaitForCount(2)) << "got " << scoped->count();
  EXPECT_THAT(OrgIds(scoped->changes()), ElementsAre(by_code.at("D1").id(), by_code.at("IN").id()));
  v1::Org more = Create(by_code.at("D1").id(), v1::ORG_KIND_BRANCH, "后来的支部");
  ASSERT_TRUE(scoped->WaitForCount(3));
  EXPECT_EQ(scoped->changes().back().org().id(), more.id());
  EXPECT_EQ(scoped->changes().back().revision(), 1205);
}

TEST_F(WatchTest, Watch_ScopedReaderSeesOnlyItsSubtreeAndMovesAcrossItsEdge) {
  StartRegistry();
  v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委");
  v1::Org d1 = Create(city.id(), v1::ORG_KIND_COMMITTEE, "甲区委");
  v1::Org d2 = Create(city.id(), v1::ORG_KIND_COMMITTEE, "乙区委");
  v1::Org b1 = Create(d1.id(), v1::ORG_KIND_BRANCH, "甲一支部");
  v1::Org b2 = Create(d2.id(), v1::ORG_KIND_BRANCH, "乙一支部");
  const std::string scoped = Token({"registry.read"}, d1.id());
  auto feed = Watch(0, scoped);
  ASSERT_TRUE(feed->WaitForCount(2));

  v1::Org b3 = Create(d1.id(), v1::ORG_KIND_BRANCH, "甲二支部");  // inside
  Create(d2.id(), v1::ORG_KIND_BRANCH, "乙二支部");               // outside
  ASSERT_TRUE(Move(&b1, d2.id()).ok());                           // moves out
  ASSERT_TRUE(Move(&b2, d1.id()).ok());                           // moves in
  ASSERT_TRUE(Rename(&b1, "已迁出支部").ok());                    // outside now
  v1::Org d2_now = Fresh(d2.id());
  ASSERT_TRUE(Rename(&d2_now, "乙区委（新）").ok());              // outside
  v1::Org b5 = Create(d1.id(), v1::ORG_KIND_BRANCH, "甲三支部");  // inside: the last change

  ASSERT_TRUE(feed->WaitForCount(6)) << "got " << feed->count() << " of 6";
  const std::vector<v1::OrgChange> changes = feed->changes();
  ASSERT_EQ(changes.size(), 6u);
  EXPECT_THAT(OrgIds(changes), ElementsAre(d1.id(), b1.id(), b3.id(), b1.id(), b2.id(), b5.id()));
  EXPECT_THAT(Types(changes),
              ElementsAre(v1::CHANGE_TYPE_CREATED, v1::CHANGE_TYPE_CREATED, v1::CHANGE_TYPE_CREATED,
                          v1::CHANGE_TYPE_MOVED, v1::CHANGE_TYPE_MOVED, v1::CHANGE_TYPE_CREATED));
  EXPECT_EQ(changes[3].previous_parent_id(), d1.id());
  EXPECT_EQ(changes[3].org().parent_id(), d2.id());
  EXPECT_EQ(changes[4].previous_parent_id(), d2.id());
  EXPECT_EQ(changes[4].org().parent_id(), d1.id());
  for (size_t i = 1; i < changes.size(); ++i) {
    EXPECT_GT(changes[i].revision(), changes[i - 1].revision());
  }
}

TEST_F(WatchTest, Watch_BadArgumentsAndCallersAreRefused) {
  StartRegistry();
  Create(0, v1::ORG_KIND_COMMITTEE, "市委");
  auto negative = Watch(-1);
  auto anonymous = std::make_unique<FeedReader>(*stub_, Ctx("", absl::Seconds(30)), 0);
  auto no_role = Watch(0, Token({"membership.read"}, std::nullopt));
  ASSERT_TRUE(negative->WaitForEnd());
  ASSERT_TRUE(anonymous->WaitForEnd());
  ASSERT_TRUE(no_role->WaitForEnd());
  EXPECT_EQ(negative->status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<std::string> fields;
  for (const auto& v : GetFieldViolations(FromGrpcStatus(negative->status()))) {
    fields.push_back(v.field);
  }
  EXPECT_THAT(fields, ElementsAre("from_revision"));
  EXPECT_EQ(anonymous->status().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(no_role->status().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(negative->count() + anonymous->count() + no_role->count(), 0u);
}

TEST_F(WatchTest, Watch_ShutdownEndsOpenStreamsWithUnavailablePromptly) {
  StartRegistry();
  v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委");
  auto caught_up = Watch(0);              // waits at the head after one change
  auto at_head = Watch(city.revision());  // waits at the head from the start
  ASSERT_TRUE(caught_up->WaitForCount(1));
  ASSERT_FALSE(at_head->ended());

  const absl::Time start = absl::Now();
  app_->Shutdown();
  const absl::Duration shutdown_took = absl::Now() - start;
  ASSERT_TRUE(caught_up->WaitForEnd(absl::Seconds(5)));
  ASSERT_TRUE(at_head->WaitForEnd(absl::Seconds(5)));
  EXPECT_EQ(caught_up->status().error_code(), grpc::StatusCode::UNAVAILABLE)
      << caught_up->status().error_message();
  EXPECT_EQ(at_head->status().error_code(), grpc::StatusCode::UNAVAILABLE)
      << at_head->status().error_message();
  EXPECT_THAT(caught_up->status().error_message(), ::testing::HasSubstr("revision 1"))
      << "the message says where to resume";
  // Open streams must not hold shutdown for the whole grace period (2 s in the fixture).
  EXPECT_LT(caught_up->end_time() - start, absl::Milliseconds(1500));
  EXPECT_LT(at_head->end_time() - start, absl::Milliseconds(1500));
  EXPECT_LT(shutdown_took, absl::Milliseconds(1500));
}

// Regression test for a WatchReactor deleted while a worker or notifier thread still held its
// mutex (Finish() from off gRPC's threads, then OnDone() -> delete on gRPC's thread): the
// reactor's state now lives in a shared State those threads hold. Opens many streams and ends
// them by shutdown and by cancellation, over and over.
TEST_F(WatchTest, Watch_StreamsEndedOffGrpcThreadsNeverTouchAFreedReactor) {
  for (int cycle = 0; cycle < 8; ++cycle) {
    SCOPED_TRACE(absl::StrCat("cycle ", cycle));
    RegistryConfig config = MakeConfig();
    config.watch_limits.max_per_caller = 100;  // 50 streams of one caller at once
    StartRegistry(std::move(config));
    Create(0, v1::ORG_KIND_COMMITTEE, absl::StrCat("市委", cycle));
    // Streams cancelled while their first fetch may still be running on a worker.
    for (int i = 0; i < 20; ++i) Watch(0)->Cancel();
    // Streams waiting at the head when the server shuts down.
    std::vector<std::unique_ptr<FeedReader>> feeds;
    for (int i = 0; i < 30; ++i) feeds.push_back(Watch(0));
    for (auto& feed : feeds) ASSERT_TRUE(feed->WaitForCount(cycle + 1));
    app_->Shutdown();
    for (auto& feed : feeds) {
      ASSERT_TRUE(feed->WaitForEnd(absl::Seconds(5)));
      EXPECT_EQ(feed->status().error_code(), grpc::StatusCode::UNAVAILABLE);
    }
    feeds.clear();
    stub_.reset();
    channel_.reset();
    app_.reset();
  }
}

}  // namespace
}  // namespace dangjian::registry
