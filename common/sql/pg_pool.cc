#include "common/sql/pg_pool.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>

#include "absl/memory/memory.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace dangjian::sql {

struct PgPool::Conn {
  std::unique_ptr<pqxx::connection> pg;
  size_t defined = 0;  // how many of prepared_ are defined on `pg`
  bool broken = false;
};

// What one attempt at a transaction came to.
struct PgPool::Outcome {
  absl::Status status;
  bool retryable = false;
};

namespace {

constexpr char kConnectFailed[] = "database connection could not be opened";

// A failure mapped for the caller: the status, whether re-running the work may succeed, and the
// dj_db_errors_total kind.
struct Failure {
  absl::Status status;
  bool retryable = false;
  bool broken = false;
  const char* kind = "other";
};

// libpq counts connect_timeout in whole seconds.
std::string WithConnectTimeout(const std::string& conninfo, absl::Duration timeout) {
  if (absl::StrContains(conninfo, "connect_timeout")) return conninfo;
  const int64_t seconds =
      std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(timeout, absl::Seconds(1))));
  if (absl::StartsWith(conninfo, "postgresql://") || absl::StartsWith(conninfo, "postgres://")) {
    return absl::StrCat(conninfo, absl::StrContains(conninfo, "?") ? "&" : "?",
                        "connect_timeout=", seconds);
  }
  return absl::StrCat(conninfo, conninfo.empty() ? "" : " ", "connect_timeout=", seconds);
}

// The first line of a server message: the DETAIL lines after it can quote row values.
std::string FirstLine(const char* what) {
  absl::string_view text(what);
  return std::string(text.substr(0, text.find('\n')));
}

// Milliseconds for statement_timeout: rounded up (0 would disable the timeout) and within int4.
int64_t TimeoutMillis(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return std::clamp<int64_t>(ms, 1, std::numeric_limits<int32_t>::max());
}

absl::Duration Jittered(absl::Duration backoff) {
  thread_local std::minstd_rand rng{std::random_device{}()};
  // Uniform in [backoff/2, backoff]: concurrent losers of a conflict do not retry in lockstep.
  std::uniform_real_distribution<double> half(0.5, 1.0);
  return backoff * half(rng);
}

template <pqxx::isolation_level kLevel>
std::unique_ptr<pqxx::dbtransaction> BeginAt(pqxx::connection& conn, bool read_only) {
  if (read_only) return std::make_unique<pqxx::transaction<kLevel, pqxx::read_only>>(conn);
  return std::make_unique<pqxx::transaction<kLevel, pqxx::read_write>>(conn);
}

std::unique_ptr<pqxx::dbtransaction> Begin(pqxx::connection& conn, Isolation isolation,
                                           bool read_only) {
  switch (isolation) {
    case Isolation::kSerializable:
      return BeginAt<pqxx::serializable>(conn, read_only);
    case Isolation::kRepeatableRead:
      return BeginAt<pqxx::repeatable_read>(conn, read_only);
    case Isolation::kReadCommitted:
      break;
  }
  return BeginAt<pqxx::read_committed>(conn, read_only);
}

Failure Constraint(absl::Status status) { return {std::move(status), false, false, "constraint"}; }
Failure Lost(bool committing) {
  // Before COMMIT the server rolls the transaction back when the connection goes, so re-running
  // is safe; during COMMIT the outcome is unknown and re-running could apply the work twice.
  if (committing) {
    return {absl::UnavailableError("database connection lost during commit; outcome unknown"),
            false, true, "connection"};
  }
  return {absl::UnavailableError("database connection lost"), true, true, "connection"};
}
Failure Conflict() {
  return {absl::AbortedError("transaction conflicted with a concurrent one"), true, false,
          "serialization"};
}
Failure Internal() { return {absl::InternalError("database error"), false, false, "other"}; }

