#include "common/cache/redis_invalidations.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/log.h"

namespace dangjian::cache {
namespace {

constexpr char kChannel[] = "__redis__:invalidate";

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

absl::string_view Text(const redisReply& r) {
  return absl::string_view(r.str, static_cast<size_t>(r.len));
}

bool IsText(const redisReply* r, absl::string_view text) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
         absl::EqualsIgnoreCase(Text(*r), text);
}

}  // namespace

class RedisInvalidationFeed::Connection {
 public:
  ~Connection() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  redisContext* ctx() const { return ctx_; }
  void Reset(redisContext* ctx) {
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = ctx;
  }
  Reply Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data())));
  }
  std::string error() const { return ctx_ == nullptr ? "not connected" : ctx_->errstr; }

 private:
  redisContext* ctx_ = nullptr;
};

RedisInvalidationFeed::RedisInvalidationFeed(const RedisOptions& redis,
                                             std::vector<std::string> prefixes, LocalCache& local,
                                             metrics::LocalCacheMetrics* metrics,
                                             absl::Duration ping_interval)
    : redis_(redis),
      prefixes_(std::move(prefixes)),
      local_(local),
      metrics_(metrics),
      ping_interval_(ping_interval),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { Run(); });
}

RedisInvalidationFeed::~RedisInvalidationFeed() {
  stopping_.store(true);
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
  thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool RedisInvalidationFeed::Covers(absl::string_view key) const {
  return std::any_of(prefixes_.begin(), prefixes_.end(),
                     [&](const std::string& p) { return absl::StartsWith(key, p); });
}

bool RedisInvalidationFeed::Current() const {
  if (!current_.load()) return false;
  // Order matters: first the socket, then `applying_`. An announcement either is still in the
  // socket (seen here), or the thread set `applying_` before reading it and clears it only once
  // the key is dropped.
  int unread = 0;
  if (ioctl(fd_.load(), FIONREAD, &unread) != 0 || unread > 0) return false;
  return !applying_.load();
}

void RedisInvalidationFeed::Run() {
  // hiredis writes with write(2): a PING into a connection Redis closed must not kill the process.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  while (!stopping_.load()) {
    Connection conn;
    std::string why;
    if (Subscribe(conn, &why)) why = Listen(conn);
    if (stopping_.load()) break;
    Lost(why);
    if (!Sleep(ping_interval_)) break;
  }
  current_.store(false);
  fd_.store(-1);
}

bool RedisInvalidationFeed::Subscribe(Connection& conn, std::string* why) {
  conn.Reset(redisConnectWithTimeout(redis_.host.c_str(), redis_.port,
                                     absl::ToTimeval(redis_.connect_timeout)));
  *why = conn.error();
  if (conn.ctx() == nullptr || conn.ctx()->err != 0) return false;
  if (redisSetTimeout(conn.ctx(), absl::ToTimeval(redis_.command_timeout)) != REDIS_OK) {
    *why = conn.error();
    return false;
  }
  *why = AuthenticateRedis(conn.ctx(), redis_);
  if (!why->empty()) return false;
  *why = "unexpected reply while subscribing";
  (void)redisEnableKeepAlive(conn.ctx());
  Reply id = conn.Command({"CLIENT", "ID"});
  if (id == nullptr || id->type != REDIS_REPLY_INTEGER) {
    if (id == nullptr) *why = conn.error();
    return false;
  }
  // Announcements are redirected to this same connection, which then subscribes to them (the
  // RESP2 form of client-side caching; hiredis 0.14 speaks RESP2 only).
  std::vector<std::string> tracking = {
      "CLIENT", "TRACKING", "ON", "REDIRECT", absl::StrCat(id->integer), "BCAST"};
  for (const std::string& p : prefixes_) {
    tracking.push_back("PREFIX");
    tracking.push_back(absl::StrCat(redis_.key_prefix, p));
  }
  Reply on = conn.Command(tracking);
  if (!IsText(on.get(), "OK")) {
    if (on != nullptr && on->type == REDIS_REPLY_ERROR && !lost_logged_) {
      log::Warn("cache invalidation feed refused by Redis; the local cache tier stays off",
                {{"error", std::string(Text(*on))}});
      lost_logged_ = true;
    }
    return false;
  }
  Reply sub = conn.Command({"SUBSCRIBE", kChannel});
  if (sub == nullptr || sub->type != REDIS_REPLY_ARRAY || sub->elements < 1 ||
      !IsText(sub->element[0], "subscribe")) {
    return false;
  }
  // Whatever was kept while deaf goes before the feed vouches for anything.
  local_.Clear();
  if (metrics_ != nullptr) {
    metrics_->entries.Set(0);
    metrics_->bytes.Set(0);
  }
  fd_.store(conn.ctx()->fd);
  current_.store(true);
  subscriptions_.fetch_add(1);
  if (metrics_ != nullptr) metrics_->feed_current.Set(1);
  log::Info("cache invalidation feed subscribed",
            {{"redis", absl::StrCat(redis_.host, ":", redis_.port)}});
  lost_logged_ = false;
  return true;
}

