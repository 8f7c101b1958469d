// The invalidation feed of a NearCache, on Redis' client-side caching protocol (Redis 6+):
// one connection per process runs `CLIENT TRACKING ON REDIRECT <itself> BCAST PREFIX ...` and
// subscribes to __redis__:invalidate, so Redis announces every change (write, delete, expiry,
// eviction) of a key under the tracked prefixes, from any client, and FLUSHALL as "everything".
//
// A thread of its own reads the announcements and drops the keys from the LocalCache. While the
// connection is down, not yet subscribed, or a PING goes unanswered for longer than the command
// timeout, the feed is not current and the local tier is empty; on (re)subscription it empties
// the local tier again before it reports current, so nothing read while deaf survives.
// Current() also checks that no announcement is waiting unread in the socket (one ioctl).
//
// The connection authenticates like the cache's own (RedisOptions::password).
//
// Thread-safe. The destructor stops the thread (within milliseconds).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/cache/local_cache.h"
#include "common/cache/near_cache.h"
#include "common/cache/redis_cache.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace dangjian::cache {

class RedisInvalidationFeed final : public InvalidationFeed {
 public:
  // `prefixes` are logical (e.g. "org:"); the feed tracks redis.key_prefix + each. `local` must
  // outlive this. `metrics` may be null. Starts the thread; never fails (Redis may be down).
  RedisInvalidationFeed(const RedisOptions& redis, std::vector<std::string> prefixes,
                        LocalCache& local, metrics::LocalCacheMetrics* metrics,
                        absl::Duration ping_interval = absl::Seconds(1));
  ~RedisInvalidationFeed() override;
  RedisInvalidationFeed(const RedisInvalidationFeed&) = delete;
  RedisInvalidationFeed& operator=(const RedisInvalidationFeed&) = delete;

  bool Current() const override;
  bool Covers(absl::string_view key) const override;

  // Times the feed (re)subscribed; for tests that wait for a reconnection.
  int64_t subscriptions() const { return subscriptions_.load(); }

 private:
  class Connection;  // the hiredis context (keeps hiredis out of this header)

  void Run();
  // On failure, `why` says why (e.g. Redis refused the password).
  bool Subscribe(Connection& conn, std::string* why);
  // Reads announcements until the connection fails, a PING is overdue, or the destructor;
  // returns why it stopped.
  std::string Listen(Connection& conn);
  void Lost(absl::string_view why);
  // Waits for `d` or until the destructor wakes the thread; false when stopping.
  bool Sleep(absl::Duration d);

  const RedisOptions redis_;
  const std::vector<std::string> prefixes_;
  LocalCache& local_;
  metrics::LocalCacheMetrics* const metrics_;
  const absl::Duration ping_interval_;

  int wake_fd_ = -1;  // an eventfd the destructor writes to end poll() at once
  std::atomic<bool> stopping_{false};
  std::atomic<bool> current_{false};
  std::atomic<int> fd_{-1};
  // Set before each read from the socket and cleared once everything read has been applied, so
  // Current() cannot miss an announcement that left the socket but is not applied yet.
  std::atomic<bool> applying_{false};
  std::atomic<int64_t> subscriptions_{0};
  bool lost_logged_ = false;  // only the thread touches it
  std::thread thread_;
};

}  // namespace dangjian::cache
