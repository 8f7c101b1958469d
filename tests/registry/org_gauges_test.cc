// The registry's business gauges over a real PostgreSQL: dj_registry_orgs counts orgs by kind,
// domain and status as orgs are created and dissolved (a combination with no org left reads 0),
// and dj_registry_feed_head_revision follows the change feed.
#include <prometheus/metric_family.h>

#include <map>
#include <string>

#include "tests/registry/registry_fixture.h"

namespace dangjian::registry {
namespace {

class OrgGaugesTest : public RegistryFixture {
 protected:
  void SetUp() override {
    RegistryFixture::SetUp();
    RegistryConfig config = MakeConfig();
    config.gauges_interval = absl::Milliseconds(50);
    StartRegistry(config);
  }

  // dj_registry_orgs by "kind/domain/status"; absent combinations are not in the map.
  std::map<std::string, double> Orgs() {
    std::map<std::string, double> out;
    for (const prometheus::MetricFamily& family : app_->metrics().Collect()) {
      if (family.name != "dj_registry_orgs") continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        std::map<std::string, std::string> labels;
        for (const auto& label : m.label) labels[label.name] = label.value;
        out[labels["kind"] + "/" + labels["domain"] + "/" + labels["status"]] = m.gauge.value;
      }
    }
    return out;
  }

  double HeadRevision() {
    for (const prometheus::MetricFamily& family : app_->metrics().Collect()) {
      if (family.name == "dj_registry_feed_head_revision") return family.metric.at(0).gauge.value;
    }
    return -1;
  }

  bool WaitForOrgs(const std::map<std::string, double>& want) {
    return testing::PollUntil([&] { return Orgs() == want; }, absl::Seconds(10));
  }

  v1::Org Dissolve(const v1::Org& org) {
    v1::DissolveOrgRequest req;
    req.set_id(org.id());
    req.set_etag(org.etag());
    req.set_reason("撤销");
    v1::Org out;
    grpc::Status st = stub_->DissolveOrg(Ctx(admin_).get(), req, &out);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }
};

TEST_F(OrgGaugesTest, Orgs_CountByKindDomainStatusAndDropToZero) {
  EXPECT_TRUE(WaitForOrgs({})) << "an empty registry reports no combination";
  const v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委", "CITY");
  const v1::Org street = Create(city.id(), v1::ORG_KIND_COMMITTEE, "街道党工委");
  const v1::Org branch = Create(street.id(), v1::ORG_KIND_BRANCH, "社区支部");
  v1::Org school = MakeOrg(city.id(), v1::ORG_KIND_BRANCH, "学校支部");
  school.set_domain(v1::ORG_DOMAIN_SCHOOL);
  {
    v1::CreateOrgRequest req;
    req.set_request_id("school-1");
    *req.mutable_org() = school;
    grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &school);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_TRUE(WaitForOrgs({{"committee/community/active", 2},
                           {"branch/community/active", 1},
                           {"branch/school/active", 1}}))
      << "got " << ::testing::PrintToString(Orgs());

  Dissolve(school);
  Dissolve(branch);
  EXPECT_TRUE(WaitForOrgs({{"committee/community/active", 2},
                           {"branch/community/active", 0},
                           {"branch/community/dissolved", 1},
                           {"branch/school/active", 0},
                           {"branch/school/dissolved", 1}}))
      << "got " << ::testing::PrintToString(Orgs());
}

TEST_F(OrgGaugesTest, FeedHead_FollowsWrites) {
  const v1::Org city = Create(0, v1::ORG_KIND_COMMITTEE, "市委", "CITY");
  Create(city.id(), v1::ORG_KIND_COMMITTEE, "区委");
  // Two creates: two revisions on a fresh database.
  EXPECT_TRUE(testing::PollUntil([&] { return HeadRevision() == 2; }, absl::Seconds(10)))
      << "head revision gauge reads " << HeadRevision();
}

}  // namespace
}  // namespace dangjian::registry