// Maps the exception in flight. Called only from a catch block.
Failure ClassifyCurrentException(bool committing, bool conn_open) {
  try {
    throw;
  } catch (const pqxx::in_doubt_error&) {
    return {absl::UnavailableError("database connection lost during commit; outcome unknown"),
            false, true, "connection"};
  } catch (const pqxx::serialization_failure&) {
    return Conflict();
  } catch (const pqxx::deadlock_detected&) {
    return Conflict();
  } catch (const pqxx::statement_completion_unknown&) {
    return Lost(committing);
  } catch (const pqxx::transaction_rollback&) {
    return {absl::AbortedError("transaction rolled back by the database"), false, false,
            "serialization"};
  } catch (const pqxx::broken_connection&) {
    return Lost(committing);
  } catch (const pqxx::unique_violation&) {
    return Constraint(absl::AlreadyExistsError("already exists"));
  } catch (const pqxx::foreign_key_violation&) {
    return Constraint(absl::FailedPreconditionError("a referenced record does not exist"));
  } catch (const pqxx::not_null_violation&) {
    return Constraint(absl::FailedPreconditionError("a required value is missing"));
  } catch (const pqxx::check_violation&) {
    return Constraint(absl::FailedPreconditionError("a value breaks a database check"));
  } catch (const pqxx::integrity_constraint_violation&) {
    return Constraint(absl::FailedPreconditionError("the change breaks a database constraint"));
  } catch (const pqxx::sql_error& e) {
    const std::string& state = e.sqlstate();
    if (state == "57014") {  // query_canceled: our statement_timeout fired
      return {absl::DeadlineExceededError("database statement timed out"), false, false, "timeout"};
    }
    if (state == "40001" || state == "40P01") return Conflict();
    // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions.
    if (absl::StartsWith(state, "57P") || absl::StartsWith(state, "08") || !conn_open) {
      return Lost(committing);
    }
    return Internal();
  } catch (const pqxx::failure&) {
    if (!conn_open) return Lost(committing);
    return Internal();
  } catch (...) {
    return Internal();
  }
}

// The detail for the log line of the exception in flight. Called only from a catch block.
nlohmann::json DescribeCurrentException() {
  nlohmann::json fields = nlohmann::json::object();
  try {
    throw;
  } catch (const pqxx::sql_error& e) {
    fields["sqlstate"] = e.sqlstate();
    fields["error"] = FirstLine(e.what());
  } catch (const std::exception& e) {
    fields["error"] = FirstLine(e.what());
  } catch (...) {
    fields["error"] = "non-standard exception";
  }
  return fields;
}

}  // namespace

PgPool::PgPool(PgPoolOptions options, metrics::DbMetrics* metrics, Clock& clock)
    : options_(std::move(options)),
      conninfo_(WithConnectTimeout(options_.conninfo, options_.connect_timeout)),
      metrics_(metrics),
      clock_(clock),
      failure_log_(log::RateLimitedLog::kDefaultWindow, clock) {}

absl::StatusOr<std::unique_ptr<PgPool>> PgPool::Create(PgPoolOptions options,
                                                       metrics::DbMetrics* metrics, Clock& clock) {
  if (options.size < 1) return absl::InvalidArgumentError("pool size must be at least 1");
  if (options.max_attempts < 1) return absl::InvalidArgumentError("max_attempts must be >= 1");
  // The constructor is private (pools exist only through Create), so make_unique cannot reach it.
  auto pool = absl::WrapUnique(new PgPool(std::move(options), metrics, clock));
  for (int i = 0; i < pool->options_.size; ++i) {
    auto conn = std::make_unique<Conn>();
    absl::Status status = pool->Connect(*conn);
    if (!status.ok()) {
      if (i == 0) return status;
      // The rest are opened on demand; a pool that can reach the server at all is usable.
      log::Warn("database pool opened fewer connections than asked",
                {{"opened", i}, {"size", pool->options_.size}});
      break;
    }
    absl::MutexLock lock(&pool->mu_);
    pool->idle_.push_back(std::move(conn));
    ++pool->open_;
    pool->UpdateGauges();
  }
  return pool;
}

PgPool::~PgPool() {
  absl::MutexLock lock(&mu_);
  if (leased_ != 0)
    log::Error("database pool destroyed with connections in use", {{"in_use", leased_}});
  idle_.clear();
}

void PgPool::Prepare(std::string name, std::string sql) {
  absl::MutexLock lock(&mu_);
  for (const auto& [known_name, known_sql] : prepared_) {
    if (known_name != name) continue;
    if (known_sql == sql) return;
    // Two definitions under one name is a programming error that would otherwise run the wrong
    // statement on some connections.
    log::Error("prepared statement defined twice with different SQL", {{"statement", name}});
    std::abort();
  }
  prepared_.emplace_back(std::move(name), std::move(sql));
}

