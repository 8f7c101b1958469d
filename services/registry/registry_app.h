// The registry's composition: applies migrations, builds the pool, cache, repositories, service
// and server, and serves. main.cc fills RegistryConfig from flags; tests and benchmarks start the
// same composition in-process. Thread-safe: Shutdown() may be called from any thread.
#pragma once

#include <prometheus/registry.h>

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

namespace dangjian::registry {

struct RegistryConfig {
  ServerOptions server;
  std::string metrics_address = "127.0.0.1:0";  // empty: no exposer (the registry still counts)
  sql::PgPoolOptions pg;
  std::optional<cache::RedisOptions> redis;  // nullopt: no cache
  absl::Duration cache_ttl = absl::Minutes(10);
  // The in-process tier in front of Redis (common/cache/near_cache.h): max_entries 0 turns it off.
  // Used only with Redis, whose invalidation feed keeps it honest.
  cache::LocalCacheOptions local_cache = {/*max_entries=*/50000, /*ttl=*/absl::Minutes(5),
                                          /*shards=*/16, /*ttl_jitter=*/0.25};
  auth::VerifierOptions auth;
  // Accept calls without a token, as a city-wide admin. For the local run command only.
  bool insecure_disable_auth = false;
  int worker_threads = 8;
  int worker_queue = 4096;
  // How often the business gauges (dj_registry_orgs, dj_registry_feed_head_revision) are counted.
  absl::Duration gauges_interval = absl::Seconds(30);
  // How often the change feed polls PostgreSQL for changes committed by other replicas.
  absl::Duration feed_poll_interval = absl::Milliseconds(200);
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
