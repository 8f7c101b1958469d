// Unit tests of the cache's circuit breaker: time comes from a FakeClock, no servers.
#include "common/cache/circuit_breaker.h"

#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "common/clock.h"

namespace dangjian::cache {
namespace {

using State = CircuitBreaker::State;

constexpr absl::Duration kInterval = absl::Seconds(5);

class CircuitBreakerTest : public ::testing::Test {
 protected:
  // Opens the breaker with one failed call.
  void Trip() {
    ASSERT_TRUE(breaker_.Allow());
    breaker_.OnFailure();
    ASSERT_EQ(breaker_.state(), State::kOpen);
  }

  FakeClock clock_;
  CircuitBreaker breaker_{clock_, kInterval};
};

TEST_F(CircuitBreakerTest, Breaker_StartsClosedAndAllowsEveryCall) {
  EXPECT_EQ(breaker_.state(), State::kClosed);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(breaker_.Allow());
    breaker_.OnSuccess();
  }
  EXPECT_EQ(breaker_.state(), State::kClosed);
  EXPECT_EQ(breaker_.trips(), 0);
}

TEST_F(CircuitBreakerTest, Breaker_OpensAfterFailure) {
  ASSERT_TRUE(breaker_.Allow());
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.state(), State::kOpen);
  EXPECT_EQ(breaker_.trips(), 1);
}

TEST_F(CircuitBreakerTest, Breaker_SkipsCallsWhileOpen) {
  Trip();
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(kInterval - absl::Milliseconds(1));  // just inside the interval
  EXPECT_FALSE(breaker_.Allow());
  EXPECT_EQ(breaker_.state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, Breaker_LetsOneProbeThroughAfterInterval) {
  Trip();
  clock_.Advance(kInterval);  // just at the end of the interval
  EXPECT_TRUE(breaker_.Allow());
  EXPECT_EQ(breaker_.state(), State::kHalfOpen);
  // While the probe is in flight, everyone else is still skipped, however long it takes.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(breaker_.Allow());
  clock_.Advance(kInterval * 3);
  EXPECT_FALSE(breaker_.Allow());
}

TEST_F(CircuitBreakerTest, Breaker_ProbeSuccessCloses) {
  Trip();
  clock_.Advance(kInterval);
  ASSERT_TRUE(breaker_.Allow());
  breaker_.OnSuccess();
  EXPECT_EQ(breaker_.state(), State::kClosed);
  EXPECT_TRUE(breaker_.Allow());
  EXPECT_TRUE(breaker_.Allow());
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
  // Two calls let through while closed; the first fails and opens the breaker.
  ASSERT_TRUE(breaker_.Allow());
  ASSERT_TRUE(breaker_.Allow());
  breaker_.OnFailure();
  clock_.Advance(absl::Seconds(1));
  // The second one's late answer neither closes the breaker nor restarts its interval.
  breaker_.OnSuccess();
  EXPECT_EQ(breaker_.state(), State::kOpen);
  breaker_.OnFailure();
  EXPECT_EQ(breaker_.trips(), 1);
  clock_.Advance(kInterval - absl::Seconds(1));
  EXPECT_TRUE(breaker_.Allow());
}

TEST_F(CircuitBreakerTest, Breaker_EachOpenIntervalCostsOneProbe) {
  // A Redis that stays dead: of 1000 calls spread over 10 intervals, one per interval reaches it.
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) {
    if (breaker_.Allow()) {
      ++allowed;
      breaker_.OnFailure();
    }
    clock_.Advance(kInterval / 100);
  }
  EXPECT_EQ(allowed, 10);
  EXPECT_EQ(breaker_.trips(), 10);
}

}  // namespace
}  // namespace dangjian::cache
