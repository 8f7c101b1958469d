// A fixed set of threads with a bounded queue, where handlers run blocking work (SQL, Redis) off
// gRPC's event threads. Submit() refuses work when the queue is full, so overload becomes a
// RESOURCE_EXHAUSTED reply instead of unbounded memory. Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace dangjian {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queue);
  ~WorkerPool();  // Runs what is queued, then joins.
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // False when the queue is full or the pool is shutting down; the task is then not run.
  [[nodiscard]] bool Submit(std::function<void()> task);
  // Stops accepting, runs what is queued, joins the threads. Idempotent.
  void Shutdown();

  size_t queued() const;
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void Loop();

  const size_t max_queue_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace dangjian
