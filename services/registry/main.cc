// dj-registry: the composition root of the registry service. Reads flags (each with a DANGJIAN_*
// environment twin), builds RegistryConfig, starts RegistryApp, and serves until SIGTERM/SIGINT,
// then drains and exits 0. Exit codes: 2 bad configuration; 1 a failed start (PostgreSQL
// unreachable at start, metrics port taken, ...) or SIGTERM/SIGINT while failed migrations wait
// for their next attempt (every --migration_retry_interval, with the metrics port up).
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/server.h"
#include "common/usage.h"
#include "services/registry/registry_app.h"

ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "gRPC listen address; TLS is required on anything but loopback");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "Prometheus /metrics listen address; empty disables the exposer");
ABSL_FLAG(std::string, pg_conninfo, "host=127.0.0.1 port=5432 dbname=dj_registry user=postgres",
          "libpq connection string of the registry's database");
ABSL_FLAG(int, pg_pool_size, 8, "PostgreSQL connections");
ABSL_FLAG(absl::Duration, pg_statement_timeout, absl::Seconds(5),
          "longest a statement may run (the call's deadline may cut it shorter)");
ABSL_FLAG(std::string, redis_address, "127.0.0.1:6379",
          "Redis host:port; empty disables the cache");
ABSL_FLAG(absl::Duration, redis_timeout, absl::Milliseconds(100),
          "Redis connect and command timeout");
ABSL_FLAG(absl::Duration, cache_ttl, absl::Minutes(10), "lifetime of cached entries (a backstop)");
ABSL_FLAG(absl::Duration, cache_negative_ttl, absl::Seconds(5),
          "how long an id that does not exist is cached as absent, so refusing it costs no more "
          "than refusing one that exists out of the caller's scope; 0 turns it off");
ABSL_FLAG(int, local_cache_mb, 160,
          "memory (MiB) each replica spends on orgs kept in front of Redis, dropped when Redis "
          "announces a change (client-side caching); the default holds a province (200,000 orgs, "
          "about 640 bytes each); 0 turns the in-process tier off");
ABSL_FLAG(int, local_cache_entries, -1,
          "DEPRECATED (use --local_cache_mb; goes in the next release): also caps the in-process "
          "tier's count of orgs; 0 turns it off; -1: no cap");
ABSL_FLAG(
    absl::Duration, local_cache_ttl, absl::Minutes(5),
    "longest an org stays in the in-process tier (a backstop behind Redis' announcements; "
    "each entry's life is shortened by up to a quarter at random, so they expire spread out)");
ABSL_FLAG(std::string, redis_password_file, "",
          "file holding the Redis password (AUTH on every connection; a trailing newline is "
          "ignored); empty: no password");
ABSL_FLAG(absl::Duration, cache_breaker_interval, absl::Seconds(5),
          "once the Redis circuit breaker opens, how long to skip Redis before one probe");
ABSL_FLAG(absl::Duration, cache_breaker_window, absl::Seconds(10),
          "the Redis calls that may open the breaker are counted over this much time");
ABSL_FLAG(int, cache_breaker_min_calls, 20,
          "fewer Redis calls than this in the window never open the breaker");
ABSL_FLAG(double, cache_breaker_failure_ratio, 0.5,
          "the share of failed Redis calls in the window (of at least --cache_breaker_min_calls) "
          "that opens the breaker");
ABSL_FLAG(std::string, jwt_keys_file, "",
          "file of JWT verification keys, lines kid:hs256:SECRET or kid:rs256|es256:/path.pem");
ABSL_FLAG(std::string, jwt_issuer, "dangjian", "required iss of tokens");
ABSL_FLAG(std::string, jwt_audience, "dangjian", "required aud of tokens");
ABSL_FLAG(bool, insecure_disable_auth, false,
          "DEVELOPMENT ONLY: accept calls without tokens as a city-wide admin");
ABSL_FLAG(int, worker_threads, 8, "threads running blocking work (SQL, Redis)");
ABSL_FLAG(int, worker_queue, 4096, "queued calls beyond which calls get RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, shutdown_delay, absl::Seconds(1),
          "on SIGTERM, how long to go on serving with health NOT_SERVING before the listener "
          "closes, so clients that follow health stop sending first (calls that reach a closing "
          "listener end CANCELLED, which clients do not retry); 0 closes at once");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "on SIGTERM, after --shutdown_delay, how long in-flight calls may take to finish");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM server certificate (required off loopback)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of the server certificate");
