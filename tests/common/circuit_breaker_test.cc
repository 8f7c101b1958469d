// Unit tests of the cache's circuit breaker: time comes from a FakeClock, no servers.
#include "common/cache/circuit_breaker.h"

#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "common/clock.h"

namespace dangjian::cache {
namespace {

using State = CircuitBreaker::State;

constexpr absl::Duration kInterval = absl::Seconds(5);
constexpr absl::Duration kWindow = absl::Seconds(10);
constexpr int kMinCalls = 20;
constexpr double kRatio = 0.5;

class CircuitBreakerTest : public ::testing::Test {
 protected:
  // `n` calls that each report `failed`.
  void Calls(int n, bool failed) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(breaker_.Allow());
      failed ? breaker_.OnFailure() : breaker_.OnSuccess();
    }
  }
  // Opens the breaker: min_calls failed calls.
  void Trip() {
    Calls(kMinCalls, /*failed=*/true);
    ASSERT_EQ(breaker_.state(), State::kOpen);
  }

  FakeClock clock_;
  CircuitBreaker breaker_{clock_, {kInterval, kWindow, kMinCalls, kRatio}};
};

TEST_F(CircuitBreakerTest, Breaker_StartsClosedAndAllowsEveryCall) {
  EXPECT_EQ(breaker_.state(), State::kClosed);
  Calls(100, /*failed=*/false);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  EXPECT_EQ(breaker_.trips(), 0);
}

TEST_F(CircuitBreakerTest, Breaker_OneTimeoutUnderLoadDoesNotOpenIt) {
  Calls(100, /*failed=*/false);
  Calls(1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  EXPECT_EQ(breaker_.trips(), 0);
}

TEST_F(CircuitBreakerTest, Breaker_OneTimeoutOnAnIdleReplicaDoesNotOpenIt) {
  // Fewer calls than min_calls, all failed: not enough evidence.
  Calls(kMinCalls - 1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  Calls(1, /*failed=*/true);  // the min_calls-th
  EXPECT_EQ(breaker_.state(), State::kOpen);
  EXPECT_EQ(breaker_.trips(), 1);
}

TEST_F(CircuitBreakerTest, Breaker_OpensAtTheFailureRatioNotBelow) {
  // 11 successes and 9 failures: 45% of 20 calls, just under the ratio.
  Calls(11, /*failed=*/false);
  Calls(9, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  // One more failure: 10 of 21, still under half.
  Calls(1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  // 11 of 22: exactly half, which trips it.
  Calls(1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, Breaker_FailuresOutsideTheWindowAreForgotten) {
  Calls(kMinCalls - 1, /*failed=*/true);
  clock_.Advance(kWindow + kWindow / 10);  // every bucket of those failures is past
  Calls(kMinCalls - 1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  // Inside the window they add up.
  Calls(1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, Breaker_SkipsCallsWhileOpen) {
  Trip();
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(kInterval - absl::Milliseconds(1));  // just inside the interval
  EXPECT_FALSE(breaker_.Allow());
  EXPECT_EQ(breaker_.state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, Breaker_ReportsNotOpenOnceIntervalEndsWithoutAnyCall) {
  // An idle replica: nothing calls Allow() after the interval, yet the state is not "open".
  Trip();
  EXPECT_NE(breaker_.open_until(), absl::InfinitePast());
  clock_.Advance(kInterval);
  EXPECT_EQ(breaker_.state(), State::kHalfOpen);
  EXPECT_EQ(breaker_.open_until(), absl::InfinitePast());
}

TEST_F(CircuitBreakerTest, Breaker_LetsOneProbeThroughAfterInterval) {
  Trip();
  clock_.Advance(kInterval);  // just at the end of the interval
  EXPECT_TRUE(breaker_.Allow());
  EXPECT_EQ(breaker_.state(), State::kHalfOpen);
  EXPECT_EQ(breaker_.open_until(), absl::InfinitePast());
  // While the probe is in flight, everyone else is still skipped, however long it takes.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(kInterval * 3);
  EXPECT_FALSE(breaker_.Allow());
}

TEST_F(CircuitBreakerTest, Breaker_ProbeSuccessClosesWithAnEmptyWindow) {
  Trip();
  clock_.Advance(kInterval);
  ASSERT_TRUE(breaker_.Allow());
  breaker_.OnSuccess();
  EXPECT_EQ(breaker_.state(), State::kClosed);
  // The failures that tripped it do not count again.
  Calls(kMinCalls - 1, /*failed=*/true);
  EXPECT_EQ(breaker_.state(), State::kClosed);
  EXPECT_EQ(breaker_.trips(), 1);
}

TEST_F(CircuitBreakerTest, Breaker_ProbeFailureReopensForAnotherInterval) {
  Trip();
  clock_.Advance(kInterval);
  ASSERT_TRUE(breaker_.Allow());
  clock_.Advance(absl::Milliseconds(100));  // the probe's timeout
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.state(), State::kOpen);
  EXPECT_EQ(breaker_.trips(), 2);
  // The new interval counts from the probe's failure.
  clock_.Advance(kInterval - absl::Milliseconds(1));
  EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(breaker_.Allow());
  EXPECT_FALSE(breaker_.Allow());
}

TEST_F(CircuitBreakerTest, Breaker_LateReportsWhileOpenDoNotChangeIt) {
  // Calls let through while closed; the last of min_calls failures opens the breaker.
  ASSERT_TRUE(breaker_.Allow());  // a call still in flight when it opens
  Trip();
  clock_.Advance(absl::Seconds(1));
  // The late answer neither closes the breaker nor restarts its interval.
  breaker_.OnSuccess();
  EXPECT_EQ(breaker_.state(), State::kOpen);
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.trips(), 1);
  clock_.Advance(kInterval - absl::Seconds(1));
  EXPECT_TRUE(breaker_.Allow());
}

TEST_F(CircuitBreakerTest, Breaker_EachOpenIntervalCostsOneProbe) {
  // A Redis that stays dead: min_calls failures open it, then one probe per interval reaches it.
  Trip();
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) {
    clock_.Advance(kInterval / 100);
    if (breaker_.Allow()) {
      ++allowed;
      breaker_.OnFailure();
    }
  }
  EXPECT_EQ(allowed, 10);
  EXPECT_EQ(breaker_.trips(), 11);
}

TEST(CircuitBreakerOptionsTest, Breaker_MinCallsOneAndRatioZeroTripOnAnyFailure) {
  FakeClock clock;
  CircuitBreaker breaker(clock, {kInterval, kWindow, /*min_calls=*/1, /*failure_ratio=*/0});
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(breaker.Allow());
    breaker.OnSuccess();
  }
  ASSERT_TRUE(breaker.Allow());
  breaker.OnFailure();
  EXPECT_EQ(breaker.state(), State::kOpen);
}

}  // namespace
}  // namespace dangjian::cache