absl::Status PgPool::Connect(Conn& conn) {
  try {
    conn.pg = std::make_unique<pqxx::connection>(conninfo_);
  } catch (...) {
    nlohmann::json fields = DescribeCurrentException();
    failure_log_.Warn(kConnectFailed, std::move(fields));
    CountError("connection");
    conn.pg.reset();
    return absl::UnavailableError("no database connection could be opened");
  }
  if (const int64_t failed = failure_log_.EndRun(kConnectFailed); failed > 0) {
    log::Info("database connections open again", {{"failed_attempts", failed}});
  }
  conn.defined = 0;
  conn.broken = false;
  DefinePending(conn);
  return absl::OkStatus();
}

void PgPool::DefinePending(Conn& conn) {
  std::vector<std::pair<std::string, std::string>> pending;
  {
    absl::MutexLock lock(&mu_);
    if (conn.defined >= prepared_.size()) return;
    pending.assign(prepared_.begin() + conn.defined, prepared_.end());
    conn.defined = prepared_.size();
  }
  // libpqxx sends a definition to the server on first use, and again after it reconnects.
  for (const auto& [name, sql] : pending) conn.pg->prepare(name, sql);
}

bool PgPool::CanLease() const {
  return !idle_.empty() || leased_ + static_cast<int>(idle_.size()) < options_.size;
}

void PgPool::UpdateGauges() {
  if (metrics_ == nullptr) return;
  metrics_->pool_size.Set(open_);
  metrics_->pool_in_use.Set(leased_);
}

void PgPool::CountError(const char* kind) {
  if (metrics_ != nullptr) metrics_->errors.Add({{"kind", kind}}).Increment();
}

absl::StatusOr<std::unique_ptr<PgPool::Conn>> PgPool::Acquire(absl::Time deadline) {
  const absl::Time start = clock_.Now();
  const absl::Time limit = std::min(start + options_.acquire_timeout, deadline);
  std::unique_ptr<Conn> conn;
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &PgPool::CanLease), limit - start)) {
      if (metrics_ != nullptr) metrics_->acquire_timeouts.Increment();
      if (deadline <= start + options_.acquire_timeout) {
        return absl::DeadlineExceededError(
            "deadline passed while waiting for a database connection");
      }
      return absl::ResourceExhaustedError("all database connections are busy");
    }
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
    ++leased_;  // also reserves the slot while a new connection is opened below
    UpdateGauges();
  }

  if (conn != nullptr) {
    // A backend that was terminated while the connection sat idle has sent a FATAL message and
    // closed the socket. Reading it without blocking notices that, so the transaction below
    // starts on a live connection: the first read takes the message, the second meets the end
    // of the stream. On a live connection both return at once with nothing to read.
    try {
      conn->pg->get_notifs();
      conn->pg->get_notifs();
    } catch (...) {
      conn->broken = true;
    }
    if (conn->broken || !conn->pg->is_open()) {
      failure_log_.Write(log::Level::kInfo, "replacing a closed database connection");
      CountError("connection");
      conn.reset();
      absl::MutexLock lock(&mu_);
      --open_;
      UpdateGauges();
    }
  }
  if (conn == nullptr) {
    auto fresh = std::make_unique<Conn>();
    absl::Status status = Connect(*fresh);
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      --leased_;
      UpdateGauges();
      return status;
    }
    ++open_;
    UpdateGauges();
    conn = std::move(fresh);
  }
  DefinePending(*conn);
  if (metrics_ != nullptr) {
    metrics_->acquire_seconds.Observe(absl::ToDoubleSeconds(clock_.Now() - start));
  }
  return conn;
}

void PgPool::Release(std::unique_ptr<Conn> conn) {
  const bool keep = !conn->broken && conn->pg->is_open();
  if (!keep) conn.reset();  // close the socket outside the lock
  absl::MutexLock lock(&mu_);
  --leased_;
  if (keep) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  UpdateGauges();
}

