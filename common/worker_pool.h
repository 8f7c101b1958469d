// A fixed set of threads with a bounded queue, where handlers run blocking work (SQL, Redis) off
// gRPC's event threads. Submit() refuses work when the queue is full, so overload becomes a
// RESOURCE_EXHAUSTED reply instead of unbounded memory. With WorkerPoolMetrics it reports its
// queue depth, capacity, threads, busy threads and refusals; those are updated under the lock
// Submit() and the workers take anyway (a Gauge::Set is one atomic store), so they add no lock.
// Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace dangjian {

namespace metrics {
struct WorkerPoolMetrics;
}  // namespace metrics

class WorkerPool {
 public:
  // `metrics` (optional) must outlive the pool.
  WorkerPool(int threads, size_t max_queue, metrics::WorkerPoolMetrics* metrics = nullptr);
  ~WorkerPool();  // Runs what is queued, then joins.
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False when the queue is full (counted as rejected) or the pool is shutting down; the task is
  // then not run.
  [[nodiscard]] bool Submit(std::function<void()> task);
  // Stops accepting, runs what is queued, joins the threads. Idempotent.
  void Shutdown();

  size_t queued() const;
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();
  // Publishes queue_ and busy_ to the metrics, if any.
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_queue_;
  metrics::WorkerPoolMetrics* const metrics_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;  // threads running a task
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace dangjian
