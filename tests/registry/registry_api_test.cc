// The registry's unary RPCs over gRPC, against real PostgreSQL and Redis: every RPC, its errors,
// pagination and its sealed tokens, idempotent create, optimistic concurrency, authorisation,
// free-text checks, and what a request that does not parse gets.
#include <google/protobuf/descriptor.pb.h>

#include <map>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "common/status.h"
#include "google/protobuf/field_mask.pb.h"
#include "services/registry/domain/paging.h"
#include "tests/common/raw_call.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class RegistryApiTest : public RegistryFixture {
 protected:
  void SetUp() override {
    RegistryFixture::SetUp();
    StartRegistry();
  }

  // A small tree: city committee > district committee > general branch > branch > group.
  struct Tree {
    v1::Org city, district, general, branch, group;
  };
  Tree MakeTree() {
    Tree t;
    t.city = Create(0, v1::ORG_KIND_COMMITTEE, "南京市委", "C-NJ");
    t.district = Create(t.city.id(), v1::ORG_KIND_COMMITTEE, "玄武区委", "C-XW");
    t.general = Create(t.district.id(), v1::ORG_KIND_GENERAL_BRANCH, "红山街道党总支", "G-HS");
    t.branch = Create(t.general.id(), v1::ORG_KIND_BRANCH, "红山第一社区党支部", "B-HS1");
    t.group = Create(t.branch.id(), v1::ORG_KIND_GROUP, "第一党小组", "P-HS1-1");
    return t;
  }

  // A ListOrgs request for the city's subtree, 2 orgs a page, and the token of its first page.
  std::string FirstPageToken(const Tree& t, v1::ListOrgsRequest& req) {
    req.set_root_id(t.city.id());
    req.set_page_size(2);
    v1::ListOrgsResponse page;
    const grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &page);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(page.next_page_token().empty());
    return page.next_page_token();
  }

  grpc::Status Update(const v1::Org& org, std::vector<std::string> paths, v1::Org* out,
                      const std::string& token = "") {
    v1::UpdateOrgRequest req;
    *req.mutable_org() = org;
    for (auto& p : paths) req.mutable_update_mask()->add_paths(p);
    return stub_->UpdateOrg(Ctx(token.empty() ? admin_ : token).get(), req, out);
  }
};

std::string RuleOf(const grpc::Status& st) {
  return GetViolatedRule(FromGrpcStatus(st)).value_or("");
}

std::vector<std::string> FieldsOf(const grpc::Status& st) {
  std::vector<std::string> fields;
  for (const auto& v : GetFieldViolations(FromGrpcStatus(st))) fields.push_back(v.field);
  return fields;
}

TEST_F(RegistryApiTest, CreateOrg_AssignsIdPathDepthAndEtag) {
  Tree t = MakeTree();
  EXPECT_GT(t.city.id(), 0);
  EXPECT_EQ(t.city.depth(), 0);
  EXPECT_EQ(t.group.depth(), 4);
  EXPECT_THAT(t.group.ancestor_ids(),
              ElementsAre(t.city.id(), t.district.id(), t.general.id(), t.branch.id()));
  EXPECT_EQ(t.group.status(), v1::ORG_STATUS_ACTIVE);
  EXPECT_FALSE(t.group.etag().empty());
  EXPECT_GT(t.group.revision(), t.branch.revision());
  v1::Org got;
  ASSERT_TRUE(Get(t.branch.id(), &got, admin_).ok());
  EXPECT_EQ(got.name(), "红山第一社区党支部");
  EXPECT_EQ(got.code(), "B-HS1");
  EXPECT_EQ(got.parent_id(), t.general.id());
}

TEST_F(RegistryApiTest, CreateOrg_SameRequestIdTwiceCreatesOnce) {
  v1::CreateOrgRequest req;
  req.set_request_id("import-42");
  *req.mutable_org() = MakeOrg(0, v1::ORG_KIND_COMMITTEE, "市委");
  v1::Org first, second;
  ASSERT_TRUE(stub_->CreateOrg(Ctx(admin_).get(), req, &first).ok());
  ASSERT_TRUE(stub_->CreateOrg(Ctx(admin_).get(), req, &second).ok());
  EXPECT_EQ(first.id(), second.id());
  v1::ListOrgsResponse all;
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), v1::ListOrgsRequest(), &all).ok());
  EXPECT_EQ(all.orgs_size(), 1);

  // The same request_id with a different request is refused, naming request_id.
  req.mutable_org()->set_name("另一个市委");
  v1::Org third;
  grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &third);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("request_id"));
}

TEST_F(RegistryApiTest, CreateOrg_InvalidFieldsAreAllNamed) {
  v1::CreateOrgRequest req;
  req.set_request_id("bad-1");
  v1::Org* org = req.mutable_org();
  org->set_name("");
  org->set_region_code("12345");
  org->set_code("has space");
  org->set_joint(true);
  org->set_kind(v1::ORG_KIND_COMMITTEE);
  org->mutable_established_date()->set_year(2023);
  org->mutable_established_date()->set_month(2);
  org->mutable_established_date()->set_day(29);
  v1::Org out;
  grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st),
              UnorderedElementsAre("org.domain", "org.code", "org.name", "org.region_code",
                                   "org.established_date", "org.joint"));
  v1::ListOrgsResponse all;
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), v1::ListOrgsRequest(), &all).ok());
  EXPECT_EQ(all.orgs_size(), 0) << "a failed request changes nothing";
}

