// The registry's Redis cache seen over gRPC, against real PostgreSQL and Redis: cache hits,
// read-after-write after updates and moves, and correct answers while Redis is killed or paused,
// with no stale value served once it is back.
#include <google/protobuf/util/message_differencer.h>
#include <hiredis/hiredis.h>
#include <prometheus/metric_family.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAreArray;

class CacheFaultTest : public RegistryFixture {
 protected:
  void SetUp() override {
    RegistryFixture::SetUp();
    StartRegistry();
  }

  // The shared Redis is always left running and answering for the next test.
  void TearDown() override {
    if (paused_) redis_->Resume();
    paused_ = false;
    if (!redis_->running()) {
      absl::Status st = redis_->Restart();
      EXPECT_TRUE(st.ok()) << st;
    }
    RegistryFixture::TearDown();
  }

  void PauseRedis() {
    redis_->Pause();
    paused_ = true;
  }
  void ResumeRedis() {
    redis_->Resume();
    paused_ = false;
  }

  // `family`{result=`result`} of the registry `app` (default: the one under test).
  double Requests(const std::string& family_name, const std::string& result,
                  RegistryApp* app = nullptr) {
    for (const prometheus::MetricFamily& family : (app ? app : app_.get())->metrics().Collect()) {
      if (family.name != family_name) continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        for (const prometheus::ClientMetric::Label& label : m.label) {
          if (label.name == "result" && label.value == result) return m.counter.value;
        }
      }
    }
    ADD_FAILURE() << "no " << family_name << "{result=\"" << result << "\"}";
    return -1;
  }
  // Redis: dj_cache_requests_total. The in-process tier: dj_cache_local_requests_total.
  double CacheRequests(const std::string& result) {
    return Requests("dj_cache_requests_total", result);
  }
  double LocalRequests(const std::string& result, RegistryApp* app = nullptr) {
    return Requests("dj_cache_local_requests_total", result, app);
  }
  double AnyCacheHits() { return CacheRequests("hit") + LocalRequests("hit"); }

  // City > district d1 > sub-district d1a, city > district d2; general under d1 > branch > group.
  struct Tree {
    v1::Org city, d1, d1a, d2, general, branch, group;
  };
  Tree MakeTree() {
    Tree t;
    t.city = Create(0, v1::ORG_KIND_COMMITTEE, "市委", "CITY");
    t.d1 = Create(t.city.id(), v1::ORG_KIND_COMMITTEE, "甲区委");
    t.d1a = Create(t.d1.id(), v1::ORG_KIND_COMMITTEE, "甲区街道党工委");
    t.d2 = Create(t.city.id(), v1::ORG_KIND_COMMITTEE, "乙区委");
    t.general = Create(t.d1.id(), v1::ORG_KIND_GENERAL_BRANCH, "党总支");
    t.branch = Create(t.general.id(), v1::ORG_KIND_BRANCH, "支部");
    t.group = Create(t.branch.id(), v1::ORG_KIND_GROUP, "小组");
    return t;
  }

  // Short deadlines: a call that waits on a dead Redis fails the test instead of hanging.
  grpc::Status GetFast(int64_t id, v1::Org* out) {
    v1::GetOrgRequest req;
    req.set_id(id);
    return stub_->GetOrg(Ctx(admin_, absl::Seconds(3)).get(), req, out);
  }

  grpc::Status Rename(v1::Org* org, const std::string& name) {
    v1::UpdateOrgRequest req;
    *req.mutable_org() = *org;
    req.mutable_org()->set_name(name);
    req.mutable_update_mask()->add_paths("name");
    return stub_->UpdateOrg(Ctx(admin_, absl::Seconds(5)).get(), req, org);
  }

  grpc::Status Move(v1::Org* org, int64_t new_parent) {
    v1::MoveOrgRequest req;
    req.set_id(org->id());
    req.set_new_parent_id(new_parent);
    req.set_etag(org->etag());
    return stub_->MoveOrg(Ctx(admin_, absl::Seconds(5)).get(), req, org);
  }

  // One ListOrgs page (up to 1000) of the subtree under `root_id`.
  grpc::Status List(int64_t root_id, std::vector<v1::Org>* out) {
    v1::ListOrgsRequest req;
    req.set_root_id(root_id);
    req.set_page_size(1000);
    v1::ListOrgsResponse resp;
    grpc::Status st = stub_->ListOrgs(Ctx(admin_, absl::Seconds(3)).get(), req, &resp);
    out->assign(resp.orgs().begin(), resp.orgs().end());
    return st;
  }

  // The org `id` as ListOrgs(root_id) shows it; fails the test if it is missing.
  v1::Org Listed(int64_t root_id, int64_t id) {
    std::vector<v1::Org> orgs;
    grpc::Status st = List(root_id, &orgs);
    EXPECT_TRUE(st.ok()) << st.error_message();
    for (const v1::Org& o : orgs) {
      if (o.id() == id) return o;
    }
    ADD_FAILURE() << "org " << id << " is not listed under " << root_id;
    return v1::Org();
  }

  v1::Org Batched(int64_t id) {
    v1::BatchGetOrgsRequest req;
    req.add_ids(id);
    v1::BatchGetOrgsResponse resp;
    grpc::Status st = stub_->BatchGetOrgs(Ctx(admin_, absl::Seconds(3)).get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.orgs_size() == 1 ? resp.orgs(0) : v1::Org();
  }

  // Reads `id` until a read is served from either cache tier (a hit counter moves); every read
  // on the way must show `name`. True if a hit came within the timeout.
  bool ReadUntilCacheHit(int64_t id, const std::string& name) {
    return testing::PollUntil(
        [&] {
          const double hits = AnyCacheHits();
          v1::Org got;
          grpc::Status st = GetFast(id, &got);
          EXPECT_TRUE(st.ok()) << st.error_message();
          EXPECT_EQ(got.name(), name) << "a stale value was served";
          return AnyCacheHits() > hits;
        },
        absl::Seconds(15));
  }

  // Reads `id` until a read is answered from the in-process tier (Redis must have served it
  // once while the invalidation feed was current); `got` is the last answer.
  bool ReadUntilHeldInMemory(int64_t id, v1::Org* got) {
    return testing::PollUntil(
        [&] {
          const double local_hits = LocalRequests("hit");
          EXPECT_TRUE(GetFast(id, got).ok());
          return LocalRequests("hit") > local_hits;
        },
        absl::Seconds(10));
  }

  // Transactions of the named unit of work (dj_db_query_duration_seconds{query}) so far.
  double Queries(const std::string& query) {
    for (const prometheus::MetricFamily& family : app_->metrics().Collect()) {
      if (family.name != "dj_db_query_duration_seconds") continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        for (const prometheus::ClientMetric::Label& label : m.label) {
          if (label.name == "query" && label.value == query) {
            return static_cast<double>(m.histogram.sample_count);
          }
        }
      }
    }
    return 0;
  }
  double Counter(const std::string& name) {
    for (const prometheus::MetricFamily& family : app_->metrics().Collect()) {
      if (family.name == name && !family.metric.empty()) return family.metric[0].counter.value;
    }
    ADD_FAILURE() << "no " << name;
    return -1;
  }

  // A plain connection to the test's Redis, as anyone who can reach it would have.
  struct RawRedis {
    explicit RawRedis(int port) : ctx(redisConnect("127.0.0.1", port)) {}
    ~RawRedis() {
      if (ctx != nullptr) redisFree(ctx);
    }
    // The reply as text (strings, status, errors), or its integer as text; "" for nil.
    std::string Command(const std::vector<std::string>& args) {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const std::string& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      auto* reply = static_cast<redisReply*>(
          redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
      if (reply == nullptr) return "(no reply)";
      std::string out = reply->type == REDIS_REPLY_INTEGER ? absl::StrCat(reply->integer)
                        : reply->str != nullptr            ? std::string(reply->str, reply->len)
                                                           : "";
      freeReplyObject(reply);
      return out;
    }
    // Every key under `prefix`.
    std::vector<std::string> Keys(const std::string& prefix) {
      std::vector<std::string> keys;
      auto* reply = static_cast<redisReply*>(redisCommand(ctx, "KEYS %s*", prefix.c_str()));
      if (reply == nullptr) return keys;
      for (size_t i = 0; i < reply->elements; ++i) {
        keys.emplace_back(reply->element[i]->str, reply->element[i]->len);
      }
      freeReplyObject(reply);
      return keys;
    }
    redisContext* ctx;
  };
  std::string KeyPrefix() const { return absl::StrCat("dj:", database_, ":"); }

  // Imports one committee through ImportOrgs (a stream of one row).
  void ImportCommittee(const std::string& code, const std::string& parent_code,
                       const std::string& name, v1::ImportOrgsResponse* resp) {
    auto ctx = Ctx(admin_);
    auto writer = stub_->ImportOrgs(ctx.get(), resp);
    v1::ImportOrgsRequest msg;
    v1::ImportOrgRow* row = msg.add_rows();
    row->set_code(code);
    row->set_parent_code(parent_code);
    row->set_name(name);
    row->set_kind(v1::ORG_KIND_COMMITTEE);
    row->set_domain(v1::ORG_DOMAIN_COMMUNITY);
    row->set_region_code("320102");
    ASSERT_TRUE(writer->Write(msg));
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }

  bool paused_ = false;
};

