// Test helper: the value of one series in a prometheus::Registry, read through Collect() as the
// exposer would. Header-only; not thread-safe beyond what Registry::Collect() offers (it is).
#pragma once

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <map>
#include <optional>
#include <string>

namespace dangjian::testing {

// The value of the series of family `name` whose labels include every pair of `labels`
// (counter, gauge or untyped), or nullopt when there is none.
inline std::optional<double> MetricValue(prometheus::Registry& registry, const std::string& name,
                                         const std::map<std::string, std::string>& labels = {}) {
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      size_t matched = 0;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched != labels.size()) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return metric.counter.value;
        case prometheus::MetricType::Gauge:
          return metric.gauge.value;
        case prometheus::MetricType::Untyped:
          return metric.untyped.value;
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

}  // namespace dangjian::testing