TEST_F(RegistryApiTest, CreateOrg_RequestIdRequired) {
  v1::CreateOrgRequest req;
  *req.mutable_org() = MakeOrg(0, v1::ORG_KIND_COMMITTEE, "市委");
  v1::Org out;
  grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("request_id"));
}

TEST_F(RegistryApiTest, CreateOrg_KindParentRuleIsFailedPrecondition) {
  Tree t = MakeTree();
  v1::CreateOrgRequest req;
  req.set_request_id("group-under-committee");
  *req.mutable_org() = MakeOrg(t.district.id(), v1::ORG_KIND_GROUP, "错误的党小组");
  v1::Org out;
  grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(RuleOf(st), "kind-parent");
  EXPECT_NE(st.error_message().find("党小组"), std::string::npos);

  // A branch may sit directly under a committee, and a general branch may not be a root.
  Create(t.district.id(), v1::ORG_KIND_BRANCH, "机关党支部");
  req.set_request_id("root-general-branch");
  *req.mutable_org() = MakeOrg(0, v1::ORG_KIND_GENERAL_BRANCH, "无上级党总支");
  st = stub_->CreateOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(RuleOf(st), "kind-parent");
}

TEST_F(RegistryApiTest, CreateOrg_MissingParentIsNotFoundAndDuplicateCodeAlreadyExists) {
  Tree t = MakeTree();
  v1::CreateOrgRequest req;
  req.set_request_id("orphan");
  *req.mutable_org() = MakeOrg(999999, v1::ORG_KIND_BRANCH, "孤儿支部");
  v1::Org out;
  EXPECT_EQ(stub_->CreateOrg(Ctx(admin_).get(), req, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
  req.set_request_id("dup-code");
  *req.mutable_org() = MakeOrg(t.general.id(), v1::ORG_KIND_BRANCH, "重复编码支部", "B-HS1");
  EXPECT_EQ(stub_->CreateOrg(Ctx(admin_).get(), req, &out).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(RegistryApiTest, GetOrg_UnknownIdIsNotFoundAndBadIdInvalid) {
  v1::Org out;
  EXPECT_EQ(Get(12345, &out, admin_).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::Status st = Get(0, &out, admin_);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("id"));
}

TEST_F(RegistryApiTest, BatchGetOrgs_KeepsRequestOrderAndFailsWholeOnMissing) {
  Tree t = MakeTree();
  v1::BatchGetOrgsRequest req;
  for (int64_t id : {t.group.id(), t.city.id(), t.group.id()}) req.add_ids(id);
  v1::BatchGetOrgsResponse resp;
  ASSERT_TRUE(stub_->BatchGetOrgs(Ctx(admin_).get(), req, &resp).ok());
  ASSERT_EQ(resp.orgs_size(), 3);
  EXPECT_EQ(resp.orgs(0).id(), t.group.id());
  EXPECT_EQ(resp.orgs(1).id(), t.city.id());
  EXPECT_EQ(resp.orgs(2).id(), t.group.id());
  req.add_ids(987654);
  EXPECT_EQ(stub_->BatchGetOrgs(Ctx(admin_).get(), req, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  req.Clear();
  EXPECT_EQ(stub_->BatchGetOrgs(Ctx(admin_).get(), req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RegistryApiTest, UpdateOrg_ChangesMaskedFieldsOnly) {
  Tree t = MakeTree();
  v1::Org patch = t.branch;
  patch.set_name("红山第一社区联合党支部");
  patch.set_joint(true);
  patch.set_region_code("110101");  // not in the mask: must not change
  v1::Org out;
  ASSERT_TRUE(Update(patch, {"name", "joint"}, &out).ok());
  EXPECT_EQ(out.name(), "红山第一社区联合党支部");
  EXPECT_TRUE(out.joint());
  EXPECT_EQ(out.region_code(), "320102");
  EXPECT_NE(out.etag(), t.branch.etag());
  v1::Org got;
  ASSERT_TRUE(Get(t.branch.id(), &got, admin_).ok());
  EXPECT_EQ(got.name(), "红山第一社区联合党支部");
}

TEST_F(RegistryApiTest, UpdateOrg_StaleEtagIsAborted) {
  Tree t = MakeTree();
  v1::Org patch = t.branch;
  patch.set_name("第一次改名");
  v1::Org out;
  ASSERT_TRUE(Update(patch, {"name"}, &out).ok());
  patch.set_name("第二次改名");  // still carries the old etag
  grpc::Status st = Update(patch, {"name"}, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED);
  v1::Org got;
  ASSERT_TRUE(Get(t.branch.id(), &got, admin_).ok());
  EXPECT_EQ(got.name(), "第一次改名");
}

TEST_F(RegistryApiTest, UpdateOrg_TwoConcurrentUpdatesWithOneEtagOneWins) {
  Tree t = MakeTree();
  constexpr int kWriters = 8;
  std::vector<grpc::Status> results(kWriters);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] {
      v1::Org patch = t.branch;
      patch.set_name(absl::StrCat("并发改名", i));
      v1::Org out;
      results[i] = Update(patch, {"name"}, &out);
    });
  }
  for (auto& th : threads) th.join();
  int ok = 0, aborted = 0;
  std::string winner;
  for (int i = 0; i < kWriters; ++i) {
    if (results[i].ok()) {
      ++ok;
      winner = absl::StrCat("并发改名", i);
    } else if (results[i].error_code() == grpc::StatusCode::ABORTED) {
      ++aborted;
    }
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(aborted, kWriters - 1);
  v1::Org got;
  ASSERT_TRUE(Get(t.branch.id(), &got, admin_).ok());
  EXPECT_EQ(got.name(), winner);
}

TEST_F(RegistryApiTest, UpdateOrg_MaskErrorsNameThePath) {
  Tree t = MakeTree();
  v1::Org out;
  grpc::Status st = Update(t.branch, {"parent_id", "nonsense"}, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("update_mask.paths[0]", "update_mask.paths[1]"));
  st = Update(t.branch, {}, &out);
  EXPECT_THAT(FieldsOf(st), ElementsAre("update_mask"));
  v1::Org no_etag = t.branch;
  no_etag.clear_etag();
  st = Update(no_etag, {"name"}, &out);
  EXPECT_THAT(FieldsOf(st), ElementsAre("org.etag"));
}

TEST_F(RegistryApiTest, UpdateOrg_KindChangeCheckedAgainstChildren) {
  Tree t = MakeTree();
  v1::Org patch = t.general;
  patch.set_kind(v1::ORG_KIND_BRANCH);  // it has a branch child: a branch under a branch
  v1::Org out;
  grpc::Status st = Update(patch, {"kind"}, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(RuleOf(st), "kind-parent");
  patch.set_kind(v1::ORG_KIND_COMMITTEE);  // a 党总支 grown into a 党委 keeps its branch
  ASSERT_TRUE(Update(patch, {"kind"}, &out).ok());
  EXPECT_EQ(out.kind(), v1::ORG_KIND_COMMITTEE);
}

TEST_F(RegistryApiTest, UpdateOrg_NoChangeKeepsEtag) {
  Tree t = MakeTree();
  v1::Org out;
  ASSERT_TRUE(Update(t.branch, {"name"}, &out).ok());
  EXPECT_EQ(out.etag(), t.branch.etag());
}

TEST_F(RegistryApiTest, MoveOrg_SubtreeFollows) {
  Tree t = MakeTree();
  v1::Org other = Create(t.city.id(), v1::ORG_KIND_COMMITTEE, "秦淮区委");
  v1::MoveOrgRequest req;
  req.set_id(t.general.id());
  req.set_new_parent_id(other.id());
  req.set_etag(t.general.etag());
  v1::Org moved;
  ASSERT_TRUE(stub_->MoveOrg(Ctx(admin_).get(), req, &moved).ok());
  EXPECT_EQ(moved.parent_id(), other.id());
  v1::Org group;
  ASSERT_TRUE(Get(t.group.id(), &group, admin_).ok());
  EXPECT_THAT(group.ancestor_ids(),
              ElementsAre(t.city.id(), other.id(), t.general.id(), t.branch.id()));
  EXPECT_EQ(group.depth(), 4);
  EXPECT_NE(group.etag(), t.group.etag()) << "a moved descendant changed: its etag too";

  // The old parent's subtree no longer lists it; the new one does.
  v1::ListOrgsRequest list;
  list.set_root_id(t.district.id());
  v1::ListOrgsResponse page;
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), list, &page).ok());
  EXPECT_EQ(page.orgs_size(), 1);
  list.set_root_id(other.id());
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), list, &page).ok());
  EXPECT_EQ(page.orgs_size(), 4);
}

TEST_F(RegistryApiTest, MoveOrg_RejectsCycleAndKindRule) {
  Tree t = MakeTree();
  v1::MoveOrgRequest req;
  req.set_id(t.district.id());
  req.set_new_parent_id(t.branch.id());  // its own descendant
  v1::Org out;
  grpc::Status st = stub_->MoveOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(RuleOf(st), "move-cycle");
  req.set_id(t.branch.id());
  req.set_new_parent_id(t.branch.id());
  EXPECT_EQ(RuleOf(stub_->MoveOrg(Ctx(admin_).get(), req, &out)), "move-cycle");
  v1::Org other_branch = Create(t.general.id(), v1::ORG_KIND_BRANCH, "第二支部");
  req.set_id(t.group.id());
  req.set_new_parent_id(t.general.id());  // a group must sit under a branch
  EXPECT_EQ(RuleOf(stub_->MoveOrg(Ctx(admin_).get(), req, &out)), "kind-parent");
  req.set_new_parent_id(other_branch.id());
  EXPECT_TRUE(stub_->MoveOrg(Ctx(admin_).get(), req, &out).ok());
  req.set_etag("1-1");  // stale
  req.set_new_parent_id(t.branch.id());
  EXPECT_EQ(stub_->MoveOrg(Ctx(admin_).get(), req, &out).error_code(), grpc::StatusCode::ABORTED);
}

TEST_F(RegistryApiTest, DissolveOrg_RefusedWhileActiveChildren) {
  Tree t = MakeTree();
  v1::DissolveOrgRequest req;
  req.set_id(t.branch.id());
  req.set_reason("区委组织部批复〔2026〕12号");
  v1::Org out;
  grpc::Status st = stub_->DissolveOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(RuleOf(st), "dissolve-children");

  req.set_id(t.group.id());
  ASSERT_TRUE(stub_->DissolveOrg(Ctx(admin_).get(), req, &out).ok());
  EXPECT_EQ(out.status(), v1::ORG_STATUS_DISSOLVED);
  EXPECT_TRUE(out.has_dissolve_time());
  EXPECT_EQ(out.dissolve_reason(), "区委组织部批复〔2026〕12号");
  req.set_id(t.branch.id());
  ASSERT_TRUE(stub_->DissolveOrg(Ctx(admin_).get(), req, &out).ok());

  // Nothing new goes under a dissolved org, and it is not updated any more.
  v1::CreateOrgRequest create;
  create.set_request_id("under-dissolved");
  *create.mutable_org() = MakeOrg(t.branch.id(), v1::ORG_KIND_GROUP, "新党小组");
  EXPECT_EQ(RuleOf(stub_->CreateOrg(Ctx(admin_).get(), create, &out)), "parent-active");
  v1::Org patch = out;
  ASSERT_TRUE(Get(t.branch.id(), &patch, admin_).ok());
  patch.set_name("改名");
  EXPECT_EQ(RuleOf(Update(patch, {"name"}, &out)), "org-dissolved");

  req.clear_reason();
  st = stub_->DissolveOrg(Ctx(admin_).get(), req, &out);
  EXPECT_THAT(FieldsOf(st), ElementsAre("reason"));
}

TEST_F(RegistryApiTest, ListOrgs_PagesThroughSubtreeInTreeOrderWithFilters) {
  Tree t = MakeTree();
  for (int i = 0; i < 25; ++i) {
    Create(t.general.id(), v1::ORG_KIND_BRANCH, absl::StrCat("支部", i));
  }
  v1::ListOrgsRequest req;
  req.set_root_id(t.general.id());
  req.set_page_size(10);
  std::vector<int64_t> seen;
  std::string previous_path;
  int pages = 0;
  do {
    v1::ListOrgsResponse page;
    ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), req, &page).ok());
    ++pages;
    for (const v1::Org& o : page.orgs()) seen.push_back(o.id());
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen.size(), 28u);  // the general branch, 26 branches, one group
  EXPECT_EQ(seen.front(), t.general.id());
  std::set<int64_t> unique(seen.begin(), seen.end());
  EXPECT_EQ(unique.size(), seen.size());

  // Filters: only branches, only one level below.
  v1::ListOrgsRequest filtered;
  filtered.set_root_id(t.general.id());
  filtered.add_kinds(v1::ORG_KIND_BRANCH);
  filtered.set_max_depth(1);
  filtered.set_page_size(100);
  v1::ListOrgsResponse page;
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), filtered, &page).ok());
  EXPECT_EQ(page.orgs_size(), 26);
  EXPECT_TRUE(page.next_page_token().empty());
  filtered.clear_kinds();
  filtered.set_max_depth(0);
  filtered.add_kinds(v1::ORG_KIND_GROUP);
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), filtered, &page).ok());
  ASSERT_EQ(page.orgs_size(), 1);
  EXPECT_EQ(page.orgs(0).id(), t.group.id());
}

