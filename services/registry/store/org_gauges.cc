#include "services/registry/store/org_gauges.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "dangjian/registry/v1/registry.pb.h"

namespace dangjian::registry {
namespace {

// "ORG_KIND_GENERAL_BRANCH" with prefix "ORG_KIND_" -> "general_branch".
std::string LabelOf(const std::string& enum_name, absl::string_view prefix) {
  absl::string_view name = enum_name;
  absl::ConsumePrefix(&name, prefix);
  return absl::AsciiStrToLower(name);
}

}  // namespace

OrgGauges::OrgGauges(OrgRepository& repo, prometheus::Registry& registry, absl::Duration interval)
    : repo_(repo),
      interval_(interval),
      orgs_(prometheus::BuildGauge()
                .Name("dj_registry_orgs")
                .Help("Orgs by kind, domain and status, counted in the registry's database.")
                .Register(registry)),
      head_revision_(prometheus::BuildGauge()
                         .Name("dj_registry_feed_head_revision")
                         .Help("Latest revision of the registry's change feed.")
                         .Register(registry)
                         .Add({})) {}

OrgGauges::~OrgGauges() { Stop(); }

void OrgGauges::Start() {
  thread_ = std::thread([this] {
    do {
      absl::Status status = Refresh();
      if (!status.ok()) {
        log::Warn("org gauges not refreshed", {{"error", std::string(status.message())}});
      }
    } while (!stop_.WaitForNotificationWithTimeout(interval_));
  });
}

void OrgGauges::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

absl::Status OrgGauges::Refresh() {
  const ReadContext ctx{absl::Now() + absl::Seconds(10)};
  absl::StatusOr<std::vector<OrgCount>> counts = repo_.CountOrgs(ctx);
  if (!counts.ok()) return counts.status();
  absl::StatusOr<int64_t> head = repo_.HeadRevision(ctx);
  if (!head.ok()) return head.status();

  absl::MutexLock lock(&mu_);
  std::set<std::tuple<int, int, int>> present;
  for (const OrgCount& c : *counts) {
    const auto key = std::make_tuple(static_cast<int>(c.kind), static_cast<int>(c.domain),
                                     static_cast<int>(c.status));
    present.insert(key);
    prometheus::Gauge*& gauge = seen_[key];
    if (gauge == nullptr) {
      gauge = &orgs_.Add(
          {{"kind", LabelOf(v1::OrgKind_Name(static_cast<int>(c.kind)), "ORG_KIND_")},
           {"domain", LabelOf(v1::OrgDomain_Name(static_cast<int>(c.domain)), "ORG_DOMAIN_")},
           {"status", LabelOf(v1::OrgStatus_Name(static_cast<int>(c.status)), "ORG_STATUS_")}});
    }
    gauge->Set(static_cast<double>(c.count));
  }
  for (auto& [key, gauge] : seen_) {
    if (present.count(key) == 0) gauge->Set(0);
  }
  head_revision_.Set(static_cast<double>(*head));
  return absl::OkStatus();
}

}  // namespace dangjian::registry
