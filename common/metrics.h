// Prometheus metrics for a service: one registry, exposed over HTTP by prometheus::Exposer, and the
// metric families shared by common/ components (database pool, cache, worker pool, migrations,
// build info). The gRPC interceptors are in common/grpc_metrics.h, so storage code needs no gRPC
// header.
// prometheus-cpp metrics are thread-safe; so is everything here.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dangjian::metrics {

// Latency buckets in seconds, 0.5 ms .. 10 s.
const std::vector<double>& LatencyBuckets();

// PostgreSQL pool and query metrics, labelled by service via the registry's const labels.
struct DbMetrics {
  explicit DbMetrics(prometheus::Registry& registry);
  prometheus::Gauge& pool_size;    // dj_db_pool_connections{state="total"}
  prometheus::Gauge& pool_in_use;  // dj_db_pool_connections{state="in_use"}
  prometheus::Family<prometheus::Histogram>& acquire_seconds_family;
  prometheus::Histogram& acquire_seconds;  // dj_db_pool_acquire_seconds
  prometheus::Counter& acquire_timeouts;   // dj_db_pool_acquire_timeouts_total
  // dj_db_query_duration_seconds{query}: one transaction of a named unit of work.
  prometheus::Family<prometheus::Histogram>& query_seconds;
  // dj_db_errors_total{kind}: kind is serialization, connection, timeout, constraint, other.
  prometheus::Family<prometheus::Counter>& errors;
  // dj_db_retries_total
  prometheus::Counter& retries;
};

// Redis cache metrics.
struct CacheMetrics {
  explicit CacheMetrics(prometheus::Registry& registry);
  prometheus::Family<prometheus::Counter>&
      requests;  // dj_cache_requests_total{result=hit|miss|error|skipped}
  prometheus::Counter& hits;
  prometheus::Counter& misses;
  prometheus::Counter& errors;
  prometheus::Counter& skipped;            // not asked because the breaker was open
  prometheus::Gauge& breaker_open;         // dj_cache_breaker_open: 1 while open
  prometheus::Counter& breaker_trips;      // dj_cache_breaker_trips_total
  prometheus::Histogram& command_seconds;  // dj_cache_command_duration_seconds
  // dj_cache_entries_refused_total: entries above the known feed head that the database did not
  // back (planted in Redis), deleted instead of served.
  prometheus::Counter& refused;
};

// The in-process cache tier (common/cache/near_cache.h) and its invalidation feed.
struct LocalCacheMetrics {
  explicit LocalCacheMetrics(prometheus::Registry& registry);
  // dj_cache_local_requests_total{result=hit|miss|not_current}; not_current: the feed could not
  // vouch for local copies (disconnected, or an invalidation not yet read), so Redis was asked.
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Counter& hits;
  prometheus::Counter& misses;
  prometheus::Counter& not_current;
  prometheus::Gauge& entries;  // dj_cache_local_entries (sampled)
  prometheus::Gauge& bytes;    // dj_cache_local_bytes: their cost in memory (sampled)
  prometheus::Gauge&
      capacity_bytes;               // dj_cache_local_capacity_bytes: the budget (--local_cache_mb)
  prometheus::Gauge& feed_current;  // dj_cache_local_feed_current: 1 while subscribed
  // dj_cache_local_feed_resets_total: the local tier was emptied (feed lost, Redis flushed).
  prometheus::Counter& feed_resets;
  // dj_cache_local_invalidations_total: keys dropped because Redis announced a change.
  prometheus::Counter& invalidations;
};

// The bounded worker pool of common/worker_pool.h (one per registry: a second pool on the same
// registry would share these series).
struct WorkerPoolMetrics {
  explicit WorkerPoolMetrics(prometheus::Registry& registry);
  prometheus::Gauge& queue_depth;     // dj_worker_queue_depth: tasks waiting for a thread
  prometheus::Gauge& queue_capacity;  // dj_worker_queue_capacity: the queue's bound
  prometheus::Gauge& threads;         // dj_worker_threads
  prometheus::Gauge& busy_threads;    // dj_worker_busy_threads: threads running a task
  prometheus::Counter& rejected;      // dj_worker_rejected_total: Submit refused, queue full
};

// Schema migrations at start (common/sql/migrations.h), by component ("audit", "registry").
// Components are tracked up front, so dashboards and alerts see failing 0 before anything fails.
class MigrationMetrics {
 public:
  explicit MigrationMetrics(prometheus::Registry& registry);
  // Creates `component`'s series: dj_schema_migration_failing 0 and
  // dj_schema_migration_failures_total 0.
  void Track(const std::string& component);
  // A failed attempt: failing 1, failures_total + 1.
  void Failed(const std::string& component);
  // Applied up to `version`: failing 0, dj_schema_version `version`.
  void Succeeded(const std::string& component, int version);

 private:
  prometheus::Family<prometheus::Gauge>& failing_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Gauge>& version_;
};

// dj_build_info{service, version, revision} 1: which build each replica runs. The version and
// revision are those of common/build_info.h, fixed when the binary was built. One line per
// service's composition root.
void RegisterBuildInfo(prometheus::Registry& registry, absl::string_view service);

// Serves `registry` as /metrics over HTTP (prometheus-cpp's Exposer, civetweb inside) and stops
// promptly: civetweb's accept loop looks for a stop only between 2-second polls, so on
// destruction the exposer's own port is poked until it has stopped (about 20 ms instead of up to
// 2 s, which every replica's drain and restart used to pay).
class MetricsExposer {
 public:
  // `address` is host:port; "127.0.0.1:0" picks a free port. UNAVAILABLE, naming the address,
  // when it cannot listen there.
  static absl::StatusOr<std::unique_ptr<MetricsExposer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsExposer();
  MetricsExposer(const MetricsExposer&) = delete;
  MetricsExposer& operator=(const MetricsExposer&) = delete;

  int port() const { return port_; }

 private:
  MetricsExposer(std::unique_ptr<prometheus::Exposer> exposer, std::string poke_host, int port);

  std::unique_ptr<prometheus::Exposer> exposer_;
  const std::string poke_host_;  // where the listener is reached: loopback for a wildcard bind
  const int port_;
};

}  // namespace dangjian::metrics
