// A bulk import leaves the planner with statistics: right after a city-sized ImportOrgs, a keyset
// page of ListOrgs reads the path index in order instead of sorting the rest of the subtree for
// every page (which made listing a 200,000-org province quadratic until autovacuum analysed).
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "services/registry/dataset/city_tree.h"
#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ImportAnalyzeTest : public RegistryFixture {
 protected:
  void SetUp() override {
    RegistryFixture::SetUp();
    StartRegistry();
  }

  // The plan PostgreSQL picks now for a page of 1000 from the top of the tree, after the first
  // few orgs: the shape of the registry's list query (path range, keyset, ORDER BY path, LIMIT).
  std::string PagePlan() {
    pqxx::connection conn(pg_->ConnInfo(database_));
    pqxx::nontransaction tx(conn);
    std::string plan;
    for (const auto& row :
         tx.exec("EXPLAIN SELECT id FROM orgs WHERE path >= '/' AND path < '0' AND path > '/1/2/' "
                 "ORDER BY path LIMIT 1001")) {
      plan += row[0].as<std::string>() + "\n";
    }
    return plan;
  }

  int64_t AnalyzeCount(const std::string& table) {
    pqxx::connection conn(pg_->ConnInfo(database_));
    pqxx::nontransaction tx(conn);
    return tx
        .exec_params1("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1", table)[0]
        .as<int64_t>();
  }
};

TEST_F(ImportAnalyzeTest, BulkImport_LeavesStatisticsSoPagesReadThePathIndexInOrder) {
  dataset::CityTreeOptions options;
  options.org_count = 3000;
  const std::vector<v1::ImportOrgRow> rows = dataset::GenerateCityTree(options);
  v1::ImportOrgsResponse resp;
  auto ctx = Ctx(admin_, absl::Seconds(60));
  std::unique_ptr<grpc::ClientWriter<v1::ImportOrgsRequest>> writer =
      stub_->ImportOrgs(ctx.get(), &resp);
  for (size_t i = 0; i < rows.size(); i += 500) {
    v1::ImportOrgsRequest message;
    for (size_t j = i; j < std::min(rows.size(), i + 500); ++j) *message.add_rows() = rows[j];
    ASSERT_TRUE(writer->Write(message));
  }
  ASSERT_TRUE(writer->WritesDone());
  const grpc::Status st = writer->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.created(), 3000);

  EXPECT_GE(AnalyzeCount("orgs"), 1);
  EXPECT_GE(AnalyzeCount("org_changes"), 1);
  const std::string plan = PagePlan();
  EXPECT_THAT(plan, HasSubstr("Index Scan using orgs_path_key")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("Sort"))) << plan;
}

}  // namespace
}  // namespace dangjian::registry
