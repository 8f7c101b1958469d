#include "services/registry/store/change_notifier.h"

#include <vector>

#include "common/log.h"

namespace dangjian::registry {

ChangeNotifier::ChangeNotifier(OrgRepository& repo, absl::Duration poll_interval)
    : repo_(repo), poll_interval_(poll_interval) {}

ChangeNotifier::~ChangeNotifier() { Stop(); }

void ChangeNotifier::Start() {
  absl::StatusOr<int64_t> head = repo_.HeadRevision(ReadContext{});
  if (head.ok()) Advance(*head);
  poller_ = std::thread([this] { PollLoop(); });
}

void ChangeNotifier::Stop() {
  std::map<uint64_t, Waiter> waiters;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    waiters.swap(waiters_);
  }
  stop_.Notify();
  if (poller_.joinable()) poller_.join();
  for (auto& [handle, waiter] : waiters) waiter.wake(/*stopping=*/true);
}

void ChangeNotifier::PollLoop() {
  int failures = 0;
  while (!stop_.WaitForNotificationWithTimeout(poll_interval_)) {
    absl::StatusOr<int64_t> head = repo_.HeadRevision(ReadContext{absl::Now() + poll_interval_});
    if (head.ok()) {
      failures = 0;
      Advance(*head);
    } else if (failures++ == 0) {
      // Log the first failure of a run only; the pool's metrics count every one.
      log::Warn("change feed cannot read the head revision",
                {{"error", std::string(head.status().message())}});
    }
  }
}

void ChangeNotifier::Advance(int64_t revision) {
  {
    absl::MutexLock lock(&mu_);
    if (revision <= head_) return;
    head_ = revision;
  }
  WakeUpTo(revision);
}

void ChangeNotifier::WakeUpTo(int64_t revision) {
  std::vector<Wake> due;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.revision < revision) {
        due.push_back(std::move(it->second.wake));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Wake& wake : due) wake(/*stopping=*/false);
}

int64_t ChangeNotifier::head() const {
  absl::MutexLock lock(&mu_);
  return head_;
}

uint64_t ChangeNotifier::WaitBeyond(int64_t revision, Wake wake) {
  bool run_now = false;
  bool stopping = false;
  uint64_t handle = 0;
  {
    absl::MutexLock lock(&mu_);
    handle = next_handle_++;
    if (stopped_) {
      run_now = stopping = true;
    } else if (head_ > revision) {
      run_now = true;
    } else {
      waiters_.emplace(handle, Waiter{revision, std::move(wake)});
      return handle;
    }
  }
  if (run_now) wake(stopping);
  return handle;
}

bool ChangeNotifier::Cancel(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  return waiters_.erase(handle) > 0;
}

}  // namespace dangjian::registry