TEST_F(RegistryApiTest, ListOrgs_CachedPagesAnswerAsTheDatabaseDid) {
  // The first pass reads each page from PostgreSQL and caches it; the second, at the same feed
  // revision, is answered from the cached wire form. Page size 1 from the top of the tree puts a
  // root org (no ancestors) and nested ones last on a page, so every token's path is exercised.
  MakeTree();
  auto pass = [&](std::vector<std::string>& pages) {
    v1::ListOrgsRequest req;
    req.set_page_size(1);
    do {
      v1::ListOrgsResponse page;
      const grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &page);
      ASSERT_TRUE(st.ok()) << st.error_message();
      ASSERT_EQ(page.orgs_size(), 1);
      pages.push_back(page.orgs(0).SerializeAsString());
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty() && pages.size() < 10);
  };
  std::vector<std::string> from_db, from_cache;
  pass(from_db);
  pass(from_cache);
  EXPECT_EQ(from_db.size(), 5u);
  EXPECT_EQ(from_cache, from_db);
}

TEST_F(RegistryApiTest, ListOrgs_TokenWithOtherFiltersIsRefused) {
  Tree t = MakeTree();
  v1::ListOrgsRequest req;
  req.set_page_token(FirstPageToken(t, req));
  req.add_kinds(v1::ORG_KIND_BRANCH);
  v1::ListOrgsResponse page;
  grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &page);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("page_token"));
  req.set_page_token("garbage!");
  EXPECT_THAT(FieldsOf(stub_->ListOrgs(Ctx(admin_).get(), req, &page)), ElementsAre("page_token"));
}

