// ImportOrgs over gRPC against real PostgreSQL and Redis: bulk trees sent in several messages and
// across write chunks, per-row rejection (and of rows under a rejected row), idempotent re-runs,
// authentication, roles and subtree scope; and streams that end badly (a message that does not
// parse, a cancelled call, a deadline) fail instead of reporting a partial import as done.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "services/registry/api/registry_service.h"
#include "tests/common/metric_reader.h"
#include "tests/common/raw_call.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

v1::ImportOrgRow Row(const std::string& code, const std::string& parent_code, v1::OrgKind kind,
                     const std::string& name = "") {
  v1::ImportOrgRow row;
  row.set_code(code);
  row.set_parent_code(parent_code);
  row.set_kind(kind);
  row.set_name(name.empty() ? absl::StrCat("组织 ", code) : name);
  row.set_domain(v1::ORG_DOMAIN_COMMUNITY);
  row.set_region_code("320102");
  return row;
}

// Splits `rows` into messages of at most `per_message` rows each.
std::vector<v1::ImportOrgsRequest> Messages(const std::vector<v1::ImportOrgRow>& rows,
                                            size_t per_message) {
  std::vector<v1::ImportOrgsRequest> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i % per_message == 0) out.emplace_back();
    *out.back().add_rows() = rows[i];
  }
  return out;
}

std::vector<int64_t> RowNumbers(const v1::ImportOrgsResponse& resp) {
  std::vector<int64_t> out;
  for (const auto& e : resp.errors()) out.push_back(e.row_number());
  return out;
}

class ImportTest : public RegistryFixture {
 protected:
  void SetUp() override {
    RegistryFixture::SetUp();
    StartRegistry();
  }