PgPool::Outcome PgPool::RunOnce(Conn& conn, const TxOptions& options, const TxWork& work) {
  const absl::Duration remaining = options.deadline - clock_.Now();
  if (remaining <= absl::ZeroDuration()) {
    CountError("timeout");
    return {absl::DeadlineExceededError("deadline passed before the transaction started"), false};
  }
  absl::Duration timeout = remaining;
  if (options_.statement_timeout > absl::ZeroDuration()) {
    timeout = std::min(timeout, options_.statement_timeout);
  }
  bool committing = false;
  try {
    std::unique_ptr<pqxx::dbtransaction> tx = Begin(*conn.pg, options.isolation, options.read_only);
    if (timeout != absl::InfiniteDuration()) {
      // An integer we computed, not input: SET takes no bind parameters.
      tx->exec0(absl::StrCat("SET LOCAL statement_timeout = ", TimeoutMillis(timeout)));
    }
    absl::Status status = work(*tx);
    if (!status.ok()) {
      try {
        tx->abort();
      } catch (...) {
        // The rollback failing only matters for the connection; the work's status stands.
        if (!conn.pg->is_open()) conn.broken = true;
      }
      return {std::move(status), false};
    }
    committing = true;
    tx->commit();
    return {absl::OkStatus(), false};
  } catch (...) {
    const bool open = conn.pg->is_open();
    Failure failure = ClassifyCurrentException(committing, open);
    nlohmann::json fields = DescribeCurrentException();
    fields["tx"] = options.name;
    fields["code"] = absl::StatusCodeToString(failure.status.code());
    if (failure.broken || !open) conn.broken = true;
    CountError(failure.kind);
    if (failure.retryable && failure.status.code() == absl::StatusCode::kAborted) {
      // Conflicts are routine under contention; dj_db_errors_total counts them.
      log::Debug("database transaction conflicted; retrying if attempts remain", std::move(fields));
    } else if (failure.retryable) {
      // Connections lost: while the database is down, every attempt meets this.
      failure_log_.Warn("database transaction failed; retrying if attempts remain",
                        std::move(fields));
    } else if (failure.status.code() == absl::StatusCode::kUnavailable) {
      failure_log_.Error("database transaction failed", std::move(fields));
    } else if (failure.status.code() == absl::StatusCode::kInternal) {
      log::Error("database transaction failed", std::move(fields));
    } else {
      log::Debug("database transaction failed", std::move(fields));
    }
    return {std::move(failure.status), failure.retryable};
  }
}

absl::Status PgPool::Run(const TxOptions& options, const TxWork& work) {
  const absl::Time start = clock_.Now();
  if (start >= options.deadline) {
    CountError("timeout");
    return absl::DeadlineExceededError("deadline passed before the transaction started");
  }
  absl::Duration backoff = options_.retry_backoff;
  absl::Status status;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Acquire(options.deadline);
    if (!conn.ok()) {
      status = conn.status();
      break;
    }
    Outcome outcome = RunOnce(**conn, options, work);
    Release(*std::move(conn));
    status = std::move(outcome.status);
    if (status.ok() || !outcome.retryable || attempt >= options_.max_attempts) break;
    const absl::Duration pause = Jittered(backoff);
    if (clock_.Now() + pause >= options.deadline) break;
    backoff *= 2;
    if (metrics_ != nullptr) metrics_->retries.Increment();
    log::Debug("retrying database transaction",
               {{"tx", options.name},
                {"attempt", attempt + 1},
                {"code", absl::StatusCodeToString(status.code())}});
    absl::SleepFor(pause);
  }
  if (metrics_ != nullptr) {
    // One observation per unit of work, retries included: the latency its caller saw.
    metrics_->query_seconds.Add({{"query", options.name}}, metrics::LatencyBuckets())
        .Observe(absl::ToDoubleSeconds(clock_.Now() - start));
  }
  return status;
}

bool PgPool::Ping() {
  TxOptions options;
  options.name = "ping";
  options.read_only = true;
  options.deadline = clock_.Now() + std::max(options_.acquire_timeout, options_.statement_timeout);
  return Run(options,
             [](pqxx::transaction_base& tx) {
               tx.exec1("SELECT 1");
               return absl::OkStatus();
             })
      .ok();
}

}  // namespace dangjian::sql