ABSL_FLAG(std::string, health_address, "",
          "optional plaintext listener serving only grpc.health.v1, for probes that cannot speak "
          "TLS (e.g. Kubernetes gRPC probes), such as 0.0.0.0:8086; empty: none");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle; when set, clients must present certificates it signed");
ABSL_FLAG(absl::Duration, gauges_interval, absl::Seconds(30),
          "how often org counts (dj_registry_orgs) are read from PostgreSQL for /metrics");
ABSL_FLAG(absl::Duration, feed_poll_interval, absl::Milliseconds(200),
          "how often the change feed looks for changes committed by other replicas");
ABSL_FLAG(int, watch_max_streams, 1000,
          "WatchOrgChanges streams one replica serves at once; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, watch_max_streams_per_caller, 16,
          "WatchOrgChanges streams one caller (token subject) may hold open on one replica; more "
          "get RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, migration_retry_interval, absl::Seconds(30),
          "when the schema migrations fail at start, how long to wait before trying again (the "
          "process stays up, not serving gRPC, with dj_schema_migration_failing 1 on /metrics)");

namespace dangjian::registry {
namespace {

absl::StatusOr<RegistryConfig> ConfigFromFlags() {
  RegistryConfig config;
  config.server.service_name = "registry";
  config.server.address = absl::GetFlag(FLAGS_grpc_address);
  config.server.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  config.server.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  config.server.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  config.server.health_address = absl::GetFlag(FLAGS_health_address);
  config.server.shutdown_delay = absl::GetFlag(FLAGS_shutdown_delay);
  config.server.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  if (config.server.shutdown_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--shutdown_delay must not be negative");
  }
  config.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  config.pg.conninfo = absl::GetFlag(FLAGS_pg_conninfo);
  config.pg.size = absl::GetFlag(FLAGS_pg_pool_size);
  config.pg.statement_timeout = absl::GetFlag(FLAGS_pg_statement_timeout);
  if (config.pg.size < 1) return absl::InvalidArgumentError("--pg_pool_size must be at least 1");

  const std::string redis = absl::GetFlag(FLAGS_redis_address);
  if (!redis.empty()) {
    std::vector<std::string> parts = absl::StrSplit(redis, absl::MaxSplits(':', 1));
    int port = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError("--redis_address must be host:port");
    }
    cache::RedisOptions options;
    options.host = parts[0];
    options.port = port;
    options.connect_timeout = absl::GetFlag(FLAGS_redis_timeout);
    options.command_timeout = absl::GetFlag(FLAGS_redis_timeout);
    options.breaker_open_interval = absl::GetFlag(FLAGS_cache_breaker_interval);
    options.breaker_window = absl::GetFlag(FLAGS_cache_breaker_window);
    options.breaker_min_calls = absl::GetFlag(FLAGS_cache_breaker_min_calls);
    options.breaker_failure_ratio = absl::GetFlag(FLAGS_cache_breaker_failure_ratio);
    if (options.breaker_window <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("--cache_breaker_window must be positive");
    }
    if (options.breaker_min_calls < 1) {
      return absl::InvalidArgumentError("--cache_breaker_min_calls must be at least 1");
    }
    if (!(options.breaker_failure_ratio >= 0 && options.breaker_failure_ratio <= 1)) {
      return absl::InvalidArgumentError("--cache_breaker_failure_ratio must be in [0, 1]");
    }
    const std::string password_file = absl::GetFlag(FLAGS_redis_password_file);
    if (!password_file.empty()) {
      absl::StatusOr<std::string> password = cache::ReadRedisPasswordFile(password_file);
      if (!password.ok()) return password.status();
      options.password = *std::move(password);
    }
    options.key_prefix = "dj:registry:";
    config.redis = options;
  }
  config.cache_ttl = absl::GetFlag(FLAGS_cache_ttl);
  config.cache_negative_ttl = absl::GetFlag(FLAGS_cache_negative_ttl);
  if (config.cache_negative_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--cache_negative_ttl must be >= 0");
  }
  const int local_mb = absl::GetFlag(FLAGS_local_cache_mb);
  if (local_mb < 0) return absl::InvalidArgumentError("--local_cache_mb must be >= 0");
  config.local_cache.max_bytes = static_cast<size_t>(local_mb) << 20;
  const int local_entries = absl::GetFlag(FLAGS_local_cache_entries);
  if (local_entries < -1) return absl::InvalidArgumentError("--local_cache_entries must be >= -1");
  if (local_entries >= 0) {
    log::Warn("--local_cache_entries is deprecated: size the in-process tier with --local_cache_mb",
              {{"local_cache_entries", local_entries}});
    config.local_cache.max_entries = static_cast<size_t>(local_entries);
  }
  config.local_cache.ttl = absl::GetFlag(FLAGS_local_cache_ttl);
  config.gauges_interval = absl::GetFlag(FLAGS_gauges_interval);
  if (config.gauges_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--gauges_interval must be positive");
  }
  if (config.local_cache.ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--local_cache_ttl must be positive");
  }

