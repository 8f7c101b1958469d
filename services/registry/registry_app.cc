#include "services/registry/registry_app.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/cache/local_cache.h"
#include "common/cache/near_cache.h"
#include "common/cache/redis_invalidations.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/sql/migrations.h"
#include "common/status.h"
#include "common/worker_pool.h"
#include "services/registry/api/registry_service.h"
#include "services/registry/store/cached_org_repository.h"
#include "services/registry/store/change_notifier.h"
#include "services/registry/store/org_gauges.h"
#include "services/registry/store/pg_org_repository.h"

namespace dangjian::registry {

// Defined in the source cmake/embed_migrations.cmake generates from migrations/.
const std::vector<sql::Migration>& EmbeddedMigrations();

namespace {

// The value of the `service` label of dj_build_info.
constexpr char kServiceName[] = "registry";
// How often, at most, a token under a key this replica does not hold makes it read the keys again.
constexpr absl::Duration kPageTokenKeyReloadInterval = absl::Seconds(10);

// Applies the schema of each component (common's audit log first, then the registry's own), and
// records the outcome of each in `metrics`. Stops at the first component that fails.
absl::Status ApplySchema(sql::PgPool& pool, metrics::MigrationMetrics& metrics) {
  struct Component {
    const char* name;
    const std::vector<sql::Migration>& migrations;
  };
  const Component components[] = {{"audit", audit::Migrations()},
                                  {"registry", EmbeddedMigrations()}};
  std::vector<std::pair<std::string, sql::MigrationReport>> reports;
  for (const Component& c : components) {
    absl::StatusOr<sql::MigrationReport> report = sql::ApplyMigrations(pool, c.name, c.migrations);
    if (!report.ok()) {
      metrics.Failed(c.name);
      return report.status();
    }
    metrics.Succeeded(c.name, report->current_version);
    reports.emplace_back(c.name, *std::move(report));
  }
  nlohmann::json fields = nlohmann::json::object();
  size_t applied = 0;
  for (const auto& [name, report] : reports) {
    fields[absl::StrCat(name, "_version")] = report.current_version;
    applied += report.applied.size();
  }
  fields["applied_now"] = applied;
  log::Info("schema ready", std::move(fields));
  return absl::OkStatus();
}

}  // namespace

// Members are declared in dependency order, so they are destroyed in reverse: the server first,
// the pool last.
struct RegistryApp::Parts {
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<metrics::MetricsExposer> exposer;
  std::unique_ptr<metrics::DbMetrics> db_metrics;
  std::unique_ptr<metrics::CacheMetrics> cache_metrics;
  std::unique_ptr<metrics::LocalCacheMetrics> local_cache_metrics;
  std::unique_ptr<metrics::MigrationMetrics> migration_metrics;
  std::unique_ptr<metrics::WorkerPoolMetrics> worker_metrics;
  std::unique_ptr<ChangeFeedMetrics> feed_metrics;
  std::unique_ptr<sql::PgPool> pool;
  std::unique_ptr<cache::Cache> redis_cache;
  std::unique_ptr<cache::LocalCache> local_cache;
  std::unique_ptr<cache::RedisInvalidationFeed> invalidations;
  std::unique_ptr<cache::Cache> near_cache;
  cache::Cache* cache = nullptr;  // what the repository reads through: one of the above
  std::unique_ptr<PgOrgRepository> pg_repo;
  std::unique_ptr<ChangeNotifier> notifier;
  std::unique_ptr<CachedOrgRepository> cached_repo;  // asks `notifier` for the head
  std::unique_ptr<OrgGauges> gauges;
  std::unique_ptr<WorkerPool> workers;
  std::unique_ptr<auth::TokenVerifier> verifier;
  std::unique_ptr<PageTokenKeyring> page_tokens;
  std::unique_ptr<OrgRegistryService> service;
  std::unique_ptr<ServiceHost> host;
  std::once_flag shutdown_once;
};

absl::StatusOr<std::unique_ptr<RegistryApp>> RegistryApp::Start(RegistryConfig config) {
  auto parts = std::make_unique<Parts>();
  parts->registry = config.metrics_registry != nullptr ? config.metrics_registry
                                                       : std::make_shared<prometheus::Registry>();
  metrics::RegisterBuildInfo(*parts->registry, kServiceName);
  parts->db_metrics = std::make_unique<metrics::DbMetrics>(*parts->registry);
  parts->cache_metrics = std::make_unique<metrics::CacheMetrics>(*parts->registry);
  parts->local_cache_metrics = std::make_unique<metrics::LocalCacheMetrics>(*parts->registry);
  parts->migration_metrics = std::make_unique<metrics::MigrationMetrics>(*parts->registry);
  parts->migration_metrics->Track("audit");
  parts->migration_metrics->Track("registry");
  parts->worker_metrics = std::make_unique<metrics::WorkerPoolMetrics>(*parts->registry);
  if (!config.metrics_address.empty()) {
    DJ_ASSIGN_OR_RETURN(parts->exposer,
                        metrics::MetricsExposer::Start(config.metrics_address, parts->registry));
  }
  // Configuration errors end the start before anything waits on the database.
  if (!config.insecure_disable_auth && config.auth.keys.empty()) {
    return absl::FailedPreconditionError(
        "no JWT verification keys configured (--jwt_keys_file); refusing to start without "
        "authentication");
  }

  DJ_ASSIGN_OR_RETURN(parts->pool, sql::PgPool::Create(config.pg, parts->db_metrics.get()));
  for (;;) {
    const absl::Status schema = ApplySchema(*parts->pool, *parts->migration_metrics);
    if (schema.ok()) break;
    if (!config.wait_to_retry) return schema;
    log::Error("schema migrations failed; not serving until they succeed",
               {{"error", schema.ToString()},
                {"retry_in", absl::FormatDuration(config.migration_retry_interval)}});
    if (!config.wait_to_retry(config.migration_retry_interval)) {
      return absl::CancelledError(
          absl::StrCat("stopped while waiting to retry the schema migrations, which failed: ",
                       schema.message()));
    }
  }

  if (config.redis) {
    parts->redis_cache =
        std::make_unique<cache::RedisCache>(*config.redis, parts->cache_metrics.get());
    parts->cache = parts->redis_cache.get();
    if (config.local_cache.max_bytes > 0 && config.local_cache.max_entries > 0) {
      // Orgs only: list pages are keyed by the revision, which is read from Redis anyway.
      parts->local_cache = std::make_unique<cache::LocalCache>(config.local_cache);
      parts->invalidations = std::make_unique<cache::RedisInvalidationFeed>(
          *config.redis, std::vector<std::string>{std::string(kOrgCacheKeyPrefix)},
          *parts->local_cache, parts->local_cache_metrics.get());
      parts->near_cache = std::make_unique<cache::NearCache>(
          *parts->redis_cache, *parts->local_cache, *parts->invalidations,
          parts->local_cache_metrics.get());
      parts->cache = parts->near_cache.get();
    }
  } else {
    log::Warn("no Redis configured: every read goes to PostgreSQL");
    parts->redis_cache = std::make_unique<cache::NullCache>();
    parts->cache = parts->redis_cache.get();
  }
  // The repository registers its prepared statements on the pool before any request runs.
  parts->pg_repo = std::make_unique<PgOrgRepository>(*parts->pool);
  // The feed's series appear once it runs (not while migrations fail, when it cannot stall).
  parts->feed_metrics = std::make_unique<ChangeFeedMetrics>(*parts->registry);
  parts->notifier = std::make_unique<ChangeNotifier>(*parts->pg_repo, config.feed_poll_interval,
                                                     parts->feed_metrics.get(), RealClock::Get(),
                                                     config.watch_limits);
  // Started (its first poll reads the head) before the cache is read: entries above the head it
  // knows are checked against PostgreSQL.
  parts->notifier->Start();
  CachedOrgRepositoryOptions cached;
  cached.ttl = config.cache_ttl;
  cached.negative_ttl = config.cache_negative_ttl;
  ChangeNotifier* notifier = parts->notifier.get();
  cached.known_head = [notifier] { return notifier->head(); };
  cached.refused = &parts->cache_metrics->refused;
  parts->cached_repo =
      std::make_unique<CachedOrgRepository>(*parts->pg_repo, *parts->cache, std::move(cached));
  parts->gauges =
      std::make_unique<OrgGauges>(*parts->pg_repo, *parts->registry, config.gauges_interval);
  parts->gauges->Start();
  parts->workers = std::make_unique<WorkerPool>(
      config.worker_threads, static_cast<size_t>(config.worker_queue), parts->worker_metrics.get());
  if (config.insecure_disable_auth) {
    log::Warn(
        "AUTHENTICATION IS DISABLED (--insecure_disable_auth): every caller is a city-wide "
        "admin. Use this only on a developer machine, never with real data.");
  } else {
    parts->verifier = std::make_unique<auth::TokenVerifier>(config.auth);
  }
  PgOrgRepository* pg_repo = parts->pg_repo.get();
  DJ_ASSIGN_OR_RETURN(parts->page_tokens,
                      PageTokenKeyring::Create([pg_repo] { return pg_repo->PageTokenKeys(); },
                                               kPageTokenKeyReloadInterval));
  parts->service =
      std::make_unique<OrgRegistryService>(*parts->cached_repo, *parts->notifier, *parts->workers,
                                           *parts->page_tokens, parts->verifier.get());
  sql::PgPool* pool = parts->pool.get();
  DJ_ASSIGN_OR_RETURN(parts->host,
                      ServiceHost::Start(config.server, {parts->service.get()}, *parts->registry,
                                         [pool] { return pool->Ping(); }));
  return std::unique_ptr<RegistryApp>(new RegistryApp(std::move(parts)));
}

RegistryApp::RegistryApp(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

RegistryApp::~RegistryApp() { Shutdown(); }

int RegistryApp::grpc_port() const { return parts_->host->port(); }

int RegistryApp::metrics_port() const { return parts_->exposer ? parts_->exposer->port() : 0; }

prometheus::Registry& RegistryApp::metrics() { return *parts_->registry; }

void RegistryApp::Shutdown() {
  std::call_once(parts_->shutdown_once, [this] {
    // Change-feed streams never end by themselves: end them first (clients resume from their
    // last revision elsewhere), then drain the unary calls.
    parts_->notifier->Stop();
    parts_->gauges->Stop();
    parts_->host->Shutdown();
    parts_->workers->Shutdown();
  });
}

}  // namespace dangjian::registry
