// A PostgreSQL connection pool (libpqxx 6.4) with transactions that map errors to absl::Status.
//
// - Connections are opened up front (size) and re-opened when found broken. One thread uses a
//   connection at a time (libpqxx's rule): a connection is leased for exactly one transaction.
// - Named prepared statements are registered once with Prepare() before the pool is used, and
//   prepared on every connection (including re-opened ones).
// - Run() executes a unit of work in one transaction: `SET LOCAL statement_timeout` from the
//   tighter of the pool's timeout and the call's deadline; commit if the work returns OK, roll
//   back otherwise (a failed request changes nothing). Serialization failures and deadlocks, and
//   connections that broke before commit, are retried with backoff up to max_attempts: the work
//   must therefore be safe to re-run (everything it does is in the rolled-back transaction).
//   A connection lost during COMMIT is never retried (the outcome is unknown): UNAVAILABLE.
// - libpqxx exceptions never leave the pool: unique/foreign-key/check violations become
//   ALREADY_EXISTS / FAILED_PRECONDITION, serialization failures ABORTED, broken connections
//   UNAVAILABLE, statement timeouts DEADLINE_EXCEEDED, anything else INTERNAL (logged with the
//   detail; the status message never contains SQL text or host names).
// - While the database is down every attempt fails alike: lines about failed connections (and
//   callers' lines about work lost to the outage, through log()) are written once per 10 s with
//   the count held back, not once per attempt, and one line says when connections open again.
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"

namespace dangjian::sql {

struct PgPoolOptions {
  std::string conninfo;  // libpq connection string
  int size = 8;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration acquire_timeout = absl::Seconds(5);  // waiting for a free connection
  absl::Duration statement_timeout =
      absl::Seconds(5);  // per statement, unless the deadline is nearer
  int max_attempts = 4;  // for retryable failures
  absl::Duration retry_backoff = absl::Milliseconds(10);  // doubled each retry, with jitter
};

enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };

struct TxOptions {
  // Names the unit of work in metrics (dj_db_query_duration_seconds{query=...}) and logs.
  std::string name = "unnamed";
  Isolation isolation = Isolation::kReadCommitted;
  bool read_only = false;
  absl::Time deadline = absl::InfiniteFuture();  // the RPC's deadline
};

// The work of one transaction. It may throw pqxx exceptions (the pool maps them) or return a
// non-OK status (the pool rolls back and returns it unchanged).
using TxWork = std::function<absl::Status(pqxx::transaction_base&)>;

class PgPool {
 public:
  // Connects `options.size` connections; UNAVAILABLE if the first cannot be opened.
  static absl::StatusOr<std::unique_ptr<PgPool>> Create(PgPoolOptions options,
                                                        metrics::DbMetrics* metrics = nullptr,
                                                        Clock& clock = RealClock::Get());
  ~PgPool();
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  // Registers a named prepared statement; call before Run() is used from several threads.
  void Prepare(std::string name, std::string sql);

  absl::Status Run(const TxOptions& options, const TxWork& work);

  // True if a connection can run `SELECT 1` now (health checks).
  bool Ping();

  int size() const { return options_.size; }

  // Where lines about this database's failures go: repeated ones are held back and counted
  // (timed by the pool's clock). For callers' lines too, such as an audit row left unwritten.
  log::RateLimitedLog& failure_log() { return failure_log_; }

 private:
  struct Conn;
  struct Outcome;
  PgPool(PgPoolOptions options, metrics::DbMetrics* metrics, Clock& clock);
  // A live connection with every registered statement; waits for a free slot until the tighter of
  // acquire_timeout and `deadline`.
  absl::StatusOr<std::unique_ptr<Conn>> Acquire(absl::Time deadline);
  // Returns a healthy connection to the idle list; closes a broken one (its slot is reopened on
  // demand).
  void Release(std::unique_ptr<Conn> conn);
  // Opens conn.pg and defines every registered statement on it.
  absl::Status Connect(Conn& conn);
  // Defines on `conn` the statements registered since it was opened or last leased.
  void DefinePending(Conn& conn);
  // One transaction on `conn`: BEGIN, statement timeout, work, COMMIT or ROLLBACK.
  Outcome RunOnce(Conn& conn, const TxOptions& options, const TxWork& work);
  bool CanLease() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountError(const char* kind);

  const PgPoolOptions options_;
  const std::string conninfo_;  // options_.conninfo with connect_timeout added
  metrics::DbMetrics* const metrics_;
  Clock& clock_;
  log::RateLimitedLog failure_log_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Conn>> idle_ ABSL_GUARDED_BY(mu_);
  // Connections handed out, plus slots reserved while a new connection is being opened.
  int leased_ ABSL_GUARDED_BY(mu_) = 0;
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // open connections, idle or leased
  std::vector<std::pair<std::string, std::string>> prepared_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dangjian::sql