  // Streams `messages` as one ImportOrgs call and returns its status; `resp` gets the reply.
  grpc::Status Import(const std::string& token, const std::vector<v1::ImportOrgsRequest>& messages,
                      v1::ImportOrgsResponse* resp) {
    auto ctx = Ctx(token, absl::Seconds(60));
    std::unique_ptr<grpc::ClientWriter<v1::ImportOrgsRequest>> writer =
        stub_->ImportOrgs(ctx.get(), resp);
    for (const v1::ImportOrgsRequest& m : messages) {
      if (!writer->Write(m)) break;  // the server finished early; Finish() tells why
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Import(const std::vector<v1::ImportOrgRow>& rows, size_t per_message,
                      v1::ImportOrgsResponse* resp, const std::string& token = "") {
    return Import(token.empty() ? admin_ : token, Messages(rows, per_message), resp);
  }

  // Every org of the subtree under `root_id` (0: everything), paging through ListOrgs.
  std::vector<v1::Org> ListAll(int64_t root_id, const std::string& token = "") {
    std::vector<v1::Org> all;
    v1::ListOrgsRequest req;
    req.set_root_id(root_id);
    req.set_page_size(1000);
    for (int pages = 0; pages < 100; ++pages) {
      v1::ListOrgsResponse page;
      grpc::Status st = stub_->ListOrgs(Ctx(token.empty() ? admin_ : token).get(), req, &page);
      EXPECT_TRUE(st.ok()) << st.error_message();
      if (!st.ok()) break;
      all.insert(all.end(), page.orgs().begin(), page.orgs().end());
      if (page.next_page_token().empty()) break;
      req.set_page_token(page.next_page_token());
    }
    return all;
  }

  static std::map<std::string, v1::Org> ByCode(const std::vector<v1::Org>& orgs) {
    std::map<std::string, v1::Org> out;
    for (const v1::Org& o : orgs) out[o.code()] = o;
    return out;
  }

  // Checks that every row was created under the parent it names, with the right depth and
  // ancestors, and the row's fields.
  static void ExpectTreeMatchesRows(const std::vector<v1::ImportOrgRow>& rows,
                                    const std::map<std::string, v1::Org>& by_code) {
    for (const v1::ImportOrgRow& row : rows) {
      auto it = by_code.find(row.code());
      ASSERT_NE(it, by_code.end()) << "row " << row.code() << " was not created";
      const v1::Org& org = it->second;
      EXPECT_EQ(org.name(), row.name());
      EXPECT_EQ(org.kind(), row.kind());
      EXPECT_EQ(org.status(), v1::ORG_STATUS_ACTIVE);
      if (row.parent_code().empty()) {
        EXPECT_EQ(org.parent_id(), 0) << row.code();
        EXPECT_EQ(org.depth(), 0) << row.code();
        EXPECT_THAT(org.ancestor_ids(), IsEmpty()) << row.code();
        continue;
      }
      auto parent = by_code.find(row.parent_code());
      ASSERT_NE(parent, by_code.end()) << "parent of " << row.code();
      EXPECT_EQ(org.parent_id(), parent->second.id()) << row.code();
      EXPECT_EQ(org.depth(), parent->second.depth() + 1) << row.code();
      std::vector<int64_t> ancestors(parent->second.ancestor_ids().begin(),
                                     parent->second.ancestor_ids().end());
      ancestors.push_back(parent->second.id());
      EXPECT_THAT(org.ancestor_ids(), ElementsAreArray(ancestors)) << row.code();
    }
  }
};

// A city tree, parents first: 1 city committee, 5 district committees, 4 general branches each,
// 5 branches per general branch, 2 groups per branch: 326 rows.
std::vector<v1::ImportOrgRow> CityTree() {
  std::vector<v1::ImportOrgRow> rows;
  rows.push_back(Row("CITY", "", v1::ORG_KIND_COMMITTEE, "市委"));
  for (int d = 0; d < 5; ++d) {
    const std::string dc = absl::StrCat("D", d);
    rows.push_back(Row(dc, "CITY", v1::ORG_KIND_COMMITTEE));
    for (int g = 0; g < 4; ++g) {
      const std::string gc = absl::StrCat(dc, "-G", g);
      rows.push_back(Row(gc, dc, v1::ORG_KIND_GENERAL_BRANCH));
      for (int b = 0; b < 5; ++b) {
        const std::string bc = absl::StrCat(gc, "-B", b);
        v1::ImportOrgRow branch = Row(bc, gc, v1::ORG_KIND_BRANCH);
        branch.set_joint(b == 0);
        branch.mutable_established_date()->set_year(2019);
        branch.mutable_established_date()->set_month(7);
        branch.mutable_established_date()->set_day(1);
        rows.push_back(branch);
        for (int p = 0; p < 2; ++p) {
          rows.push_back(Row(absl::StrCat(bc, "-P", p), bc, v1::ORG_KIND_GROUP));
        }
      }
    }
  }
  return rows;
}

TEST_F(ImportTest, Import_TreeInSeveralMessagesCreatesEveryRowInPlace) {
  const std::vector<v1::ImportOrgRow> rows = CityTree();
  ASSERT_EQ(rows.size(), 326u);
  v1::ImportOrgsResponse resp;
  grpc::Status st = Import(rows, 37, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.received(), 326);
  EXPECT_EQ(resp.created(), 326);
  EXPECT_EQ(resp.unchanged(), 0);
  EXPECT_EQ(resp.failed(), 0);
  EXPECT_THAT(resp.errors(), IsEmpty());

  const std::map<std::string, v1::Org> by_code = ByCode(ListAll(0));
  ASSERT_EQ(by_code.size(), 326u) << "ListOrgs from the top returns every imported org";
  ExpectTreeMatchesRows(rows, by_code);

  // ListOrgs from the city root returns the same set, root first.
  const std::vector<v1::Org> subtree = ListAll(by_code.at("CITY").id());
  ASSERT_THAT(subtree, SizeIs(326));
  EXPECT_EQ(subtree.front().code(), "CITY");

  // Single reads agree with the list, including a joint branch's flag and date.
  v1::Org got;
  ASSERT_TRUE(Get(by_code.at("D3-G2-B0").id(), &got, admin_).ok());
  EXPECT_TRUE(got.joint());
  EXPECT_EQ(got.established_date().year(), 2019);
  EXPECT_EQ(got.established_date().month(), 7);
  EXPECT_EQ(got.established_date().day(), 1);
  EXPECT_EQ(got.depth(), 3);
  ASSERT_TRUE(Get(by_code.at("D3-G2-B4-P1").id(), &got, admin_).ok());
  EXPECT_EQ(got.parent_id(), by_code.at("D3-G2-B4").id());
  EXPECT_EQ(got.depth(), 4);
  EXPECT_THAT(got.ancestor_ids(),
              ElementsAre(by_code.at("CITY").id(), by_code.at("D3").id(), by_code.at("D3-G2").id(),
                          by_code.at("D3-G2-B4").id()));
}

TEST_F(ImportTest, Import_MoreRowsThanOneChunkFindParentsInEarlierChunks) {
  // Rows 1..1000 (the first chunk): the root and 999 committees. Rows 1001..1800: branches under
  // those committees. Rows 1801..2500: groups under branches of rows 1001..1700, so parents of
  // the second chunk are in the first, and parents of the third in the second.
  static_assert(kImportChunkRows == 1000, "the row layout below assumes 1000-row chunks");
  std::vector<v1::ImportOrgRow> rows;
  rows.push_back(Row("ROOT", "", v1::ORG_KIND_COMMITTEE));
  for (int i = 2; i <= 1000; ++i) {
    rows.push_back(Row(absl::StrCat("C", i), "ROOT", v1::ORG_KIND_COMMITTEE));
  }
  for (int i = 1001; i <= 1800; ++i) {
    rows.push_back(
        Row(absl::StrCat("B", i), absl::StrCat("C", 2 + (i * 7) % 999), v1::ORG_KIND_BRANCH));
  }
  for (int i = 1801; i <= 2500; ++i) {
    rows.push_back(Row(absl::StrCat("P", i), absl::StrCat("B", i - 800), v1::ORG_KIND_GROUP));
  }
  ASSERT_EQ(rows.size(), 2500u);

  v1::ImportOrgsResponse resp;
  grpc::Status st = Import(rows, 100, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.received(), 2500);
  EXPECT_EQ(resp.created(), 2500);
  EXPECT_EQ(resp.failed(), 0);
  ASSERT_THAT(resp.errors(), IsEmpty()) << resp.errors(0).reason();

  const std::vector<v1::Org> all = ListAll(0);
  const std::map<std::string, v1::Org> by_code = ByCode(all);
  EXPECT_EQ(all.size(), 2500u);
  ASSERT_EQ(by_code.size(), 2500u);
  ExpectTreeMatchesRows(rows, by_code);
}

TEST_F(ImportTest, Import_AbortedStreamResumesBySendingEverythingAgain) {
  std::vector<v1::ImportOrgRow> rows;
  rows.push_back(Row("ROOT", "", v1::ORG_KIND_COMMITTEE));
  for (int i = 1; i < 2500; ++i) {
    rows.push_back(
        i < 100 ? Row(absl::StrCat("C", i), "ROOT", v1::ORG_KIND_COMMITTEE)
                : Row(absl::StrCat("B", i), absl::StrCat("C", 1 + i % 99), v1::ORG_KIND_BRANCH));
  }
  const std::vector<v1::ImportOrgsRequest> messages = Messages(rows, 100);
  {
    // The client gives up after the first chunk (10 messages) is written and one more message
    // is sent: the written chunk stays, the rest of the call is dropped.
    v1::ImportOrgsResponse resp;
    auto ctx = Ctx(admin_, absl::Seconds(60));
    auto writer = stub_->ImportOrgs(ctx.get(), &resp);
    for (size_t i = 0; i < 11; ++i) ASSERT_TRUE(writer->Write(messages[i]));
    ASSERT_TRUE(testing::PollUntil([&] { return ListAll(0).size() >= 1000; }, absl::Seconds(30)))
        << "the first chunk was never written";
    ctx->TryCancel();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(ListAll(0).size(), static_cast<size_t>(kImportChunkRows))
      << "a chunk is written whole; rows not yet in a full chunk go with the cancelled call";

  v1::ImportOrgsResponse resp;
  grpc::Status st = Import(admin_, messages, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.received(), 2500);
  EXPECT_EQ(resp.failed(), 0);
  EXPECT_EQ(resp.unchanged(), kImportChunkRows);
  EXPECT_EQ(resp.created(), 2500 - kImportChunkRows);
  const std::map<std::string, v1::Org> by_code = ByCode(ListAll(0));
  EXPECT_EQ(by_code.size(), 2500u);
  ExpectTreeMatchesRows(rows, by_code);

  // An empty stream is a valid, empty import.
  v1::ImportOrgsResponse empty;
  ASSERT_TRUE(Import(admin_, {}, &empty).ok());
  EXPECT_EQ(empty.received(), 0);
  EXPECT_EQ(empty.created(), 0);
}

TEST_F(ImportTest, Import_BadRowsRejectOnlyThemselvesAndRowsUnderThem) {
  std::vector<v1::ImportOrgRow> rows;
  rows.push_back(Row("R", "", v1::ORG_KIND_COMMITTEE));    // 1 ok
  rows.push_back(Row("D1", "R", v1::ORG_KIND_COMMITTEE));  // 2 ok
  rows.push_back(Row("", "D1", v1::ORG_KIND_BRANCH));      // 3 no code
  rows.push_back(Row("B1", "D1", v1::ORG_KIND_BRANCH));    // 4 ok
  v1::ImportOrgRow bad_region = Row("BADREG", "D1", v1::ORG_KIND_BRANCH);
  bad_region.set_region_code("990102");                        // not a province
  rows.push_back(bad_region);                                  // 5
  rows.push_back(Row("ORPHAN", "NOPE", v1::ORG_KIND_BRANCH));  // 6 unknown parent
  rows.push_back(Row("GRP", "D1", v1::ORG_KIND_GROUP));        // 7 [kind-parent]
  v1::ImportOrgRow joint_committee = Row("JC", "R", v1::ORG_KIND_COMMITTEE);
  joint_committee.set_joint(true);
  rows.push_back(joint_committee);                                    // 8 only branches are joint
  rows.push_back(Row("UNDER-BADREG", "BADREG", v1::ORG_KIND_GROUP));  // 9 parent rejected
  rows.push_back(Row("UNDER-ORPHAN", "ORPHAN", v1::ORG_KIND_GROUP));  // 10 parent rejected
  rows.push_back(Row("UNDER-GRP", "GRP", v1::ORG_KIND_GROUP));        // 11 parent rejected
  rows.push_back(Row("UNDER-JC", "JC", v1::ORG_KIND_BRANCH));         // 12 parent rejected
  rows.push_back(Row("G1", "B1", v1::ORG_KIND_GROUP));                // 13 ok
  rows.push_back(Row("B2", "D1", v1::ORG_KIND_BRANCH));               // 14 ok

  v1::ImportOrgsResponse resp;
  grpc::Status st = Import(rows, 4, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.received(), 14);
  EXPECT_EQ(resp.created(), 5);
  EXPECT_EQ(resp.unchanged(), 0);
  EXPECT_EQ(resp.failed(), 9);
  ASSERT_THAT(RowNumbers(resp), ElementsAre(3, 5, 6, 7, 8, 9, 10, 11, 12))
      << "every rejected row, in stream order";

  struct Expected {
    std::string code, field, rule;
  };
  const std::vector<Expected> expected = {
      {"", "code", ""},
      {"BADREG", "region_code", ""},
      {"ORPHAN", "parent_code", ""},
      {"GRP", "kind", "kind-parent"},
      {"JC", "joint", ""},
      {"UNDER-BADREG", "parent_code", ""},
      {"UNDER-ORPHAN", "parent_code", ""},
      {"UNDER-GRP", "parent_code", ""},
      {"UNDER-JC", "parent_code", ""},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    const v1::ImportRowError& e = resp.errors(static_cast<int>(i));
    SCOPED_TRACE(absl::StrCat("row ", e.row_number()));
    EXPECT_EQ(e.code(), expected[i].code);
    EXPECT_EQ(e.field(), expected[i].field);
    EXPECT_EQ(e.rule(), expected[i].rule);
    EXPECT_FALSE(e.reason().empty());
  }
  EXPECT_THAT(resp.errors(6).reason(), HasSubstr("ORPHAN"));
  EXPECT_THAT(resp.errors(4).reason(), HasSubstr("joint-branch"));

  std::set<std::string> codes;
  for (const v1::Org& o : ListAll(0)) codes.insert(o.code());
  EXPECT_EQ(codes, (std::set<std::string>{"R", "D1", "B1", "G1", "B2"}));
}

TEST_F(ImportTest, Import_RerunCreatesNothingAndAChangedRowIsAnError) {
  const std::vector<v1::ImportOrgRow> all = CityTree();
  const std::vector<v1::ImportOrgRow> rows(all.begin(), all.begin() + 60);
  v1::ImportOrgsResponse first;
  ASSERT_TRUE(Import(rows, 25, &first).ok());
  ASSERT_EQ(first.created(), 60);
  const std::map<std::string, v1::Org> before = ByCode(ListAll(0));

  v1::ImportOrgsResponse again;
  grpc::Status st = Import(rows, 25, &again);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.received(), 60);
  EXPECT_EQ(again.created(), 0);
  EXPECT_EQ(again.unchanged(), 60);
  EXPECT_EQ(again.failed(), 0);
  EXPECT_THAT(again.errors(), IsEmpty());

  // Row 4 (a joint branch with a date) now carries another name: it alone is refused.
  std::vector<v1::ImportOrgRow> changed = rows;
  ASSERT_TRUE(changed[3].joint());
  const std::string code = changed[3].code();
  changed[3].set_name("改过名的支部");
  v1::ImportOrgsResponse third;
  st = Import(changed, 25, &third);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(third.received(), 60);
  EXPECT_EQ(third.created(), 0);
  EXPECT_EQ(third.unchanged(), 59);
  EXPECT_EQ(third.failed(), 1);
  ASSERT_THAT(RowNumbers(third), ElementsAre(4));
  EXPECT_EQ(third.errors(0).code(), code);
  EXPECT_EQ(third.errors(0).field(), "code");
  EXPECT_THAT(third.errors(0).reason(), HasSubstr("already registered"));

  // Nothing changed in the registry: same orgs, same etags.
  const std::map<std::string, v1::Org> after = ByCode(ListAll(0));
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [c, org] : before) {
    EXPECT_EQ(after.at(c).etag(), org.etag()) << c;
    EXPECT_EQ(after.at(c).name(), org.name()) << c;
  }
}

TEST_F(ImportTest, Import_NeedsATokenAndTheWriteRole) {
  const std::vector<v1::ImportOrgRow> rows = {Row("R", "", v1::ORG_KIND_COMMITTEE)};
  v1::ImportOrgsResponse resp;
  EXPECT_EQ(Import("", Messages(rows, 10), &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const std::string reader = Token({"registry.read"}, std::nullopt);
  EXPECT_EQ(Import(reader, Messages(rows, 10), &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(ListAll(0), IsEmpty()) << "a refused import writes nothing";
  // The same rows with a writer's token go through.
  const std::string writer = Token({"registry.write"}, std::nullopt);
  ASSERT_TRUE(Import(writer, Messages(rows, 10), &resp).ok());
  EXPECT_EQ(resp.created(), 1);
}

TEST_F(ImportTest, Import_ScopedWriterCreatesOnlyInsideItsSubtree) {
  v1::ImportOrgsResponse setup;
  ASSERT_TRUE(Import({Row("R", "", v1::ORG_KIND_COMMITTEE), Row("D1", "R", v1::ORG_KIND_COMMITTEE),
                      Row("D2", "R", v1::ORG_KIND_COMMITTEE)},
                     10, &setup)
                  .ok());
  ASSERT_EQ(setup.created(), 3);
  const std::map<std::string, v1::Org> base = ByCode(ListAll(0));
  const std::string scoped = Token({"registry.write"}, base.at("D1").id());

  std::vector<v1::ImportOrgRow> rows;
  rows.push_back(Row("NEWROOT", "", v1::ORG_KIND_COMMITTEE));               // 1 a root: refused
  rows.push_back(Row("B-IN", "D1", v1::ORG_KIND_BRANCH));                   // 2 in scope
  rows.push_back(Row("P-IN", "B-IN", v1::ORG_KIND_GROUP));                  // 3 in scope
  rows.push_back(Row("B-OUT", "D2", v1::ORG_KIND_BRANCH));                  // 4 outside: refused
  rows.push_back(Row("UNDER-NEWROOT", "NEWROOT", v1::ORG_KIND_COMMITTEE));  // 5 under refused
  rows.push_back(Row("G-IN", "D1", v1::ORG_KIND_GENERAL_BRANCH));           // 6 in scope
  v1::ImportOrgsResponse resp;
  grpc::Status st = Import(rows, 2, &resp, scoped);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.received(), 6);
  EXPECT_EQ(resp.created(), 3);
  EXPECT_EQ(resp.failed(), 3);
  ASSERT_THAT(RowNumbers(resp), ElementsAre(1, 4, 5));
  EXPECT_EQ(resp.errors(0).code(), "NEWROOT");
  EXPECT_EQ(resp.errors(0).field(), "parent_code");
  EXPECT_EQ(resp.errors(1).code(), "B-OUT");
  EXPECT_EQ(resp.errors(1).field(), "parent_code");

  const std::map<std::string, v1::Org> in_d1 = ByCode(ListAll(base.at("D1").id(), scoped));
  EXPECT_EQ(in_d1.size(), 4u);  // D1, B-IN, P-IN, G-IN
  ASSERT_EQ(in_d1.count("P-IN"), 1u);
  EXPECT_EQ(in_d1.at("P-IN").parent_id(), in_d1.at("B-IN").id());
  EXPECT_EQ(in_d1.at("B-IN").parent_id(), base.at("D1").id());
  EXPECT_EQ(ListAll(base.at("D2").id()).size(), 1u) << "nothing was created under D2";
  EXPECT_EQ(ListAll(0).size(), 6u);
}

// [org-scope]: "Targets outside it answer PERMISSION_DENIED whether or not they exist." A scoped
// writer must not tell from an import's reply whether a code outside its subtree is registered.
//
// DISABLED: fails on BUG "ImportOrgs leaks orgs outside a scoped writer's subtree"
// (PgOrgRepository::Import, services/registry/store/pg_org_repository.cc). The store matches
// parent_code and code against every registered org before it checks the caller's scope, so:
//  1. a row naming an existing org outside the scope as parent_code gets "parent X is outside the
//     subtree of org N ...", while a code that does not exist gets "parent_code X is not
//     registered ...": the reply tells the two apart;
//  2. a row repeating an org outside the scope with identical values and parent is counted
//     `unchanged` (not rejected): it confirms the org and all its values;
//  3. a row whose code is held outside the scope is refused with "... already registered (org N)",
//     naming the outside org's id.
// Enable once the integrator has fixed it.
TEST_F(ImportTest, Import_ScopedWriterLearnsNothingOutsideItsSubtree) {
  v1::ImportOrgsResponse setup;
  ASSERT_TRUE(
      Import({Row("R", "", v1::ORG_KIND_COMMITTEE), Row("D1", "R", v1::ORG_KIND_COMMITTEE),
              Row("D2", "R", v1::ORG_KIND_COMMITTEE), Row("SECRET", "D2", v1::ORG_KIND_BRANCH)},
             10, &setup)
          .ok());
  ASSERT_EQ(setup.created(), 4);
  const std::map<std::string, v1::Org> base = ByCode(ListAll(0));
  const std::string scoped = Token({"registry.write"}, base.at("D1").id());

  std::vector<v1::ImportOrgRow> rows;
  rows.push_back(Row("X1", "SECRET", v1::ORG_KIND_GROUP));   // 1 parent exists, outside
  rows.push_back(Row("X2", "NOSUCH", v1::ORG_KIND_GROUP));   // 2 parent does not exist
  rows.push_back(Row("SECRET", "D2", v1::ORG_KIND_BRANCH));  // 3 an outside org, same values
  rows.push_back(Row("SECRET", "D1", v1::ORG_KIND_BRANCH));  // 4 its code, inside
  v1::ImportOrgsResponse resp;
  grpc::Status st = Import(rows, 10, &resp, scoped);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.created(), 0);
  EXPECT_EQ(resp.unchanged(), 0) << "an org outside the scope must not be reported as found";
  EXPECT_EQ(resp.failed(), 4);
  EXPECT_THAT(RowNumbers(resp), ElementsAre(1, 2, 3, 4));
  std::map<int64_t, v1::ImportRowError> errors;
  for (const auto& e : resp.errors()) errors[e.row_number()] = e;
  ASSERT_EQ(errors.count(1), 1u);
  ASSERT_EQ(errors.count(2), 1u);
  ASSERT_EQ(errors.count(4), 1u);
  // A taken code is refused, without naming the org outside the scope that holds it.
  EXPECT_EQ(errors[4].field(), "code");
  EXPECT_THAT(errors[4].reason(),
              ::testing::Not(HasSubstr(absl::StrCat("org ", base.at("SECRET").id()))));
  // An existing and a missing parent outside the scope look the same (up to the code itself).
  const v1::ImportRowError& existing = errors[1];
  const v1::ImportRowError& missing = errors[2];
  EXPECT_EQ(existing.field(), missing.field());
  EXPECT_EQ(existing.rule(), missing.rule());
  std::string existing_reason = existing.reason();
  std::string missing_reason = missing.reason();
  const size_t at_existing = existing_reason.find("SECRET");
  const size_t at_missing = missing_reason.find("NOSUCH");
  if (at_existing != std::string::npos) existing_reason.replace(at_existing, 6, "<code>");
  if (at_missing != std::string::npos) missing_reason.replace(at_missing, 6, "<code>");
  EXPECT_EQ(existing_reason, missing_reason);
}

// --- Streams that do not end well -------------------------------------------------------------

// A message whose row has a name that is not UTF-8, encoded by hand: protobuf's own serializer
// would refuse to help. The name's "@@@@" stand-in is replaced byte for byte, so lengths still
// hold.
std::string MessageWithBadUtf8Name(const std::string& code, const std::string& parent_code) {
  v1::ImportOrgsRequest message;
  *message.add_rows() = Row(code, parent_code, v1::ORG_KIND_COMMITTEE, "name @@@@");
  std::string bytes = message.SerializeAsString();
  const size_t at = bytes.find("@@@@");
  EXPECT_NE(at, std::string::npos);
  bytes.replace(at, 4, "\xFF\xFE\xC0\x80");
  return bytes;
}

std::string Encoded(const std::vector<v1::ImportOrgRow>& rows) {
  v1::ImportOrgsRequest message;
  for (const v1::ImportOrgRow& row : rows) *message.add_rows() = row;
  return message.SerializeAsString();
}

constexpr char kImportMethod[] = "/dangjian.registry.v1.OrgRegistry/ImportOrgs";

// Sends `messages` as raw bytes on one ImportOrgs call, half-closes, and returns the status.
grpc::Status RawImport(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                       const std::vector<std::string>& messages) {
  testing::RawCall call(channel, kImportMethod, absl::Seconds(60),
                        {{"authorization", "Bearer " + token}});
  for (const std::string& m : messages) {
    if (!call.Write(m)) break;  // the server finished early; Finish() tells why
  }
  call.WritesDone();
  call.Read();
  return call.Finish();
}

TEST_F(ImportTest, Import_UnparsableSecondMessageFailsTheCallNamingMessageAndField) {
  const grpc::Status st = RawImport(
      channel_, admin_,
      {Encoded(
           {Row("ROOT", "", v1::ORG_KIND_COMMITTEE), Row("C1", "ROOT", v1::ORG_KIND_COMMITTEE)}),
       MessageWithBadUtf8Name("C2", "ROOT"), Encoded({Row("C3", "ROOT", v1::ORG_KIND_COMMITTEE)})});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_THAT(st.error_message(),
              HasSubstr("message 2 of the stream could not be parsed as ImportOrgsRequest"));
  EXPECT_THAT(st.error_message(), HasSubstr("rows[0].name is not valid UTF-8"));
  EXPECT_THAT(st.error_message(), HasSubstr("no row was written"));
  EXPECT_THAT(ListAll(0), IsEmpty()) << "rows before the bad message were not yet a chunk";
}

TEST_F(ImportTest, Import_UnparsableMessageAfterAWrittenChunkSaysWhatWasWritten) {
  std::vector<v1::ImportOrgRow> rows = {Row("ROOT", "", v1::ORG_KIND_COMMITTEE)};
  for (int i = 1; i < kImportChunkRows; ++i) {
    rows.push_back(Row(absl::StrCat("C", i), "ROOT", v1::ORG_KIND_COMMITTEE));
  }
  const grpc::Status st = RawImport(channel_, admin_,
                                    {Encoded(rows), MessageWithBadUtf8Name("LATE", "ROOT"),
                                     Encoded({Row("LATER", "ROOT", v1::ORG_KIND_COMMITTEE)})});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("message 2 of the stream"));
  EXPECT_THAT(st.error_message(),
              HasSubstr(absl::StrCat("(1 to ", kImportChunkRows, ") were written (",
                                     kImportChunkRows, " created")));
  EXPECT_THAT(st.error_message(), HasSubstr("send the whole stream again"));
  EXPECT_EQ(ListAll(0).size(), static_cast<size_t>(kImportChunkRows));
}

TEST_F(ImportTest, Import_GarbageBytesAreInvalidArgument) {
  const grpc::Status st = RawImport(channel_, admin_, {std::string("\xFF\xFF\xFF", 3)});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("message 1 of the stream"));
  EXPECT_THAT(st.error_message(), HasSubstr("wire format"));
}

// The server's outcome of its ImportOrgs calls: polls until one is counted as handled, then
// returns how many ended OK.
double HandledImportsOk(prometheus::Registry& metrics) {
  EXPECT_TRUE(testing::PollUntil(
      [&] {
        return testing::MetricValue(metrics, "grpc_server_handled_total",
                                    {{"grpc_method", "ImportOrgs"}})
            .has_value();
      },
      absl::Seconds(30)))
      << "the server never finished the import call";
  return testing::MetricValue(metrics, "grpc_server_handled_total",
                              {{"grpc_method", "ImportOrgs"}, {"grpc_code", "OK"}})
      .value_or(0);
}

TEST_F(ImportTest, Import_CancelledMidStreamWritesNothingMoreAndIsNotReportedDone) {
  v1::ImportOrgsResponse resp;
  auto ctx = Ctx(admin_, absl::Seconds(60));
  auto writer = stub_->ImportOrgs(ctx.get(), &resp);
  ASSERT_TRUE(writer->Write(
      Messages({Row("ROOT", "", v1::ORG_KIND_COMMITTEE), Row("C1", "ROOT", v1::ORG_KIND_COMMITTEE)},
               10)[0]));
  ctx->TryCancel();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(HandledImportsOk(app_->metrics()), 0) << "a broken stream was reported as done";
  EXPECT_THAT(ListAll(0), IsEmpty());
}

TEST_F(ImportTest, Import_StreamCutByTheDeadlineIsNotReportedDone) {
  v1::ImportOrgsResponse resp;
  auto ctx = Ctx(admin_, absl::Milliseconds(800));
  auto writer = stub_->ImportOrgs(ctx.get(), &resp);
  ASSERT_TRUE(writer->Write(Messages({Row("ROOT", "", v1::ORG_KIND_COMMITTEE)}, 10)[0]));
  // No half-close: the client is still "sending" when its deadline passes.
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(HandledImportsOk(app_->metrics()), 0) << "a broken stream was reported as done";
  EXPECT_THAT(ListAll(0), IsEmpty());
}

}  // namespace
}  // namespace dangjian::registry
