// A circuit breaker for the cache. While closed it counts the calls that reached Redis over a
// sliding `window`; it opens when at least `min_calls` of them were made and at least
// `failure_ratio` of those failed, so one slow answer under ordinary load does not open it.
// While open (for `open_interval`) callers skip Redis entirely; then it is half-open and exactly
// one probe is let through. A probe's success closes it (with an empty window), its failure
// re-opens it for another interval. So a dead or slow Redis costs at most `min_calls` timeouts to
// detect, then one timeout per interval.
//
// state() is computed from the clock: an open breaker whose interval has passed reports
// half-open even if no call has come since, so a gauge read from it never shows an idle replica's
// breaker as open. Time comes from the injected Clock. Thread-safe.
#pragma once

#include <array>
#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace dangjian::cache {

struct CircuitBreakerOptions {
  absl::Duration open_interval = absl::Seconds(5);
  // The failures that trip the breaker are counted over this much time.
  absl::Duration window = absl::Seconds(10);
  // Fewer calls than this in the window never trip it (1: any failed call can).
  int min_calls = 20;
  // The share of failed calls in the window that trips it; 0 trips on any failure.
  double failure_ratio = 0.5;
};

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  CircuitBreaker(Clock& clock, CircuitBreakerOptions options);

  // True if the caller may try Redis now. While half-open, true for one caller only, until it
  // reports OnSuccess() or OnFailure().
  bool Allow();
  void OnSuccess();
  void OnFailure();

  State state() const;
  // When the current open interval ends; InfinitePast() unless open (an interval that has ended
  // counts as not open, as in state()).
  absl::Time open_until() const;
  // Times the breaker went from closed (or half-open) to open.
  int64_t trips() const;

 private:
  // The window is kept as kBuckets counters, each covering window / kBuckets of time.
  static constexpr int kBuckets = 10;
  struct Bucket {
    int64_t slot = -1;  // which stretch of time it counts (time / bucket width); -1: unused
    int64_t calls = 0;
    int64_t failures = 0;
  };

  // Moves an open breaker whose interval has passed to half-open.
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts one call in the window; returns whether the window now trips the breaker.
  bool RecordLocked(absl::Time now, bool failed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OpenLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock& clock_;
  const CircuitBreakerOptions options_;
  const absl::Duration bucket_width_;
  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kClosed;
  absl::Time open_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool probe_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  int64_t trips_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<Bucket, kBuckets> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dangjian::cache
