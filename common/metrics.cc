#include "common/metrics.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/build_info.h"

namespace dangjian::metrics {
namespace {

// Each family is built by one function, so a second DbMetrics/CacheMetrics on the same registry
// (two pools, say) merges into the same families: the registry's default InsertBehavior::Merge
// returns the existing family when name and constant labels match.
prometheus::Family<prometheus::Gauge>& PoolConnections(prometheus::Registry& registry) {
  return prometheus::BuildGauge()
      .Name("dj_db_pool_connections")
      .Help("PostgreSQL connections held by the pool, by state (total, in_use).")
      .Register(registry);
}

prometheus::Family<prometheus::Histogram>& AcquireSeconds(prometheus::Registry& registry) {
  return prometheus::BuildHistogram()
      .Name("dj_db_pool_acquire_seconds")
      .Help("Time spent waiting for a pooled PostgreSQL connection.")
      .Register(registry);
}

prometheus::Family<prometheus::Counter>& CacheRequests(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("dj_cache_requests_total")
      .Help("Cache lookups by result (hit, miss, error, skipped while the breaker is open).")
      .Register(registry);
}

}  // namespace

const std::vector<double>& LatencyBuckets() {
  // Roughly 1-2.5-5 steps: fine below 10 ms where cached reads land, coarse up to the 10 s that
  // the longest deadlines allow.
  static const std::vector<double>* const kBuckets = new std::vector<double>{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *kBuckets;
}

DbMetrics::DbMetrics(prometheus::Registry& registry)
    : pool_size(PoolConnections(registry).Add({{"state", "total"}})),
      pool_in_use(PoolConnections(registry).Add({{"state", "in_use"}})),
      acquire_seconds_family(AcquireSeconds(registry)),
      acquire_seconds(acquire_seconds_family.Add({}, LatencyBuckets())),
      acquire_timeouts(prometheus::BuildCounter()
                           .Name("dj_db_pool_acquire_timeouts_total")
                           .Help("Connection acquisitions that gave up at their deadline.")
                           .Register(registry)
                           .Add({})),
      query_seconds(prometheus::BuildHistogram()
                        .Name("dj_db_query_duration_seconds")
                        .Help("Duration of one transaction of a named unit of work.")
                        .Register(registry)),
      errors(prometheus::BuildCounter()
                 .Name("dj_db_errors_total")
                 .Help("PostgreSQL errors by kind (serialization, connection, timeout, "
                       "constraint, other).")
                 .Register(registry)),
      retries(prometheus::BuildCounter()
                  .Name("dj_db_retries_total")
                  .Help("Transactions retried after a serialization failure or deadlock.")
                  .Register(registry)
                  .Add({})) {}

CacheMetrics::CacheMetrics(prometheus::Registry& registry)
    : requests(CacheRequests(registry)),
      hits(requests.Add({{"result", "hit"}})),
      misses(requests.Add({{"result", "miss"}})),
      errors(requests.Add({{"result", "error"}})),
      skipped(requests.Add({{"result", "skipped"}})),
      breaker_open(prometheus::BuildGauge()
                       .Name("dj_cache_breaker_open")
                       .Help("1 while the Redis circuit breaker is open, else 0.")
                       .Register(registry)
                       .Add({})),
      breaker_trips(prometheus::BuildCounter()
                        .Name("dj_cache_breaker_trips_total")
                        .Help("Times the Redis circuit breaker opened.")
                        .Register(registry)
                        .Add({})),
      command_seconds(prometheus::BuildHistogram()
                          .Name("dj_cache_command_duration_seconds")
                          .Help("Duration of one Redis command, including failures.")
                          .Register(registry)
                          .Add({}, LatencyBuckets())),
      refused(prometheus::BuildCounter()
                  .Name("dj_cache_entries_refused_total")
                  .Help("Cache entries above the known feed head that the database did not back, "
                        "deleted instead of served.")
                  .Register(registry)
                  .Add({})) {}

namespace {
prometheus::Family<prometheus::Counter>& LocalCacheRequests(prometheus::Registry& registry) {
  return prometheus::BuildCounter()
      .Name("dj_cache_local_requests_total")
      .Help("Reads of the in-process cache tier by result (hit, miss, not_current).")
      .Register(registry);
}
}  // namespace

LocalCacheMetrics::LocalCacheMetrics(prometheus::Registry& registry)
    : requests(LocalCacheRequests(registry)),
      hits(requests.Add({{"result", "hit"}})),
      misses(requests.Add({{"result", "miss"}})),
      not_current(requests.Add({{"result", "not_current"}})),
      entries(prometheus::BuildGauge()
                  .Name("dj_cache_local_entries")
                  .Help("Entries held in the in-process cache tier (sampled).")
                  .Register(registry)
                  .Add({})),
      bytes(prometheus::BuildGauge()
                .Name("dj_cache_local_bytes")
                .Help("Memory the in-process cache tier's entries take, as charged against its "
                      "budget (sampled).")
                .Register(registry)
                .Add({})),
      capacity_bytes(prometheus::BuildGauge()
                         .Name("dj_cache_local_capacity_bytes")
                         .Help("The in-process cache tier's memory budget; 0 when it is off.")
                         .Register(registry)
                         .Add({})),
      feed_current(prometheus::BuildGauge()
                       .Name("dj_cache_local_feed_current")
                       .Help("1 while the Redis invalidation feed is subscribed, else 0.")
                       .Register(registry)
                       .Add({})),
      feed_resets(prometheus::BuildCounter()
                      .Name("dj_cache_local_feed_resets_total")
                      .Help("Times the in-process tier was emptied (feed lost or Redis flushed).")
                      .Register(registry)
                      .Add({})),
      invalidations(prometheus::BuildCounter()
                        .Name("dj_cache_local_invalidations_total")
                        .Help("Keys dropped from the in-process tier on Redis' announcement.")
                        .Register(registry)
                        .Add({})) {}

WorkerPoolMetrics::WorkerPoolMetrics(prometheus::Registry& registry)
    : queue_depth(prometheus::BuildGauge()
                      .Name("dj_worker_queue_depth")
                      .Help("Tasks queued for the worker pool, not yet running.")
                      .Register(registry)
                      .Add({})),
      queue_capacity(prometheus::BuildGauge()
                         .Name("dj_worker_queue_capacity")
                         .Help("Tasks the worker pool queues at most; beyond it calls are refused.")
                         .Register(registry)
                         .Add({})),
      threads(prometheus::BuildGauge()
                  .Name("dj_worker_threads")
                  .Help("Threads of the worker pool.")
                  .Register(registry)
                  .Add({})),
      busy_threads(prometheus::BuildGauge()
                       .Name("dj_worker_busy_threads")
                       .Help("Worker threads running a task.")
                       .Register(registry)
                       .Add({})),
      rejected(prometheus::BuildCounter()
                   .Name("dj_worker_rejected_total")
                   .Help("Tasks refused because the worker queue was full (RESOURCE_EXHAUSTED).")
                   .Register(registry)
                   .Add({})) {}

MigrationMetrics::MigrationMetrics(prometheus::Registry& registry)
    : failing_(prometheus::BuildGauge()
                   .Name("dj_schema_migration_failing")
                   .Help("1 while the schema migrations of a component fail (the service is up "
                         "but not serving, retrying), else 0.")
                   .Register(registry)),
      failures_(prometheus::BuildCounter()
                    .Name("dj_schema_migration_failures_total")
                    .Help("Failed attempts to apply the schema migrations of a component.")
                    .Register(registry)),
      version_(prometheus::BuildGauge()
                   .Name("dj_schema_version")
                   .Help("Newest schema migration applied for a component (after success).")
                   .Register(registry)) {}

void MigrationMetrics::Track(const std::string& component) {
  failing_.Add({{"component", component}});
  failures_.Add({{"component", component}});
}

void MigrationMetrics::Failed(const std::string& component) {
  failing_.Add({{"component", component}}).Set(1);
  failures_.Add({{"component", component}}).Increment();
}

void MigrationMetrics::Succeeded(const std::string& component, int version) {
  failing_.Add({{"component", component}}).Set(0);
  version_.Add({{"component", component}}).Set(version);
}

void RegisterBuildInfo(prometheus::Registry& registry, absl::string_view service) {
  prometheus::BuildGauge()
      .Name("dj_build_info")
      .Help("Always 1; the labels say which build of the service this process runs.")
      .Register(registry)
      .Add({{"service", std::string(service)},
            {"version", std::string(BuildVersion())},
            {"revision", std::string(BuildRevision())}})
      .Set(1);
}

absl::StatusOr<std::unique_ptr<MetricsExposer>> MetricsExposer::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics registry is null");
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address ", address, " is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  std::unique_ptr<prometheus::Exposer> exposer;
  // civetweb reports a bind failure by throwing from the constructor; it must not escape.
  try {
    exposer = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("no metrics port on ", address));
  exposer->RegisterCollectable(registry);
  return std::unique_ptr<MetricsExposer>(
      new MetricsExposer(std::move(exposer), std::move(host), ports.front()));
}

MetricsExposer::MetricsExposer(std::unique_ptr<prometheus::Exposer> exposer, std::string poke_host,
                               int port)
    : exposer_(std::move(exposer)), poke_host_(std::move(poke_host)), port_(port) {}

MetricsExposer::~MetricsExposer() {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port_);
  if (getaddrinfo(poke_host_.c_str(), service.c_str(), &hints, &found) != 0) found = nullptr;
  // A connection wakes civetweb's accept loop, which then sees the stop flag. Bounded: the loop
  // also ends by itself after 3 s (civetweb stops within 2 s without help).
  absl::Notification stopped;
  std::thread poker;
  if (found != nullptr) {
    poker = std::thread([&] {
      const absl::Time give_up = absl::Now() + absl::Seconds(3);
      while (!stopped.WaitForNotificationWithTimeout(absl::Milliseconds(20)) &&
             absl::Now() < give_up) {
        const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        connect(fd, found->ai_addr, found->ai_addrlen);  // refused once it stopped: fine
        close(fd);
      }
    });
  }
  exposer_.reset();
  stopped.Notify();
  if (poker.joinable()) poker.join();
  if (found != nullptr) freeaddrinfo(found);
}

}  // namespace dangjian::metrics
