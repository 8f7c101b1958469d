// Wakes change-feed streams when the feed's head revision moves past what they have sent.
// Local writes report their revision through Advance(); a poller thread reads the head from the
// repository every `poll_interval`, to see writes of other replicas. Waiters are plain callbacks
// run on the notifier's thread (or the caller's, in Advance/Stop): they must only hand work off
// (e.g. submit to a WorkerPool), never block. It also admits the streams (StreamLimits: per
// process and per caller; a stream holds its slot until it ends) and, after streams have ended,
// hands the memory they freed back to the system (glibc keeps it otherwise). With
// ChangeFeedMetrics it reports the open and refused streams, the changes streams read and sent,
// the revision it has woken waiters up to, and how its polls fare. Thread-safe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/stream_slots.h"
#include "services/registry/store/org_repository.h"

namespace dangjian::registry {

// The change feed's health, for the ChangeFeedStalled alert and the feed panels. Every series
// exists (at 0) from construction, so dashboards see them before the first event.
struct ChangeFeedMetrics {
  explicit ChangeFeedMetrics(prometheus::Registry& registry);
  prometheus::Gauge& watchers;        // dj_registry_feed_watchers: open WatchOrgChanges streams
  prometheus::Gauge& watchers_limit;  // dj_registry_feed_watchers_limit: the process limit
  // dj_registry_feed_refused_total{limit="process"|"caller"}: streams refused at a limit.
  prometheus::Family<prometheus::Counter>& refused;
  // dj_registry_feed_changes_read_total / _sent_total: changes streams read from PostgreSQL and
  // changes written to clients. Their difference is what streams hold (a page at most each).
  prometheus::Counter& changes_read;
  prometheus::Counter& changes_sent;
  prometheus::Gauge& notified_revision;  // dj_registry_feed_notified_revision
  prometheus::Counter& poll_errors;      // dj_registry_feed_poll_errors_total
  // dj_registry_feed_last_poll_success_timestamp_seconds: Unix time of the last head read.
  prometheus::Gauge& last_poll_success;
};

class ChangeNotifier {
 public:
  // `metrics` (optional) must outlive the notifier; `clock` stamps successful polls.
  ChangeNotifier(OrgRepository& repo, absl::Duration poll_interval,
                 ChangeFeedMetrics* metrics = nullptr, Clock& clock = RealClock::Get(),
                 StreamLimits limits = StreamLimits());
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

  // Admits a change-feed stream of `caller` (the token's subject): a slot held until the Slot is
  // destroyed, or RESOURCE_EXHAUSTED stating the limit reached.
  absl::StatusOr<StreamSlots::Slot> OpenWatcher(absl::string_view caller);
  // A stream read `n` changes from the store / wrote one to its client (metrics only).
  void ChangesRead(int64_t n);
  void ChangeSent();

 private:
  void PollLoop();
  // Reads the head from the repository and advances to it.
  absl::Status Poll(absl::Time deadline);
  void WakeUpTo(int64_t revision);
  // malloc_trim after streams have ended, at most once per kTrimInterval.
  void TrimIfStreamsEnded();

  OrgRepository& repo_;
  const absl::Duration poll_interval_;
  ChangeFeedMetrics* const metrics_;
  Clock& clock_;
  mutable absl::Mutex mu_;
  int64_t head_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  struct Waiter {
    int64_t revision;
    Wake wake;
  };
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  StreamSlots slots_;
  // Poller thread only.
  uint64_t released_at_trim_ = 0;
  absl::Time last_trim_ = absl::InfinitePast();
  absl::Notification stop_;
  std::thread poller_;
};

}  // namespace dangjian::registry