// Every entry the registry writes to Redis expires, whatever path wrote it: org entries (read
// fills and writes), absent ids, list pages and the revision counter.
TEST_F(CacheFaultTest, Ttl_EveryKeyWrittenByAWorkloadExpires) {
  Tree t = MakeTree();
  v1::Org got;
  std::vector<v1::Org> listed;
  for (const v1::Org& o : {t.city, t.d1, t.branch, t.group})
    ASSERT_TRUE(GetFast(o.id(), &got).ok());
  ASSERT_TRUE(List(0, &listed).ok());
  ASSERT_TRUE(List(t.d1.id(), &listed).ok());
  Batched(t.d2.id());
  EXPECT_EQ(GetFast(t.group.id() + 1000, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Rename(&t.branch, "支部二").ok());
  ASSERT_TRUE(Move(&t.general, t.d2.id()).ok());
  ASSERT_TRUE(List(0, &listed).ok());
  ASSERT_TRUE(GetFast(t.branch.id(), &got).ok());

  RawRedis raw(redis_->port());
  ASSERT_NE(raw.ctx, nullptr);
  const std::vector<std::string> keys = raw.Keys(KeyPrefix());
  bool list_page = false, revision = false, absent = false;
  for (const std::string& key : keys) {
    const std::string pttl = raw.Command({"PTTL", key});
    EXPECT_GT(std::stoll(pttl), 0) << key << " has PTTL " << pttl;
    list_page |= absl::StrContains(key, ":list:");
    revision |= absl::EndsWith(key, ":revision");
    absent |= absl::EndsWith(key, absl::StrCat(":org:", t.group.id() + 1000));
  }
  EXPECT_TRUE(list_page && revision && absent) << absl::StrJoin(keys, " ");
  EXPECT_GE(keys.size(), 8u);
}

// Someone who can reach Redis plants an entry with a far-future version and no TTL: it is not
// served, it is deleted, and a later update is served as usual. The same for the revision that
// keys list pages.
TEST_F(CacheFaultTest, Poison_EntryAboveTheFeedHeadIsRefusedAndDeleted) {
  Tree t = MakeTree();
  RawRedis raw(redis_->port());
  ASSERT_NE(raw.ctx, nullptr);
  v1::Org forged = t.branch;
  forged.set_name("伪造");
  const std::string planted =
      absl::StrFormat("%016x:", (uint64_t{1} << 63) + 1000000) + forged.SerializeAsString();
  const std::string org_key = absl::StrCat(KeyPrefix(), "org:", t.branch.id());
  ASSERT_EQ(raw.Command({"SET", org_key, planted}), "OK");
  const std::string revision_key = absl::StrCat(KeyPrefix(), "revision");
  ASSERT_EQ(
      raw.Command({"SET", revision_key, absl::StrFormat("%016x:", (uint64_t{1} << 63) + 1000000)}),
      "OK");

  const double refused = Counter("dj_cache_entries_refused_total");
  v1::Org got;
  ASSERT_TRUE(GetFast(t.branch.id(), &got).ok());
  EXPECT_EQ(got.name(), t.branch.name());
  EXPECT_NE(raw.Command({"GET", org_key}), planted) << "the planted entry is still there";
  EXPECT_EQ(Counter("dj_cache_entries_refused_total"), refused + 1);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(GetFast(t.branch.id(), &got).ok());
    EXPECT_EQ(got.name(), t.branch.name());
  }
  EXPECT_EQ(Listed(t.d1.id(), t.branch.id()).name(), t.branch.name());
  EXPECT_EQ(Counter("dj_cache_entries_refused_total"), refused + 2) << "the planted revision";

  // Later legitimate updates are served, by id and in lists.
  ASSERT_TRUE(Rename(&t.branch, "支部新名").ok());
  EXPECT_TRUE(ReadUntilCacheHit(t.branch.id(), "支部新名"));
  EXPECT_EQ(Listed(t.d1.id(), t.branch.id()).name(), "支部新名");
  EXPECT_EQ(Batched(t.branch.id()).name(), "支部新名");
  for (const std::string& key : {org_key, revision_key}) {
    EXPECT_GT(std::stoll(raw.Command({"PTTL", key})), 0) << key;
  }
}

