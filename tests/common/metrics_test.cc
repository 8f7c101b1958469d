// common/metrics.h: dj_build_info (the labels a service's one-line registration exports) and the
// migration series, from tracking through failure to success.
#include "common/metrics.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "common/build_info.h"
#include "tests/common/metric_reader.h"

namespace dangjian {
namespace {

using testing::MetricValue;

// (Plain character checks: GCC 12's std::regex trips -Wmaybe-uninitialized in the sanitizer
// build.)
bool AllOf(absl::string_view text, absl::string_view allowed) {
  return !text.empty() && text.find_first_not_of(allowed) == absl::string_view::npos;
}

TEST(BuildInfoTest, RevisionIsAShortCommitIdOrUnknown) {
  const absl::string_view revision = BuildRevision();
  EXPECT_TRUE(revision == "unknown" || (revision.size() >= 7 && revision.size() <= 40 &&
                                        AllOf(revision, "0123456789abcdef")))
      << revision;
  EXPECT_TRUE(
      AllOf(BuildVersion(), "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._+-"))
      << BuildVersion();
}

TEST(BuildInfoTest, Register_ExportsOneSeriesWithServiceVersionAndRevision) {
  prometheus::Registry registry;
  metrics::RegisterBuildInfo(registry, "registry");
  int series = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != "dj_build_info") continue;
    EXPECT_EQ(family.type, prometheus::MetricType::Gauge);
    for (const prometheus::ClientMetric& metric : family.metric) {
      ++series;
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      EXPECT_EQ(labels,
                (std::map<std::string, std::string>{{"service", "registry"},
                                                    {"version", std::string(BuildVersion())},
                                                    {"revision", std::string(BuildRevision())}}));
      EXPECT_EQ(metric.gauge.value, 1);
    }
  }
  EXPECT_EQ(series, 1);
}

TEST(BuildInfoTest, Register_TwiceOnOneRegistryKeepsOneSeries) {
  prometheus::Registry registry;
  metrics::RegisterBuildInfo(registry, "registry");
  metrics::RegisterBuildInfo(registry, "registry");
  size_t series = 0;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name == "dj_build_info") series += family.metric.size();
  }
  EXPECT_EQ(series, 1u);
}

TEST(MigrationMetricsTest, Track_CreatesZeroSeriesBeforeAnyAttempt) {
  prometheus::Registry registry;
  metrics::MigrationMetrics metrics(registry);
  EXPECT_FALSE(MetricValue(registry, "dj_schema_migration_failing", {{"component", "audit"}}));
  metrics.Track("audit");
  EXPECT_EQ(MetricValue(registry, "dj_schema_migration_failing", {{"component", "audit"}}), 0);
  EXPECT_EQ(MetricValue(registry, "dj_schema_migration_failures_total", {{"component", "audit"}}),
            0);
  // The version is known only once the migrations succeeded.
  EXPECT_FALSE(MetricValue(registry, "dj_schema_version", {{"component", "audit"}}));
}

TEST(MigrationMetricsTest, FailedThenSucceeded_SetsFailingCountsAndVersion) {
  prometheus::Registry registry;
  metrics::MigrationMetrics metrics(registry);
  metrics.Track("registry");
  metrics.Failed("registry");
  metrics.Failed("registry");
  EXPECT_EQ(MetricValue(registry, "dj_schema_migration_failing", {{"component", "registry"}}), 1);
  EXPECT_EQ(
      MetricValue(registry, "dj_schema_migration_failures_total", {{"component", "registry"}}), 2);
  metrics.Succeeded("registry", 3);
  EXPECT_EQ(MetricValue(registry, "dj_schema_migration_failing", {{"component", "registry"}}), 0);
  EXPECT_EQ(
      MetricValue(registry, "dj_schema_migration_failures_total", {{"component", "registry"}}), 2);
  EXPECT_EQ(MetricValue(registry, "dj_schema_version", {{"component", "registry"}}), 3);
}

}  // namespace
}  // namespace dangjian
