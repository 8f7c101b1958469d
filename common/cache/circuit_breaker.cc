#include "common/cache/circuit_breaker.h"

#include <algorithm>

namespace dangjian::cache {

CircuitBreaker::CircuitBreaker(Clock& clock, CircuitBreakerOptions options)
    : clock_(clock),
      options_(options),
      bucket_width_(std::max(options.window / kBuckets, absl::Milliseconds(1))) {}

void CircuitBreaker::ExpireLocked(absl::Time now) {
  if (state_ != State::kOpen || now < open_until_) return;
  // The interval is over: the next caller becomes the single probe.
  state_ = State::kHalfOpen;
  probe_in_flight_ = false;
  open_until_ = absl::InfinitePast();
}

bool CircuitBreaker::RecordLocked(absl::Time now, bool failed) {
  const int64_t slot = absl::ToUnixMillis(now) / absl::ToInt64Milliseconds(bucket_width_);
  Bucket& bucket = buckets_[static_cast<size_t>(slot % kBuckets)];
  if (bucket.slot != slot) bucket = Bucket{slot, 0, 0};
  ++bucket.calls;
  if (failed) ++bucket.failures;
  if (!failed) return false;
  int64_t calls = 0;
  int64_t failures = 0;
  for (const Bucket& b : buckets_) {
    // Only the buckets of the last `window` count; older ones are left to be reused.
    if (b.slot < 0 || slot - b.slot >= kBuckets) continue;
    calls += b.calls;
    failures += b.failures;
  }
  return calls >= options_.min_calls &&
         static_cast<double>(failures) >= options_.failure_ratio * static_cast<double>(calls);
}

void CircuitBreaker::OpenLocked(absl::Time now) {
  state_ = State::kOpen;
  open_until_ = now + options_.open_interval;
  probe_in_flight_ = false;
  ++trips_;
  // A breaker that closes again starts from an empty window: what tripped it is history.
  buckets_.fill(Bucket{});
}

bool CircuitBreaker::Allow() {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      return false;
    case State::kHalfOpen:
      // Only one probe at a time, so a Redis that is still dead costs one timeout, not many.
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::OnSuccess() {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  switch (state_) {
    case State::kClosed:
      RecordLocked(now, /*failed=*/false);
      return;
    case State::kOpen:
      // A success reported while open comes from a call let through before the breaker opened;
      // a late answer from a flaky Redis must not cut the open interval short.
      return;
    case State::kHalfOpen:
      state_ = State::kClosed;
      probe_in_flight_ = false;
      return;
  }
}

void CircuitBreaker::OnFailure() {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  ExpireLocked(now);
  switch (state_) {
    case State::kClosed:
      if (RecordLocked(now, /*failed=*/true)) OpenLocked(now);
      return;
    case State::kOpen:
      // More failures from calls that were in flight when it opened do not extend the
      // interval, so recovery is probed on schedule.
      return;
    case State::kHalfOpen:
      // The probe (or a late call) failed: Redis is still unwell.
      OpenLocked(now);
      return;
  }
}

CircuitBreaker::State CircuitBreaker::state() const {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  if (state_ == State::kOpen && now >= open_until_) return State::kHalfOpen;
  return state_;
}

absl::Time CircuitBreaker::open_until() const {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  return state_ == State::kOpen && now < open_until_ ? open_until_ : absl::InfinitePast();
}

int64_t CircuitBreaker::trips() const {
  absl::MutexLock lock(&mu_);
  return trips_;
}

}  // namespace dangjian::cache
