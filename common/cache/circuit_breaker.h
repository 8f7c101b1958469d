// A circuit breaker for the cache: after a failure it opens for `open_interval`, during which
// callers skip Redis entirely; then exactly one probe is let through (half-open). Success closes
// it, failure re-opens it for another interval. So a dead or slow Redis costs at most one timeout
// per interval. Time comes from the injected Clock. Thread-safe.
#pragma once

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace dangjian::cache {

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  CircuitBreaker(Clock& clock, absl::Duration open_interval);

  // True if the caller may try Redis now. While half-open, true for one caller only, until it
  // reports OnSuccess() or OnFailure().
  bool Allow();
  void OnSuccess();
  void OnFailure();

  State state() const;
  // Times the breaker went from closed (or half-open) to open.
  int64_t trips() const;

 private:
  Clock& clock_;
  const absl::Duration open_interval_;
  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kClosed;
  absl::Time open_until_ ABSL_GUARDED_BY(mu_);
  bool probe_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  int64_t trips_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dangjian::cache
