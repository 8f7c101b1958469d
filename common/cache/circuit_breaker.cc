#include "common/cache/circuit_breaker.h"

namespace dangjian::cache {

CircuitBreaker::CircuitBreaker(Clock& clock, absl::Duration open_interval)
    : clock_(clock), open_interval_(open_interval) {}

bool CircuitBreaker::Allow() {
  absl::MutexLock lock(&mu_);
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (clock_.Now() < open_until_) return false;
      // The interval is over: this caller becomes the single probe.
      state_ = State::kHalfOpen;
      probe_in_flight_ = true;
      return true;
    case State::kHalfOpen:
      // Only one probe at a time, so a Redis that is still dead costs one timeout, not many.
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::OnSuccess() {
  absl::MutexLock lock(&mu_);
  // A success reported while open comes from a call let through before the breaker opened; a
  // late answer from a flaky Redis must not cut the open interval short.
  if (state_ == State::kOpen) return;
  state_ = State::kClosed;
  probe_in_flight_ = false;
}

void CircuitBreaker::OnFailure() {
  absl::MutexLock lock(&mu_);
  // Already open: more failures from calls that were in flight when it opened do not extend the
  // interval, so recovery is probed on schedule.
  if (state_ == State::kOpen) return;
  state_ = State::kOpen;
  open_until_ = clock_.Now() + open_interval_;
  probe_in_flight_ = false;
  ++trips_;
}

CircuitBreaker::State CircuitBreaker::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

int64_t CircuitBreaker::trips() const {
  absl::MutexLock lock(&mu_);
  return trips_;
}

}  // namespace dangjian::cache