// An id that does not exist is cached as absent for a short while, so a scoped reader's probe
// of it is answered without PostgreSQL, like a probe of an id that exists outside its scope.
// Creating that id afterwards replaces the absent entry at once.
TEST_F(CacheFaultTest, Absent_SecondMissDoesNotReachPostgresAndCreationReplacesIt) {
  Tree t = MakeTree();
  const std::string scoped = Token({"registry.read"}, t.d2.id());
  const int64_t absent = t.group.id() + 1000;
  v1::Org got;
  const grpc::Status first = Get(absent, &got, scoped);
  EXPECT_FALSE(first.ok());
  const double queries = Queries("registry.get_org");
  for (int i = 0; i < 3; ++i) {
    const grpc::Status again = Get(absent, &got, scoped);
    EXPECT_EQ(again.error_code(), first.error_code());
    EXPECT_EQ(again.error_message(), first.error_message());
    EXPECT_EQ(GetFast(absent, &got).error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(GetFast(absent, &got).error_message(), absl::StrCat("org ", absent, " not found"));
  }
  EXPECT_EQ(Queries("registry.get_org"), queries) << "a known-absent id went to PostgreSQL";

  // The next ids the sequence hands out: cache them as absent, then create them (one by
  // CreateOrg, one by import); each is readable at once.
  const int64_t next = t.group.id() + 1;
  EXPECT_EQ(GetFast(next, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetFast(next + 1, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  const v1::Org created = Create(t.d2.id(), v1::ORG_KIND_GENERAL_BRANCH, "新党总支");
  ASSERT_EQ(created.id(), next);
  ASSERT_TRUE(GetFast(next, &got).ok());
  EXPECT_EQ(got.name(), "新党总支");
  v1::ImportOrgsResponse resp;
  ASSERT_NO_FATAL_FAILURE(ImportCommittee("IMPORTED", "CITY", "丙区委", &resp));
  ASSERT_EQ(resp.created(), 1);
  ASSERT_TRUE(GetFast(next + 1, &got).ok());
  EXPECT_EQ(got.name(), "丙区委");
}

TEST_F(CacheFaultTest, Cache_SecondGetOrgIsAHit) {
  // Imported orgs are not put in the cache, so the first read must miss.
  v1::ImportOrgsResponse resp;
  ASSERT_NO_FATAL_FAILURE(ImportCommittee("CITY", "", "市委", &resp));
  ASSERT_EQ(resp.created(), 1);
  std::vector<v1::Org> all;
  ASSERT_TRUE(List(0, &all).ok());
  ASSERT_EQ(all.size(), 1u);
  const int64_t id = all[0].id();

  const double hits0 = CacheRequests("hit");
  const double misses0 = CacheRequests("miss");
  v1::Org first, second;
  ASSERT_TRUE(GetFast(id, &first).ok());
  EXPECT_EQ(CacheRequests("miss"), misses0 + 1) << "the first read goes to PostgreSQL";
  EXPECT_EQ(CacheRequests("hit"), hits0);
  ASSERT_TRUE(GetFast(id, &second).ok());
  EXPECT_EQ(CacheRequests("hit"), hits0 + 1) << "the second read is served from Redis";
  EXPECT_EQ(CacheRequests("miss"), misses0 + 1);
  EXPECT_TRUE(MessageDifferencer::Equals(first, second)) << first.ShortDebugString() << "\nvs\n"
                                                         << second.ShortDebugString();
}

TEST_F(CacheFaultTest, ReadAfterWrite_UpdateIsVisibleAtOnceInGetBatchAndList) {
  Tree t = MakeTree();
  v1::Org branch = t.branch;
  for (int i = 0; i < 15; ++i) {
    // Warm every cached path with the current value.
    v1::Org warm;
    ASSERT_TRUE(GetFast(branch.id(), &warm).ok());
    ASSERT_TRUE(GetFast(branch.id(), &warm).ok());
    Listed(t.general.id(), branch.id());
    Batched(branch.id());

    const std::string name = absl::StrCat("第", i, "次改名");
    ASSERT_TRUE(Rename(&branch, name).ok());
    for (int r = 0; r < 5; ++r) {
      v1::Org got;
      ASSERT_TRUE(GetFast(branch.id(), &got).ok());
      ASSERT_EQ(got.name(), name) << "round " << i << ", read " << r;
      ASSERT_EQ(got.etag(), branch.etag());
      ASSERT_EQ(Listed(t.general.id(), branch.id()).name(), name) << "round " << i;
      ASSERT_EQ(Listed(t.city.id(), branch.id()).name(), name) << "round " << i;
      ASSERT_EQ(Batched(branch.id()).name(), name) << "round " << i;
    }
  }
}

TEST_F(CacheFaultTest, ReadAfterWrite_MoveUpdatesDescendantsAtOnce) {
  Tree t = MakeTree();
  v1::Org general = t.general;
  // Alternate the general branch between three parents at depths 1, 2 and 1.
  const std::vector<v1::Org> parents = {t.d1a, t.d2, t.d1, t.d1a, t.d2, t.d1};
  for (const v1::Org& parent : parents) {
    SCOPED_TRACE(absl::StrCat("moving under ", parent.name()));
    v1::Org warm;
    ASSERT_TRUE(GetFast(t.group.id(), &warm).ok());
    ASSERT_TRUE(GetFast(t.branch.id(), &warm).ok());
    Listed(t.city.id(), t.group.id());
    Batched(t.group.id());

    ASSERT_TRUE(Move(&general, parent.id()).ok());
    std::vector<int64_t> above(parent.ancestor_ids().begin(), parent.ancestor_ids().end());
    above.push_back(parent.id());
    std::vector<int64_t> branch_ancestors = above;
    branch_ancestors.push_back(general.id());
    std::vector<int64_t> group_ancestors = branch_ancestors;
    group_ancestors.push_back(t.branch.id());

    for (int r = 0; r < 5; ++r) {
      v1::Org group, branch;
      ASSERT_TRUE(GetFast(t.group.id(), &group).ok());
      ASSERT_TRUE(GetFast(t.branch.id(), &branch).ok());
      ASSERT_THAT(group.ancestor_ids(), ElementsAreArray(group_ancestors)) << "read " << r;
      ASSERT_EQ(group.depth(), parent.depth() + 3);
      ASSERT_THAT(branch.ancestor_ids(), ElementsAreArray(branch_ancestors));
      ASSERT_EQ(branch.depth(), parent.depth() + 2);
      const v1::Org listed = Listed(parent.id(), t.group.id());
      ASSERT_EQ(listed.depth(), parent.depth() + 3);
      ASSERT_THAT(listed.ancestor_ids(), ElementsAreArray(group_ancestors));
      ASSERT_THAT(Batched(t.group.id()).ancestor_ids(), ElementsAreArray(group_ancestors));
    }
  }
}

TEST_F(CacheFaultTest, RedisKilled_ServesFromPostgresAndRecoversWithTheLatestValue) {
  Tree t = MakeTree();
  v1::Org branch = t.branch;
  ASSERT_TRUE(ReadUntilCacheHit(branch.id(), branch.name()));
  std::vector<v1::Org> before;
  ASSERT_TRUE(List(t.city.id(), &before).ok());
  const double failures_before = CacheRequests("error") + CacheRequests("skipped");

  redis_->Kill();
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(absl::StrCat("round ", i, " without Redis"));
    v1::Org got;
    grpc::Status st = GetFast(branch.id(), &got);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(got.name(), branch.name());
    std::vector<v1::Org> listed;
    st = List(t.city.id(), &listed);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(listed.size(), before.size());

    const std::string name = absl::StrCat("无缓存改名", i);
    st = Rename(&branch, name);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_TRUE(GetFast(branch.id(), &got).ok());
    EXPECT_EQ(got.name(), name);
    EXPECT_EQ(got.etag(), branch.etag());
    EXPECT_EQ(Listed(t.city.id(), branch.id()).name(), name);
    EXPECT_EQ(Batched(branch.id()).name(), name);
  }
  EXPECT_GT(CacheRequests("error") + CacheRequests("skipped"), failures_before)
      << "the reads above must have found Redis gone (else this test tests nothing)";

  ASSERT_TRUE(redis_->Restart().ok());
  // The first reads after the restart already show the last write, and so does the value the
  // cache then serves.
  v1::Org got;
  ASSERT_TRUE(GetFast(branch.id(), &got).ok());
  EXPECT_EQ(got.name(), branch.name());
  EXPECT_EQ(Listed(t.city.id(), branch.id()).name(), branch.name());
  EXPECT_TRUE(ReadUntilCacheHit(branch.id(), branch.name()))
      << "the cache never served again after Redis came back";
  EXPECT_EQ(Listed(t.city.id(), branch.id()).name(), branch.name());
}

TEST_F(CacheFaultTest, RedisPaused_UpdateDuringPauseIsNeverServedStaleAfterResume) {
  Tree t = MakeTree();
  v1::Org branch = t.branch;
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // Even rounds also read during the pause; rounds 1 and 2 wait until Redis serves again (an
    // unrelated org comes from the cache) before the first read of the changed org, so that read
    // cannot be saved by an open breaker; round 3 moves the subtree as well.
    const bool read_during_pause = round % 2 == 0;
    const bool wait_until_serving = round == 1 || round == 2;
    const bool move_too = round == 3;

    // Fill the cache with the current values of the org, its list pages and a batch read.
    ASSERT_TRUE(ReadUntilCacheHit(branch.id(), branch.name()));
    ASSERT_EQ(Listed(t.general.id(), branch.id()).name(), branch.name());
    ASSERT_EQ(Listed(t.general.id(), branch.id()).name(), branch.name());
    ASSERT_EQ(Batched(branch.id()).name(), branch.name());
    v1::Org group_before;
    ASSERT_TRUE(GetFast(t.group.id(), &group_before).ok());
    ASSERT_TRUE(GetFast(t.group.id(), &group_before).ok());

    PauseRedis();
    const std::string name = absl::StrCat("暂停时改名", round);
    grpc::Status st = Rename(&branch, name);
    ASSERT_TRUE(st.ok()) << st.error_message();
    if (read_during_pause) {
      v1::Org got;
      ASSERT_TRUE(GetFast(branch.id(), &got).ok());
      EXPECT_EQ(got.name(), name);
      EXPECT_EQ(Listed(t.general.id(), branch.id()).name(), name);
    }
    v1::Org general;
    if (move_too) {
      ASSERT_TRUE(GetFast(t.general.id(), &general).ok());
      ASSERT_TRUE(Move(&general, general.parent_id() == t.d1.id() ? t.d1a.id() : t.d1.id()).ok());
    }
    ResumeRedis();
    if (wait_until_serving) {
      ASSERT_TRUE(ReadUntilCacheHit(t.city.id(), t.city.name())) << "Redis never served again";
    }

    // The FIRST read of each kind after the resume must be right.
    v1::Org got;
    ASSERT_TRUE(GetFast(branch.id(), &got).ok());
    EXPECT_EQ(got.name(), name) << "stale org served from the cache after the resume";
    if (!move_too) {
      EXPECT_EQ(got.etag(), branch.etag());  // (a move changes it once more)
    }
    EXPECT_EQ(Listed(t.general.id(), branch.id()).name(), name)
        << "stale list page served after the resume";
    EXPECT_EQ(Batched(branch.id()).name(), name) << "stale batch entry served after the resume";
    if (move_too) {
      v1::Org group;
      ASSERT_TRUE(GetFast(t.group.id(), &group).ok());
      ASSERT_EQ(group.ancestor_ids_size(), general.depth() + 2);
      EXPECT_EQ(group.ancestor_ids(group.ancestor_ids_size() - 2), general.id());
      EXPECT_EQ(group.ancestor_ids(group.ancestor_ids_size() - 3), general.parent_id())
          << "the group's ancestors are stale after the move";
      EXPECT_EQ(group.depth(), general.depth() + 2);
      EXPECT_NE(group.depth(), group_before.depth());
    }
    // And so is every read until, and after, the cache serves again.
    EXPECT_TRUE(ReadUntilCacheHit(branch.id(), name));
    EXPECT_EQ(Listed(t.general.id(), branch.id()).name(), name);
  }
}

// The in-process tier: once Redis has served an org, the next read is answered from memory, and
// a write is visible at once on the replica that made it.
TEST_F(CacheFaultTest, LocalTier_ThirdGetOrgIsServedFromMemory) {
  Tree t = MakeTree();
  v1::Org got;
  ASSERT_TRUE(ReadUntilHeldInMemory(t.branch.id(), &got));
  const double redis_hits = CacheRequests("hit");
  const double redis_misses = CacheRequests("miss");
  const double local_hits = LocalRequests("hit");
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(GetFast(t.branch.id(), &got).ok());
    EXPECT_EQ(got.name(), t.branch.name());
  }
  EXPECT_EQ(LocalRequests("hit"), local_hits + 5);
  EXPECT_EQ(CacheRequests("hit"), redis_hits) << "Redis was asked although memory held the org";
  EXPECT_EQ(CacheRequests("miss"), redis_misses);

  v1::Org branch = got;
  ASSERT_TRUE(Rename(&branch, "改名后").ok());
  ASSERT_TRUE(GetFast(t.branch.id(), &got).ok());
  EXPECT_EQ(got.name(), "改名后") << "the writer served its own old copy";
  EXPECT_EQ(got.etag(), branch.etag());
}

// A scoped caller never sees an org outside its subtree, even when memory holds it.
TEST_F(CacheFaultTest, LocalTier_ReportsItsSizeInEntriesAndBytesAndItsBudget) {
  Tree t = MakeTree();
  v1::Org got;
  ASSERT_TRUE(ReadUntilHeldInMemory(t.branch.id(), &got));
  ASSERT_TRUE(ReadUntilHeldInMemory(t.group.id(), &got));
  const auto gauge = [&](const std::string& name) {
    for (const prometheus::MetricFamily& family : app_->metrics().Collect()) {
      if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
    }
    ADD_FAILURE() << "no " << name;
    return -1.0;
  };
  EXPECT_GE(gauge("dj_cache_local_entries"), 2);
  // Each org-sized entry costs a few hundred bytes, as charged.
  EXPECT_GE(gauge("dj_cache_local_bytes"), 2 * 300);
  EXPECT_LE(gauge("dj_cache_local_bytes"), gauge("dj_cache_local_entries") * 2000);
  EXPECT_EQ(gauge("dj_cache_local_capacity_bytes"),
            static_cast<double>(MakeConfig().local_cache.max_bytes));
}

TEST_F(CacheFaultTest, LocalTier_OutOfScopeIsDeniedEvenWhenHeld) {
  Tree t = MakeTree();
  v1::Org got;
  ASSERT_TRUE(ReadUntilHeldInMemory(t.branch.id(), &got));
  const std::string outside = Token({"registry.read"}, t.d2.id());
  const std::string inside = Token({"registry.read"}, t.d1.id());
  grpc::Status st = Get(t.branch.id(), &got, outside);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  st = Get(t.branch.id(), &got, inside);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(got.id(), t.branch.id());
  st = Get(t.branch.id(), &got, "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// Two replicas on one database and one Redis: a write on A reaches B's memory through Redis'
// announcement, long before B's local entries would expire.
TEST_F(CacheFaultTest, LocalTier_WriteOnOneReplicaIsSeenByTheOther) {
  Tree t = MakeTree();
  RegistryConfig config = MakeConfig();
  config.local_cache.ttl = absl::Hours(1);
  auto other = RegistryApp::Start(config);
  ASSERT_TRUE(other.ok()) << other.status();
  auto b_stub = v1::OrgRegistry::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*other)->grpc_port()), grpc::InsecureChannelCredentials()));
  auto b_get = [&](v1::Org* out) {
    v1::GetOrgRequest req;
    req.set_id(t.branch.id());
    return b_stub->GetOrg(Ctx(admin_, absl::Seconds(3)).get(), req, out);
  };
  v1::Org got;
  // B keeps the current value in memory.
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        const double local_hits = LocalRequests("hit", other->get());
        EXPECT_TRUE(b_get(&got).ok());
        return LocalRequests("hit", other->get()) > local_hits;
      },
      absl::Seconds(10)));
  ASSERT_EQ(got.name(), t.branch.name());

  for (int i = 0; i < 5; ++i) {
    v1::Org branch = got;
    const std::string name = absl::StrCat("甲副本改名", i);
    ASSERT_TRUE(Rename(&branch, name).ok());
    EXPECT_TRUE(testing::PollUntil([&] { return b_get(&got).ok() && got.name() == name; },
                                   absl::Seconds(5)))
        << "replica B kept serving " << got.name() << " after A wrote " << name;
    EXPECT_EQ(got.etag(), branch.etag());
  }
  (*other)->Shutdown();
}

}  // namespace
}  // namespace dangjian::registry