std::string RedisInvalidationFeed::Listen(Connection& conn) {
  redisContext* ctx = conn.ctx();
  absl::Time next_ping = absl::Now() + ping_interval_;
  absl::Time ping_due = absl::InfiniteFuture();  // when the outstanding PING must be answered
  while (!stopping_.load()) {
    const absl::Time now = absl::Now();
    if (ping_due != absl::InfiniteFuture() && now >= ping_due) {
      // Redis stopped answering, so it cannot be announcing either.
      return "no answer to PING within the ping interval";
    }
    if (ping_due == absl::InfiniteFuture() && now >= next_ping) {
      int done = 0;
      if (redisAppendCommand(ctx, "PING") != REDIS_OK) return conn.error();
      while (!done) {
        if (redisBufferWrite(ctx, &done) != REDIS_OK) return conn.error();
      }
      ping_due = now + ping_interval_;
    }
    const absl::Time wake = std::min(next_ping, ping_due);
    const int timeout_ms =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(wake - now) + 1, 1, 1000));
    pollfd fds[2] = {{ctx->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int ready = poll(fds, 2, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return "poll failed";
    }
    if (fds[1].revents != 0) return "stopping";
    if (fds[0].revents == 0) continue;
    applying_.store(true);
    if (redisBufferRead(ctx) != REDIS_OK) return conn.error();
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(ctx, &raw) != REDIS_OK) return conn.error();
      if (raw == nullptr) break;
      Reply reply(static_cast<redisReply*>(raw));
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) continue;
      if (IsText(reply->element[0], "pong")) {
        ping_due = absl::InfiniteFuture();
        next_ping = absl::Now() + ping_interval_;
        continue;
      }
      if (reply->elements != 3 || !IsText(reply->element[0], "message")) continue;
      const redisReply* payload = reply->element[2];
      if (payload->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < payload->elements; ++i) {
          const redisReply* key = payload->element[i];
          if (key->type != REDIS_REPLY_STRING) continue;
          absl::string_view name = Text(*key);
          if (!absl::ConsumePrefix(&name, redis_.key_prefix)) continue;
          local_.Invalidate(name);
          if (metrics_ != nullptr) metrics_->invalidations.Increment();
        }
      } else {
        // A nil payload: FLUSHALL or FLUSHDB, every key is gone.
        local_.Clear();
        if (metrics_ != nullptr) metrics_->feed_resets.Increment();
      }
    }
    if (metrics_ != nullptr) {
      metrics_->entries.Set(static_cast<double>(local_.size()));
      metrics_->bytes.Set(static_cast<double>(local_.bytes()));
    }
    // A partial announcement stays in hiredis' buffer: keep `applying_` set until it is whole.
    applying_.store(ctx->reader->pos < ctx->reader->len);
  }
  return "stopping";
}

void RedisInvalidationFeed::Lost(absl::string_view why) {
  const bool was_current = current_.exchange(false);
  fd_.store(-1);
  applying_.store(false);
  local_.Clear();
  if (metrics_ != nullptr) {
    metrics_->feed_current.Set(0);
    metrics_->entries.Set(0);
    metrics_->bytes.Set(0);
    if (was_current) metrics_->feed_resets.Increment();
  }
  if (was_current || !lost_logged_) {
    log::Warn("cache invalidation feed lost; the local cache tier is off until it reconnects",
              {{"error", std::string(why)}});
    lost_logged_ = true;
  }
}

bool RedisInvalidationFeed::Sleep(absl::Duration d) {
  pollfd fd = {wake_fd_, POLLIN, 0};
  (void)poll(&fd, 1, static_cast<int>(absl::ToInt64Milliseconds(d)));
  return !stopping_.load();
}

}  // namespace dangjian::cache
