#include "services/registry/store/change_notifier.h"

#include <malloc.h>

#include <vector>

#include "common/log.h"

namespace dangjian::registry {
namespace {

// How often, at most, memory freed by ended streams is handed back to the system. A trim walks
// glibc's arenas (milliseconds for a few hundred MB); streams that come and go all day do not
// make it run more often than this.
constexpr absl::Duration kTrimInterval = absl::Seconds(5);

}  // namespace

ChangeFeedMetrics::ChangeFeedMetrics(prometheus::Registry& registry)
    : watchers(prometheus::BuildGauge()
                   .Name("dj_registry_feed_watchers")
                   .Help("Open WatchOrgChanges streams.")
                   .Register(registry)
                   .Add({})),
      watchers_limit(prometheus::BuildGauge()
                         .Name("dj_registry_feed_watchers_limit")
                         .Help("Most WatchOrgChanges streams this replica serves at once "
                               "(--watch_max_streams).")
                         .Register(registry)
                         .Add({})),
      refused(prometheus::BuildCounter()
                  .Name("dj_registry_feed_refused_total")
                  .Help("WatchOrgChanges streams refused with RESOURCE_EXHAUSTED, by the limit "
                        "reached: process (--watch_max_streams) or caller "
                        "(--watch_max_streams_per_caller).")
                  .Register(registry)),
      changes_read(prometheus::BuildCounter()
                       .Name("dj_registry_feed_changes_read_total")
                       .Help("Changes WatchOrgChanges streams read from PostgreSQL.")
                       .Register(registry)
                       .Add({})),
      changes_sent(prometheus::BuildCounter()
                       .Name("dj_registry_feed_changes_sent_total")
                       .Help("Changes WatchOrgChanges streams wrote to their clients.")
                       .Register(registry)
                       .Add({})),
      notified_revision(prometheus::BuildGauge()
                            .Name("dj_registry_feed_notified_revision")
                            .Help("Change-feed revision up to which this replica has seen the head "
                                  "and woken its streams.")
                            .Register(registry)
                            .Add({})),
      poll_errors(prometheus::BuildCounter()
                      .Name("dj_registry_feed_poll_errors_total")
                      .Help("Failed reads of the change feed's head revision by the poller.")
                      .Register(registry)
                      .Add({})),
      last_poll_success(prometheus::BuildGauge()
                            .Name("dj_registry_feed_last_poll_success_timestamp_seconds")
                            .Help("Unix time of the change-feed poller's last successful read "
                                  "of the head revision.")
                            .Register(registry)
                            .Add({})) {}

ChangeNotifier::ChangeNotifier(OrgRepository& repo, absl::Duration poll_interval,
                               ChangeFeedMetrics* metrics, Clock& clock, StreamLimits limits)
    : repo_(repo),
      poll_interval_(poll_interval),
      metrics_(metrics),
      clock_(clock),
      slots_(limits, "WatchOrgChanges streams", metrics != nullptr ? &metrics->watchers : nullptr,
             metrics != nullptr ? &metrics->refused : nullptr) {
  if (metrics_ != nullptr) metrics_->watchers_limit.Set(limits.max_open);
}

ChangeNotifier::~ChangeNotifier() { Stop(); }

void ChangeNotifier::Start() {
  (void)Poll(ReadContext{}.deadline);  // the poller logs if the failure lasts
  poller_ = std::thread([this] { PollLoop(); });
}

absl::Status ChangeNotifier::Poll(absl::Time deadline) {
  absl::StatusOr<int64_t> head = repo_.HeadRevision(ReadContext{deadline});
  if (!head.ok()) {
    if (metrics_ != nullptr) metrics_->poll_errors.Increment();
    return head.status();
  }
  Advance(*head);
  if (metrics_ != nullptr) {
    metrics_->last_poll_success.Set(absl::ToDoubleSeconds(clock_.Now() - absl::UnixEpoch()));
  }
  return absl::OkStatus();
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
  // Repeated failures are held back and counted (dj_registry_feed_poll_errors_total counts each).
  log::RateLimitedLog failures(log::RateLimitedLog::kDefaultWindow, clock_);
  constexpr char kFailed[] = "change feed cannot read the head revision";
  while (!stop_.WaitForNotificationWithTimeout(poll_interval_)) {
    const absl::Status status = Poll(absl::Now() + poll_interval_);
    if (!status.ok()) {
      failures.Warn(kFailed, {{"error", std::string(status.message())}});
    } else if (const int64_t failed = failures.EndRun(kFailed); failed > 0) {
      log::Info("change feed reads the head revision again", {{"failed_polls", failed}});
    }
    TrimIfStreamsEnded();
  }
}

void ChangeNotifier::TrimIfStreamsEnded() {
  const uint64_t released = slots_.released();
  if (released == released_at_trim_) return;
  const absl::Time now = clock_.Now();
  if (now - last_trim_ < kTrimInterval) return;
  // A replay's pages are many small blocks spread over the arenas of the threads that built and
  // sent them; glibc returns little of that by itself once they are freed (500 replays once left
  // 220 MB resident for good).
  malloc_trim(0);
  released_at_trim_ = released;
  last_trim_ = now;
}

void ChangeNotifier::Advance(int64_t revision) {
  {
    absl::MutexLock lock(&mu_);
    if (revision <= head_) return;
    head_ = revision;
    // Under the lock, so concurrent advances publish in order and the gauge never goes back.
    if (metrics_ != nullptr) metrics_->notified_revision.Set(static_cast<double>(revision));
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

absl::StatusOr<StreamSlots::Slot> ChangeNotifier::OpenWatcher(absl::string_view caller) {
  return slots_.Acquire(caller);
}

void ChangeNotifier::ChangesRead(int64_t n) {
  if (metrics_ != nullptr) metrics_->changes_read.Increment(static_cast<double>(n));
}

void ChangeNotifier::ChangeSent() {
  if (metrics_ != nullptr) metrics_->changes_sent.Increment();
}

bool ChangeNotifier::Cancel(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  return waiters_.erase(handle) > 0;
}

}  // namespace dangjian::registry
