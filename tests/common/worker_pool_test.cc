// WorkerPool and its metrics: queue depth, capacity, threads and busy threads follow what the pool
// does, and a Submit refused because the queue is full counts exactly one rejection (refusals
// while shutting down do not count).
#include "common/worker_pool.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <atomic>
#include <memory>

#include "absl/synchronization/notification.h"
#include "common/metrics.h"
#include "common/testing/harness.h"
#include "tests/common/metric_reader.h"

namespace dangjian {
namespace {

using testing::MetricValue;

class WorkerPoolTest : public ::testing::Test {
 protected:
  double Value(const std::string& name) { return MetricValue(*registry_, name).value_or(-1); }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  metrics::WorkerPoolMetrics metrics_{*registry_};
};

TEST_F(WorkerPoolTest, Metrics_ReportCapacityAndThreadsAtStart) {
  WorkerPool pool(3, 7, &metrics_);
  EXPECT_EQ(Value("dj_worker_queue_capacity"), 7);
  EXPECT_EQ(Value("dj_worker_threads"), 3);
  EXPECT_EQ(Value("dj_worker_queue_depth"), 0);
  EXPECT_EQ(Value("dj_worker_busy_threads"), 0);
  EXPECT_EQ(Value("dj_worker_rejected_total"), 0);
  pool.Shutdown();
  EXPECT_EQ(Value("dj_worker_threads"), 0);
}

TEST_F(WorkerPoolTest, Metrics_FollowQueueAndCountOneRejectionWhenFull) {
  WorkerPool pool(1, 2, &metrics_);
  absl::Notification release;
  std::atomic<int> ran{0};
  auto blocking = [&] {
    release.WaitForNotification();
    ++ran;
  };
  // The only thread takes the first task and blocks in it.
  ASSERT_TRUE(pool.Submit(blocking));
  ASSERT_TRUE(
      testing::PollUntil([&] { return Value("dj_worker_busy_threads") == 1 && pool.queued() == 0; },
                         absl::Seconds(10)));
  EXPECT_EQ(Value("dj_worker_queue_depth"), 0);

  // Two more fill the queue to its capacity, exactly.
  ASSERT_TRUE(pool.Submit(blocking));
  EXPECT_EQ(Value("dj_worker_queue_depth"), 1);
  ASSERT_TRUE(pool.Submit(blocking));
  EXPECT_EQ(Value("dj_worker_queue_depth"), 2);
  EXPECT_EQ(Value("dj_worker_rejected_total"), 0);

  // One more is refused and counted once; the queue is unchanged.
  EXPECT_FALSE(pool.Submit(blocking));
  EXPECT_EQ(Value("dj_worker_rejected_total"), 1);
  EXPECT_EQ(Value("dj_worker_queue_depth"), 2);
  EXPECT_EQ(Value("dj_worker_busy_threads"), 1);

  release.Notify();
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        return ran.load() == 3 && Value("dj_worker_queue_depth") == 0 &&
               Value("dj_worker_busy_threads") == 0;
      },
      absl::Seconds(10)));
  EXPECT_EQ(Value("dj_worker_rejected_total"), 1);
}

TEST_F(WorkerPoolTest, Metrics_CountBusyThreadsUpToThePoolSize) {
  WorkerPool pool(2, 10, &metrics_);
  absl::Notification release;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool.Submit([&] { release.WaitForNotification(); }));
  }
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value("dj_worker_busy_threads") == 2 && Value("dj_worker_queue_depth") == 1; },
      absl::Seconds(10)));
  release.Notify();
  ASSERT_TRUE(testing::PollUntil(
      [&] { return Value("dj_worker_busy_threads") == 0 && Value("dj_worker_queue_depth") == 0; },
      absl::Seconds(10)));
}

TEST_F(WorkerPoolTest, Metrics_RefusalWhileShuttingDownIsNotARejection) {
  WorkerPool pool(1, 1, &metrics_);
  pool.Shutdown();
  EXPECT_FALSE(pool.Submit([] {}));
  EXPECT_EQ(Value("dj_worker_rejected_total"), 0);
}

TEST(WorkerPoolWithoutMetricsTest, RunsQueuedTasksBeforeShutdownReturns) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(2, 100);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.Submit([&] { ++ran; }));
    pool.Shutdown();
  }
  EXPECT_EQ(ran.load(), 50);
}

}  // namespace
}  // namespace dangjian