TEST_F(RegistryApiTest, GetAncestors_ChainFromTheTopOfScope) {
  Tree t = MakeTree();
  v1::GetAncestorsRequest req;
  req.set_id(t.group.id());
  v1::GetAncestorsResponse resp;
  ASSERT_TRUE(stub_->GetAncestors(Ctx(admin_).get(), req, &resp).ok());
  ASSERT_EQ(resp.ancestors_size(), 4);
  EXPECT_EQ(resp.ancestors(0).id(), t.city.id());
  EXPECT_EQ(resp.ancestors(3).id(), t.branch.id());
  // A caller scoped to the district sees the chain from the district down.
  const std::string district_reader = Token({"registry.read"}, t.district.id());
  ASSERT_TRUE(stub_->GetAncestors(Ctx(district_reader).get(), req, &resp).ok());
  ASSERT_EQ(resp.ancestors_size(), 3);
  EXPECT_EQ(resp.ancestors(0).id(), t.district.id());
}

TEST_F(RegistryApiTest, Auth_MissingForgedAndExpiredTokensAreUnauthenticated) {
  Tree t = MakeTree();
  v1::Org out;
  EXPECT_EQ(Get(t.city.id(), &out, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Get(t.city.id(), &out, "not-a-jwt").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const std::string forged =
      Token({"admin"}, std::nullopt, absl::Hours(1), "another-secret-of-at-least-32-bytes!!");
  EXPECT_EQ(Get(t.city.id(), &out, forged).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const std::string expired = Token({"admin"}, std::nullopt, absl::Hours(1), std::string(kSecret),
                                    absl::Now() - absl::Hours(2));
  EXPECT_EQ(Get(t.city.id(), &out, expired).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(RegistryApiTest, Auth_RolesGateReadsAndWrites) {
  Tree t = MakeTree();
  const std::string reader = Token({"registry.read"}, std::nullopt);
  const std::string nobody = Token({"membership.read"}, std::nullopt);
  v1::Org out;
  EXPECT_TRUE(Get(t.city.id(), &out, reader).ok());
  EXPECT_EQ(Get(t.city.id(), &out, nobody).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::Org patch = t.branch;
  patch.set_name("读者不能改");
  EXPECT_EQ(Update(patch, {"name"}, &out, reader).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const std::string writer = Token({"registry.write"}, std::nullopt);
  EXPECT_TRUE(Get(t.city.id(), &out, writer).ok()) << "writers may read";
}

TEST_F(RegistryApiTest, Auth_OutOfScopeIsPermissionDeniedAndRevealsNothing) {
  Tree t = MakeTree();
  v1::Org other = Create(t.city.id(), v1::ORG_KIND_COMMITTEE, "秦淮区委");
  const std::string scoped = Token({"registry.write"}, t.district.id());
  v1::Org out;
  EXPECT_TRUE(Get(t.group.id(), &out, scoped).ok());
  EXPECT_TRUE(Get(t.district.id(), &out, scoped).ok());
  grpc::Status outside = Get(other.id(), &out, scoped);
  grpc::Status missing = Get(424242, &out, scoped);
  EXPECT_EQ(outside.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << "a missing org must look the same as one outside the scope";
  EXPECT_EQ(Get(t.city.id(), &out, scoped).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // Writes: not under an org outside the scope, not as a root, not moving out of the scope.
  v1::CreateOrgRequest create;
  create.set_request_id("scoped-create");
  *create.mutable_org() = MakeOrg(other.id(), v1::ORG_KIND_BRANCH, "越权支部");
  EXPECT_EQ(stub_->CreateOrg(Ctx(scoped).get(), create, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  create.mutable_org()->set_parent_id(0);
  create.mutable_org()->set_kind(v1::ORG_KIND_COMMITTEE);
  EXPECT_EQ(stub_->CreateOrg(Ctx(scoped).get(), create, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  create.mutable_org()->set_parent_id(t.general.id());
  create.mutable_org()->set_kind(v1::ORG_KIND_BRANCH);
  EXPECT_TRUE(stub_->CreateOrg(Ctx(scoped).get(), create, &out).ok());
  v1::MoveOrgRequest move;
  move.set_id(t.general.id());
  move.set_new_parent_id(other.id());
  EXPECT_EQ(stub_->MoveOrg(Ctx(scoped).get(), move, &out).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Lists default to the top of the scope and refuse roots outside it.
  v1::ListOrgsResponse page;
  ASSERT_TRUE(stub_->ListOrgs(Ctx(scoped).get(), v1::ListOrgsRequest(), &page).ok());
  EXPECT_EQ(page.orgs(0).id(), t.district.id());
  for (const v1::Org& o : page.orgs()) EXPECT_NE(o.id(), other.id());
  v1::ListOrgsRequest list;
  list.set_root_id(other.id());
  EXPECT_EQ(stub_->ListOrgs(Ctx(scoped).get(), list, &page).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::BatchGetOrgsRequest batch;
  batch.add_ids(t.group.id());
  batch.add_ids(other.id());
  v1::BatchGetOrgsResponse batch_resp;
  EXPECT_EQ(stub_->BatchGetOrgs(Ctx(scoped).get(), batch, &batch_resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(RegistryApiTest, ReadAfterWrite_GetSeesEveryUpdateAtOnce) {
  Tree t = MakeTree();
  v1::Org current = t.branch;
  for (int i = 0; i < 20; ++i) {
    v1::Org before;
    ASSERT_TRUE(Get(t.branch.id(), &before, admin_).ok());  // fills the cache
    current.set_name(absl::StrCat("第", i, "次"));
    ASSERT_TRUE(Update(current, {"name"}, &current).ok());
    v1::Org after;
    ASSERT_TRUE(Get(t.branch.id(), &after, admin_).ok());
    ASSERT_EQ(after.name(), current.name());
    ASSERT_EQ(after.etag(), current.etag());
  }
}

// --- Page tokens are sealed --------------------------------------------------------------------

// The orgs of `page`, by id.
std::vector<int64_t> Ids(const v1::ListOrgsResponse& page) {
  std::vector<int64_t> ids;
  for (const v1::Org& o : page.orgs()) ids.push_back(o.id());
  return ids;
}

TEST_F(RegistryApiTest, ListOrgs_TokenWithAnyCharacterChangedIsRefused) {
  Tree t = MakeTree();
  v1::ListOrgsRequest req;
  const std::string token = FirstPageToken(t, req);
  ASSERT_FALSE(token.empty());
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (size_t i = 0; i < token.size(); ++i) {
    std::string changed = token;
    changed[i] = alphabet[(alphabet.find(token[i]) + 1) % alphabet.size()];
    req.set_page_token(changed);
    v1::ListOrgsResponse out;
    const grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &out);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "character " << i << " changed: " << changed << " listed " << out.orgs_size();
    EXPECT_THAT(FieldsOf(st), ElementsAre("page_token"));
  }
}

TEST_F(RegistryApiTest, ListOrgs_ForgedTokenWithAPathOfOnesOwnIsRefused) {
  Tree t = MakeTree();
  // The unsigned form tokens had: base64 of "v1:<filter fingerprint>:<last path>". With it a
  // client could start a listing anywhere in the subtree.
  const uint64_t fingerprint =
      Fingerprint64(absl::StrCat(t.city.id(), "|", "", "|", "", "|", "", "|", 0));
  const std::string forged =
      absl::WebSafeBase64Escape(absl::StrCat("v1:", absl::Hex(fingerprint), ":/", t.city.id(), "/",
                                             t.district.id(), "/", t.general.id(), "/"));
  v1::ListOrgsRequest req;
  req.set_root_id(t.city.id());
  req.set_page_token(forged);
  v1::ListOrgsResponse out;
  const grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "listed " << out.orgs_size();
  EXPECT_THAT(FieldsOf(st), ElementsAre("page_token"));
}

TEST_F(RegistryApiTest, ListOrgs_TokenOutlivesRestartsAndWorksOnAnotherReplica) {
  Tree t = MakeTree();
  v1::ListOrgsRequest req;
  req.set_page_token(FirstPageToken(t, req));
  v1::ListOrgsResponse second;
  ASSERT_TRUE(stub_->ListOrgs(Ctx(admin_).get(), req, &second).ok());
  ASSERT_THAT(Ids(second), ElementsAre(t.general.id(), t.branch.id()));

  // A second replica on the same database opens the first one's token.
  {
    auto other = RegistryApp::Start(MakeConfig());
    ASSERT_TRUE(other.ok()) << other.status();
    auto stub = v1::OrgRegistry::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", (*other)->grpc_port()), grpc::InsecureChannelCredentials()));
    v1::ListOrgsResponse out;
    const grpc::Status st = stub->ListOrgs(Ctx(admin_).get(), req, &out);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_THAT(Ids(out), ElementsAre(t.general.id(), t.branch.id()));
    (*other)->Shutdown();
  }
  // Both restart: the token still opens.
  for (int restart = 0; restart < 2; ++restart) {
    app_->Shutdown();
    app_.reset();
    StartRegistry();
    v1::ListOrgsResponse out;
    const grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &out);
    ASSERT_TRUE(st.ok()) << "after restart " << restart << ": " << st.error_message();
    EXPECT_THAT(Ids(out), ElementsAre(t.general.id(), t.branch.id()));
  }
}

TEST_F(RegistryApiTest, ListOrgs_TokenUnderARotatedKeyOpensOnAReplicaStartedBefore) {
  Tree t = MakeTree();
  v1::ListOrgsRequest req;
  const std::string old_token = FirstPageToken(t, req);
  // A rotation as the README says, then a replica starting after it seals with the new key.
  {
    pqxx::connection conn(pg_->ConnInfo(database_));
    pqxx::work tx(conn);
    tx.exec(
        absl::StrCat("INSERT INTO page_token_keys (key_id, secret) SELECT max(key_id) + 1, "
                     "decode('",
                     std::string(64, 'a'), "', 'hex') FROM page_token_keys"));
    tx.commit();
  }
  auto other = RegistryApp::Start(MakeConfig());
  ASSERT_TRUE(other.ok()) << other.status();
  auto other_stub = v1::OrgRegistry::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*other)->grpc_port()), grpc::InsecureChannelCredentials()));
  v1::ListOrgsRequest other_req = req;
  other_req.clear_page_token();
  v1::ListOrgsResponse page;
  ASSERT_TRUE(other_stub->ListOrgs(Ctx(admin_).get(), other_req, &page).ok());
  const std::string new_token = page.next_page_token();
  EXPECT_EQ(PageTokenSealer::KeyIdOf(new_token), 2);

  // The replica started before the rotation opens it (it loads the keys again)...
  req.set_page_token(new_token);
  v1::ListOrgsResponse out;
  grpc::Status st = stub_->ListOrgs(Ctx(admin_).get(), req, &out);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_THAT(Ids(out), ElementsAre(t.general.id(), t.branch.id()));
  // ...and the new replica still opens tokens of the previous key.
  other_req.set_page_token(old_token);
  st = other_stub->ListOrgs(Ctx(admin_).get(), other_req, &out);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_THAT(Ids(out), ElementsAre(t.general.id(), t.branch.id()));
  (*other)->Shutdown();
}

// --- Free text ---------------------------------------------------------------------------------

TEST_F(RegistryApiTest, DissolveOrg_ReasonWithNulIsRefusedAndChangesNothing) {
  Tree t = MakeTree();
  v1::DissolveOrgRequest req;
  req.set_id(t.group.id());
  req.set_reason(std::string("before\0after", 12));
  v1::Org out;
  const grpc::Status st = stub_->DissolveOrg(Ctx(admin_).get(), req, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("reason"));
  EXPECT_THAT(st.error_message(), ::testing::HasSubstr("U+0000"));
  v1::Org now;
  ASSERT_TRUE(Get(t.group.id(), &now, admin_).ok());
  EXPECT_EQ(now.status(), v1::ORG_STATUS_ACTIVE);

  // A reason may run over several lines.
  req.set_reason("区委组织部批复\n〔2026〕12号");
  ASSERT_TRUE(stub_->DissolveOrg(Ctx(admin_).get(), req, &out).ok());
  EXPECT_EQ(out.dissolve_reason(), "区委组织部批复\n〔2026〕12号");
}

TEST_F(RegistryApiTest, FreeText_BidiOverridesAndControlsAreRefusedInEveryField) {
  Tree t = MakeTree();
  v1::Org out;
  // A right-to-left override makes "党支部一第" display as another org's name.
  v1::CreateOrgRequest create;
  create.set_request_id("bidi-name");
  *create.mutable_org() = MakeOrg(t.general.id(), v1::ORG_KIND_BRANCH, "红山\u202E部支党");
  grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), create, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(st), ElementsAre("org.name"));
  EXPECT_THAT(st.error_message(), ::testing::HasSubstr("bidirectional"));

  create.set_request_id(std::string("id\0with-nul", 11));
  *create.mutable_org() = MakeOrg(t.general.id(), v1::ORG_KIND_BRANCH, "新支部");
  EXPECT_THAT(FieldsOf(stub_->CreateOrg(Ctx(admin_).get(), create, &out)),
              ElementsAre("request_id"));

  v1::Org patch = t.group;
  patch.set_name("第一\u2066党小组");
  EXPECT_THAT(FieldsOf(Update(patch, {"name"}, &out)), ElementsAre("org.name"));
  patch = t.group;
  patch.set_etag(t.group.etag() + "\x1b[2J");
  EXPECT_THAT(FieldsOf(Update(patch, {"name"}, &out)), ElementsAre("org.etag"));

  v1::MoveOrgRequest move;
  move.set_id(t.group.id());
  move.set_new_parent_id(t.branch.id());
  move.set_etag(std::string("1-1\0", 4));
  EXPECT_THAT(FieldsOf(stub_->MoveOrg(Ctx(admin_).get(), move, &out)), ElementsAre("etag"));

  v1::DissolveOrgRequest dissolve;
  dissolve.set_id(t.group.id());
  dissolve.set_reason("批复\u200B");
  EXPECT_THAT(FieldsOf(stub_->DissolveOrg(Ctx(admin_).get(), dissolve, &out)),
              ElementsAre("reason"));

  // Nothing changed.
  v1::Org now;
  ASSERT_TRUE(Get(t.group.id(), &now, admin_).ok());
  EXPECT_EQ(now.etag(), t.group.etag());
}

// --- What an integrator sees for bytes that do not parse ----------------------------------------

// The methods of `service` as server reflection describes them: name -> "input -> output" with
// "stream " before a streamed side.
std::map<std::string, std::string> ReflectedMethods(const std::shared_ptr<grpc::Channel>& channel,
                                                    const std::string& service) {
  std::map<std::string, std::string> methods;
  testing::RawCall call(channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  // ServerReflectionRequest{file_containing_symbol (4): service}.
  if (!call.Write(testing::StringField(4, service)) || !call.WritesDone()) return methods;
  std::optional<std::string> response = call.Read();
  call.Finish();
  if (!response) return methods;
  // ServerReflectionResponse.file_descriptor_response (4) -> file_descriptor_proto (1).
  for (const std::string& files : testing::BytesFields(*response, 4)) {
    for (const std::string& bytes : testing::BytesFields(files, 1)) {
      google::protobuf::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) continue;
      for (const auto& s : file.service()) {
        if (absl::StrCat(file.package(), ".", s.name()) != service) continue;
        for (const auto& m : s.method()) {
          methods[m.name()] =
              absl::StrCat(m.client_streaming() ? "stream " : "", m.input_type(), " -> ",
                           m.server_streaming() ? "stream " : "", m.output_type());
        }
      }
    }
  }
  return methods;
}

TEST_F(RegistryApiTest, Reflection_DescribesEveryMethodWithItsRealTypes) {
  const std::map<std::string, std::string> methods =
      ReflectedMethods(channel_, "dangjian.registry.v1.OrgRegistry");
  EXPECT_EQ(methods.size(), 10u);
  // ImportOrgs is served raw (bytes) yet described by its messages, as grpcurl and buf curl need.
  EXPECT_EQ(methods.at("ImportOrgs"),
            "stream .dangjian.registry.v1.ImportOrgsRequest -> "
            ".dangjian.registry.v1.ImportOrgsResponse");
  EXPECT_EQ(methods.at("GetOrg"),
            ".dangjian.registry.v1.GetOrgRequest -> .dangjian.registry.v1.Org");
}

// gRPC 1.51 answers a unary request that does not parse with UNIMPLEMENTED and no message, before
// any code of ours runs (its CallbackUnaryHandler), which reads as a missing method. The server's
// interceptor turns that into INVALID_ARGUMENT naming the request type; an unknown method stays
// UNIMPLEMENTED, and reflection lists only the methods that exist.
TEST_F(RegistryApiTest, UnparsableUnaryRequest_IsInvalidArgumentAndUnknownMethodUnimplemented) {
  const std::vector<std::pair<std::string, std::string>> auth = {
      {"authorization", "Bearer " + admin_}};
  // GetOrg with bytes that are not protobuf at all.
  testing::RawCall garbage(channel_, "/dangjian.registry.v1.OrgRegistry/GetOrg", absl::Seconds(10),
                           auth);
  ASSERT_TRUE(garbage.Write(std::string("\xFF\xFF\xFF", 3)));
  garbage.WritesDone();
  EXPECT_FALSE(garbage.Read().has_value());
  const grpc::Status unparsable = garbage.Finish();
  EXPECT_EQ(unparsable.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unparsable.error_message(),
              ::testing::HasSubstr("could not be parsed as dangjian.registry.v1.GetOrgRequest"));

  // ListOrgs with a page_token (7) that is not UTF-8, as a client in another language can send.
  testing::RawCall bad_utf8(channel_, "/dangjian.registry.v1.OrgRegistry/ListOrgs",
                            absl::Seconds(10), auth);
  ASSERT_TRUE(bad_utf8.Write(testing::StringField(7, "\xC0\x80")));
  bad_utf8.WritesDone();
  EXPECT_FALSE(bad_utf8.Read().has_value());
  const grpc::Status bad_string = bad_utf8.Finish();
  EXPECT_EQ(bad_string.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_string.error_message(),
              ::testing::HasSubstr("could not be parsed as dangjian.registry.v1.ListOrgsRequest"));

  // A server-streaming method's request is parsed the same way.
  testing::RawCall bad_watch(channel_, "/dangjian.registry.v1.OrgRegistry/WatchOrgChanges",
                             absl::Seconds(10), auth);
  ASSERT_TRUE(bad_watch.Write(std::string("\xFF\xFF\xFF", 3)));
  bad_watch.WritesDone();
  EXPECT_FALSE(bad_watch.Read().has_value());
  EXPECT_EQ(bad_watch.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  testing::RawCall unknown(channel_, "/dangjian.registry.v1.OrgRegistry/NoSuchMethod",
                           absl::Seconds(10), auth);
  unknown.Write(testing::StringField(1, "x"));
  unknown.WritesDone();
  unknown.Read();
  const grpc::Status missing = unknown.Finish();
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(missing.error_message(), "");

  // What tells them apart: reflection lists GetOrg and ListOrgs, and no NoSuchMethod.
  const std::map<std::string, std::string> methods =
      ReflectedMethods(channel_, "dangjian.registry.v1.OrgRegistry");
  EXPECT_EQ(methods.count("GetOrg"), 1u);
  EXPECT_EQ(methods.count("ListOrgs"), 1u);
  EXPECT_EQ(methods.count("NoSuchMethod"), 0u);
}

}  // namespace
}  // namespace dangjian::registry
