// Business gauges of the registry, for dashboards: dj_registry_orgs{kind,domain,status} (how many
// orgs of each combination, counted in PostgreSQL) and dj_registry_feed_head_revision (the change
// feed's latest revision), refreshed every `interval` by a thread of their own. Label values are
// the proto enum names without prefix, lower case (kind="branch", domain="community",
// status="active"). Every replica reports the same counts: dashboards take max() over instances.
// A combination whose last org is gone drops to 0 rather than vanishing, so graphs reach zero.
// Thread-safe.
#pragma once

#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <string>
#include <thread>
#include <tuple>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

class OrgGauges {
 public:
  OrgGauges(OrgRepository& repo, prometheus::Registry& registry, absl::Duration interval);
  ~OrgGauges();  // Stop()

  // Refreshes at once, then every interval until Stop().
  void Start();
  void Stop();
  // One refresh; the thread calls it, tests may too.
  absl::Status Refresh();

 private:
  OrgRepository& repo_;
  const absl::Duration interval_;
  prometheus::Family<prometheus::Gauge>& orgs_;
  prometheus::Gauge& head_revision_;
  absl::Mutex mu_;  // one refresh at a time
  // Label sets reported so far, so one that disappears is set to 0.
  std::map<std::tuple<int, int, int>, prometheus::Gauge*> seen_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace dangjian::registry
