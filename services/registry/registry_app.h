// The registry's composition: applies migrations, builds the pool, cache, repositories, service
// and server, and serves. main.cc fills RegistryConfig from flags; tests and benchmarks start the
// same composition in-process. Thread-safe: Shutdown() may be called from any thread.
//
// Migrations that fail do not end the process when `wait_to_retry` is set: Start() keeps the
// metrics exposer up (dj_schema_migration_failing{component} 1, failures counted), does not
// listen for gRPC, logs each failure, and tries again every `migration_retry_interval` until the
// migrations succeed or `wait_to_retry` says to stop. So a schema problem is an alert on a
// running replica, not a silent crash loop.
#pragma once

#include <prometheus/registry.h>

#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "common/cache/local_cache.h"
#include "common/cache/redis_cache.h"
#include "common/server.h"
#include "common/sql/pg_pool.h"
#include "common/stream_slots.h"

namespace dangjian::registry {

struct RegistryConfig {
  ServerOptions server;
  std::string metrics_address = "127.0.0.1:0";  // empty: no exposer (the registry still counts)
  sql::PgPoolOptions pg;
  std::optional<cache::RedisOptions> redis;  // nullopt: no cache
  absl::Duration cache_ttl = absl::Minutes(10);
  // How long "no org with this id" is cached (store/cached_org_repository.h); 0: not cached.
  absl::Duration cache_negative_ttl = absl::Seconds(5);
  // The in-process tier in front of Redis (common/cache/near_cache.h): max_bytes (or max_entries)
  // 0 turns it off. Used only with Redis, whose invalidation feed keeps it honest. The default
  // budget holds a province (200,000 orgs at about 640 bytes each as charged) with room to spare.
  cache::LocalCacheOptions local_cache = {/*max_bytes=*/size_t{160} << 20,
                                          /*max_entries=*/std::numeric_limits<size_t>::max(),
                                          /*ttl=*/absl::Minutes(5), /*shards=*/16,
                                          /*ttl_jitter=*/0.25};
  auth::VerifierOptions auth;
  // Accept calls without a token, as a city-wide admin. For the local run command only.
  bool insecure_disable_auth = false;
  int worker_threads = 8;
  int worker_queue = 4096;
  // How often the business gauges (dj_registry_orgs, dj_registry_feed_head_revision) are counted.
  absl::Duration gauges_interval = absl::Seconds(30);
  // How often the change feed polls PostgreSQL for changes committed by other replicas.
  absl::Duration feed_poll_interval = absl::Milliseconds(200);
  // WatchOrgChanges streams open at once, per replica and per caller (beyond: RESOURCE_EXHAUSTED).
  StreamLimits watch_limits;
  // How long to wait after failed migrations before trying them again.
  absl::Duration migration_retry_interval = absl::Seconds(30);
  // Waits up to the given time before the next attempt at the migrations; returns false when the
  // process is to stop instead (Start() then fails with CANCELLED). Null: no retry, Start() fails
  // at the first failed migration.
  std::function<bool(absl::Duration)> wait_to_retry;
  // Where the metrics are registered; null: a registry of the app's own. Lets a caller read the
  // metrics while Start() is still retrying migrations.
  std::shared_ptr<prometheus::Registry> metrics_registry;
};

class RegistryApp {
 public:
  static absl::StatusOr<std::unique_ptr<RegistryApp>> Start(RegistryConfig config);
  ~RegistryApp();

  int grpc_port() const;
  int metrics_port() const;  // 0 without an exposer
  prometheus::Registry& metrics();
  // Drains gRPC calls and the change feed, then closes the pool. Idempotent.
  void Shutdown();

  struct Parts;

 private:
  explicit RegistryApp(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace dangjian::registry
