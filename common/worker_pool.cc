#include "common/worker_pool.h"

#include "common/metrics.h"

namespace dangjian {

WorkerPool::WorkerPool(int threads, size_t max_queue, metrics::WorkerPoolMetrics* metrics)
    : max_queue_(max_queue), metrics_(metrics) {
  if (metrics_ != nullptr) {
    metrics_->queue_capacity.Set(static_cast<double>(max_queue));
    metrics_->threads.Set(threads);
    absl::MutexLock lock(&mu_);
    UpdateGaugesLocked();
  }
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkerPool::~WorkerPool() { Shutdown(); }

bool WorkerPool::Submit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  if (queue_.size() >= max_queue_) {
    if (metrics_ != nullptr) metrics_->rejected.Increment();
    return false;
  }
  queue_.push_back(std::move(task));
  UpdateGaugesLocked();
  return true;
}

void WorkerPool::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  if (metrics_ != nullptr) metrics_->threads.Set(0);
}

size_t WorkerPool::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void WorkerPool::UpdateGaugesLocked() {
  if (metrics_ == nullptr) return;
  metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
  metrics_->busy_threads.Set(busy_);
}

void WorkerPool::Loop() {
  bool ran = false;  // a task finished since this thread last held the lock
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      if (ran) {
        --busy_;
        UpdateGaugesLocked();
      }
      mu_.Await(absl::Condition(
          +[](WorkerPool* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left to run
      task = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      UpdateGaugesLocked();
    }
    task();
    ran = true;
  }
}

}  // namespace dangjian