  config.insecure_disable_auth = absl::GetFlag(FLAGS_insecure_disable_auth);
  const std::string keys_file = absl::GetFlag(FLAGS_jwt_keys_file);
  if (!keys_file.empty()) {
    std::ifstream in(keys_file);
    if (!in)
      return absl::InvalidArgumentError(absl::StrCat("cannot read --jwt_keys_file ", keys_file));
    std::stringstream contents;
    contents << in.rdbuf();
    absl::StatusOr<std::vector<auth::JwtKey>> keys = auth::ParseKeyFile(contents.str());
    if (!keys.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--jwt_keys_file ", keys_file, ": ", keys.status().message()));
    }
    config.auth.keys = *std::move(keys);
  }
  config.auth.issuer = absl::GetFlag(FLAGS_jwt_issuer);
  config.auth.audience = absl::GetFlag(FLAGS_jwt_audience);
  config.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  config.worker_queue = absl::GetFlag(FLAGS_worker_queue);
  if (config.worker_threads < 1) return absl::InvalidArgumentError("--worker_threads must be >= 1");
  config.feed_poll_interval = absl::GetFlag(FLAGS_feed_poll_interval);
  config.watch_limits.max_open = absl::GetFlag(FLAGS_watch_max_streams);
  config.watch_limits.max_per_caller = absl::GetFlag(FLAGS_watch_max_streams_per_caller);
  if (config.watch_limits.max_open < 1 || config.watch_limits.max_per_caller < 1) {
    return absl::InvalidArgumentError(
        "--watch_max_streams and --watch_max_streams_per_caller must be at least 1");
  }
  config.migration_retry_interval = absl::GetFlag(FLAGS_migration_retry_interval);
  if (config.migration_retry_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--migration_retry_interval must be positive");
  }
  // SIGTERM/SIGINT are blocked (BlockShutdownSignals), so the wait between attempts takes them.
  config.wait_to_retry = [](absl::Duration interval) {
    const int signal = WaitForShutdownSignalFor(interval);
    if (signal == 0) return true;
    log::Warn("shutdown signal while waiting to retry the schema migrations; exiting",
              {{"signal", signal}});
    return false;
  };
  return config;
}

int Main(int argc, char** argv) {
  // Debian's Abseil checks lock order on every Mutex acquisition (a debug aid that tests keep);
  // a serving process does not pay for it on every call.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  BlockShutdownSignals();
  flags::ListOwnFlagsInHelp(__FILE__);
  absl::SetProgramUsageMessage(
      "the organisation tree service (gRPC). Every flag also reads DANGJIAN_<NAME>.");
  flags::ParseWithEnv(argc, argv);
  log::Level level = log::Level::kInfo;
  if (!log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::cerr << "--log_level must be debug, info, warn or error\n";
    return 2;
  }
  log::Init("registry", level);
  flags::LogEffectiveFlags();
  absl::StatusOr<RegistryConfig> config = ConfigFromFlags();
  if (!config.ok()) {
    log::Error("bad configuration", {{"error", std::string(config.status().message())}});
    return 2;
  }
  absl::StatusOr<std::unique_ptr<RegistryApp>> app = RegistryApp::Start(*std::move(config));
  if (!app.ok()) {
    log::Error("registry failed to start", {{"error", app.status().ToString()}});
    return 1;
  }
  log::Info("registry serving",
            {{"grpc_port", (*app)->grpc_port()}, {"metrics_port", (*app)->metrics_port()}});
  const int signal = WaitForShutdownSignal();
  log::Info("shutting down", {{"signal", signal}});
  (*app)->Shutdown();
  log::Info("stopped");
  return 0;
}

}  // namespace
}  // namespace dangjian::registry

int main(int argc, char** argv) { return dangjian::registry::Main(argc, argv); }
