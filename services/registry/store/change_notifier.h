// Wakes change-feed streams when the feed's head revision moves past what they have sent.
// Local writes report their revision through Advance(); a poller thread reads the head from the
// repository every `poll_interval`, to see writes of other replicas. Waiters are plain callbacks
// run on the notifier's thread (or the caller's, in Advance/Stop): they must only hand work off
// (e.g. submit to a WorkerPool), never block. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

class ChangeNotifier {
 public:
  ChangeNotifier(OrgRepository& repo, absl::Duration poll_interval);
  ~ChangeNotifier();  // Stop()

  void Start();
  // Wakes every waiter with stopping = true and refuses new ones. Idempotent.
  void Stop();

  // A committed local write: the head is at least `revision`.
  void Advance(int64_t revision);
  int64_t head() const;

  // `wake(stopping)` runs once, when the head exceeds `revision` (at once if it already does) or
  // when the notifier stops. Returns a handle for Cancel().
  using Wake = std::function<void(bool stopping)>;
  uint64_t WaitBeyond(int64_t revision, Wake wake);
  // True if the waiter was removed before it ran (it then never runs).
  bool Cancel(uint64_t handle);

 private:
  void PollLoop();
  void WakeUpTo(int64_t revision);

  OrgRepository& repo_;
  const absl::Duration poll_interval_;
  mutable absl::Mutex mu_;
  int64_t head_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  struct Waiter {
    int64_t revision;
    Wake wake;
  };
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread poller_;
};

}  // namespace dangjian::registry
