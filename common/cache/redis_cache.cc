#include "common/cache/redis_cache.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <fstream>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

namespace dangjian::cache {
namespace {

using State = CircuitBreaker::State;

// Bound on remembered write-side operations. Beyond it we remember one "flush everything under
// the prefix" instead: the cache is only a copy, so dropping it all is always correct.
constexpr size_t kMaxPendingOps = 1024;
// Bound on connections to fence off (see Fence below). Each one costs a command timeout and the
// breaker allows about pool_size of those per interval, so the bound is only a guard.
constexpr size_t kMaxFences = 256;
// Operations replayed per pipeline round trip.
constexpr size_t kReplayBatch = 128;
constexpr char kScanCount[] = "1000";

// An entry is 16 lowercase hex digits of the version with its sign bit flipped (so the digits
// sort like the signed version), ':', then the data, binary-safe. Counters are entries with no
// data. Fixed width lets the script compare versions exactly; Lua numbers are doubles.
constexpr size_t kVersionDigits = 16;

// Sets KEYS[1] to ARGV[1] with a TTL of ARGV[2] ms unless it holds an entry with the same or a
// higher version. Returns 1 if it set the key. The version is compared in two 32-bit halves,
// each exact as a double. A value that is not an entry, or has no TTL (we never write one: it
// was planted by someone else), is overwritten.
constexpr char kSetIfNewerScript[] = R"lua(
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 17, 17) == ':' and redis.call('PTTL', KEYS[1]) >= 0 then
  local chi = tonumber(string.sub(cur, 1, 8), 16)
  local clo = tonumber(string.sub(cur, 9, 16), 16)
  local nhi = tonumber(string.sub(ARGV[1], 1, 8), 16)
  local nlo = tonumber(string.sub(ARGV[1], 9, 16), 16)
  if chi and clo and (chi > nhi or (chi == nhi and clo >= nlo)) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua";

std::string EncodeEntry(int64_t version, absl::string_view data) {
  const uint64_t biased = static_cast<uint64_t>(version) ^ (uint64_t{1} << 63);
  std::string out = absl::StrFormat("%016x:", biased);
  out.append(data.data(), data.size());
  return out;
}

std::optional<CachedValue> DecodeEntry(absl::string_view raw) {
  if (raw.size() <= kVersionDigits || raw[kVersionDigits] != ':') return std::nullopt;
  const absl::string_view digits = raw.substr(0, kVersionDigits);
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); })) {
    return std::nullopt;
  }
  uint64_t biased = 0;
  if (!absl::SimpleHexAtoi(digits, &biased)) return std::nullopt;
  CachedValue value;
  value.version = static_cast<int64_t>(biased ^ (uint64_t{1} << 63));
  value.data = std::string(raw.substr(kVersionDigits + 1));
  return value;
}

// Every entry we write expires: at most this long, whatever a caller asks.
constexpr absl::Duration kMaxTtl = absl::Hours(24);

// "PX" milliseconds for a TTL, within [1 ms, kMaxTtl].
std::string TtlMillis(absl::Duration ttl) {
  return absl::StrCat(std::clamp<int64_t>(absl::ToInt64Milliseconds(std::min(ttl, kMaxTtl)), 1,
                                          absl::ToInt64Milliseconds(kMaxTtl)));
}

std::string Sha1Hex(absl::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha1(), nullptr) != 1) {
    return std::string();  // EVALSHA then fails with NOSCRIPT and EVAL is used
  }
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) absl::StrAppend(&hex, absl::Hex(md[i], absl::kZeroPad2));
  return hex;
}

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

bool IsError(const Reply& reply) { return reply->type == REDIS_REPLY_ERROR; }

absl::string_view ReplyText(const redisReply& reply) {
  return absl::string_view(reply.str == nullptr ? "" : reply.str, reply.len);
}

// hiredis 0.14 writes with write(2): a Redis that died turns the next write into SIGPIPE, which
// would kill the process. Blocks SIGPIPE on this thread for the scope and swallows one that our
// writes raised, as libpq does, so no process-wide signal setting is needed.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_mask_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero = {0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_mask_;
  bool was_pending_ = false;
};

// How one call fared.
enum class Outcome {
  kOk,        // Redis answered
  kSkipped,   // breaker open: Redis not asked
  kFailed,    // connect error, timeout, protocol or error reply
  kBypassed,  // Redis answered the replay, but other write-side work is pending again
};

}  // namespace

absl::StatusOr<std::string> ReadRedisPasswordFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read --redis_password_file ", path));
  }
  std::string password((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read --redis_password_file ", path));
  }
  if (absl::EndsWith(password, "\r\n")) {
    password.resize(password.size() - 2);
  } else if (absl::EndsWith(password, "\n")) {
    password.pop_back();
  }
  if (password.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--redis_password_file ", path, " is empty"));
  }
  return password;
}

std::string AuthenticateRedis(redisContext* ctx, const RedisOptions& options) {
  if (!options.password.empty()) {
    const char* argv[] = {"AUTH", options.password.data()};
    const size_t lens[] = {4, options.password.size()};
    Reply auth(static_cast<redisReply*>(redisCommandArgv(ctx, 2, argv, lens)));
    if (auth == nullptr) return ctx->errstr;
    // Redis' own words (WRONGPASS ..., or ERR ... no password is set) never echo the password.
    if (IsError(auth)) return absl::StrCat("authentication failed: ", ReplyText(*auth));
  }
  // A Redis with a password answers NOAUTH to everything until AUTH succeeds: say so once here
  // rather than as a failure of each later command.
  Reply ping(static_cast<redisReply*>(redisCommand(ctx, "PING")));
  if (ping == nullptr) return ctx->errstr;
  if (IsError(ping)) {
    const absl::string_view text = ReplyText(*ping);
    if (absl::StartsWith(text, "NOAUTH")) {
      return absl::StrCat("authentication required: Redis wants a password (", text, ")");
    }
    return std::string(text);
  }
  return std::string();
}

// A write-side operation that failed or was skipped, kept in order until it can be replayed.
struct RedisCache::Pending {
  enum class Kind { kSetIfNewer, kDelete };
  Kind kind = Kind::kSetIfNewer;
  // kSetIfNewer: {key, entry, ttl ms}; kDelete: the keys. Keys carry the prefix.
  std::vector<std::string> args;
  uint64_t seq = 0;  // position in the queue, so a replay removes exactly what it ran
};

class RedisCache::Impl {
 public:
  Impl(RedisOptions options, metrics::CacheMetrics* metrics, CircuitBreaker& breaker, Clock& clock);
  ~Impl();

  std::optional<CachedValue> Get(absl::string_view key);
  std::vector<std::optional<CachedValue>> MultiGet(const std::vector<std::string>& keys);
  void Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl);
  void SetAfterWrite(absl::string_view key, const CachedValue& value, absl::Duration ttl);
  void Invalidate(const std::vector<std::string>& keys);
  std::optional<int64_t> GetCounter(absl::string_view key);
  void RaiseCounter(absl::string_view key, int64_t value, bool after_write);
  size_t pending() const;

 private:
  // One pool slot. Only the caller holding its lease touches it.
  struct Conn {
    redisContext* ctx = nullptr;
    // What CLIENT KILL needs to find this connection on the server; id 0 if unknown.
    int64_t client_id = 0;
    std::string client_addr;
  };

  // A connection that timed out with writes sent and unanswered. A stalled Redis or a slow
  // network may still deliver and run those writes later, after newer writes sent on another
  // connection; an old Fill or SetAfterWrite landing after a later Invalidate would leave a stale
  // entry. Killing the old connection first, in the replay, drops whatever the server has not
  // read from it yet; whatever it did read ran before the replay, in order.
  struct Fence {
    std::vector<std::string> args;  // CLIENT KILL ID <id> ADDR <addr>
    uint64_t seq = 0;
  };

  // Holds one pool slot for the scope of a call.
  class Lease {
   public:
    explicit Lease(Impl& impl) : impl_(impl), index_(impl.AcquireSlot()) {}
    ~Lease() { impl_.ReleaseSlot(index_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Conn& conn() { return impl_.conns_[index_]; }

   private:
    Impl& impl_;
    const size_t index_;
  };

  size_t AcquireSlot();
  void ReleaseSlot(size_t index);

  std::string Key(absl::string_view key) const { return absl::StrCat(options_.key_prefix, key); }

  // Asks the breaker, leases and connects, replays pending work, then runs `body` unless
  // write-side work is pending again (a read then misses, a write queues behind it). Reports the
  // outcome to the breaker and metrics; `body` reports its own failures.
  template <typename Body>
  Outcome Run(Body&& body);

  bool Connect(Conn& conn);
  // Frees a connection after an I/O or protocol error; it is reopened on next use.
  void Drop(Conn& conn, bool writes_unanswered);
  Reply Command(Conn& conn, const std::vector<absl::string_view>& args);
  // Sends `commands` in one pipeline and collects the replies in order; stops at the first
  // connection error (the rest are nullptr) and then drops the connection.
  std::vector<Reply> Pipeline(Conn& conn,
                              const std::vector<std::vector<absl::string_view>>& commands,
                              bool writes);

  Outcome SetIfNewer(Conn& conn, const std::string& key, const std::string& entry,
                     const std::string& ttl_ms);
  Outcome Delete(Conn& conn, const std::vector<std::string>& keys);
  // Replays fences, a pending flush and queued operations, in that order.
  Outcome Replay(Conn& conn);
  Outcome ReplayOps(Conn& conn, std::vector<Pending> batch);
  bool FlushPrefix(Conn& conn);

  // The write-side path: run now if nothing is pending, else (or on failure) remember.
  void WriteSide(Pending op);
  void Remember(Pending op);
  void AddFence(const Conn& conn);
  bool HasPending() const;

  void ReportSuccess();
  void ReportFailure(absl::string_view what, absl::string_view error);
  void CountSkipped();
  void SyncBreakerMetrics();
  // The watch thread: sets dj_cache_breaker_open back to 0 when an open interval ends.
  void WatchBreaker();

  const RedisOptions options_;
  metrics::CacheMetrics* const metrics_;
  CircuitBreaker& breaker_;
  Clock& clock_;
  const std::string script_sha_;

  std::vector<Conn> conns_;
  absl::Mutex pool_mu_;
  std::vector<size_t> free_ ABSL_GUARDED_BY(pool_mu_);

  // Held while replaying, so the queue is replayed by one caller at a time and in order.
  absl::Mutex replay_mu_;

  mutable absl::Mutex pending_mu_;
  std::deque<Pending> pending_ ABSL_GUARDED_BY(pending_mu_);
  std::deque<Fence> fences_ ABSL_GUARDED_BY(pending_mu_);
  bool flush_all_ ABSL_GUARDED_BY(pending_mu_) = false;
  // Bumped on each overflow, so a flush that ran before the latest overflow does not clear it.
  uint64_t flush_epoch_ ABSL_GUARDED_BY(pending_mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(pending_mu_) = 1;

  absl::Mutex metrics_mu_;
  int64_t reported_trips_ ABSL_GUARDED_BY(metrics_mu_) = 0;

  absl::Mutex watch_mu_;
  absl::CondVar watch_cv_;  // signalled when the breaker may have opened, and on destruction
  bool watch_stopping_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread watch_thread_;
};

RedisCache::Impl::Impl(RedisOptions options, metrics::CacheMetrics* metrics,
                       CircuitBreaker& breaker, Clock& clock)
    : options_(std::move(options)),
      metrics_(metrics),
      breaker_(breaker),
      clock_(clock),
      script_sha_(Sha1Hex(kSetIfNewerScript)),
      conns_(static_cast<size_t>(std::max(1, options_.pool_size))) {
  {
    absl::MutexLock lock(&pool_mu_);
    for (size_t i = 0; i < conns_.size(); ++i) free_.push_back(i);
  }
  if (metrics_ != nullptr) watch_thread_ = std::thread([this] { WatchBreaker(); });
}

RedisCache::Impl::~Impl() {
  if (watch_thread_.joinable()) {
    {
      absl::MutexLock lock(&watch_mu_);
      watch_stopping_ = true;
      watch_cv_.Signal();
    }
    watch_thread_.join();
  }
  for (Conn& conn : conns_) {
    if (conn.ctx != nullptr) redisFree(conn.ctx);
  }
}

size_t RedisCache::Impl::AcquireSlot() {
  pool_mu_.LockWhen(absl::Condition(
      +[](std::vector<size_t>* free) { return !free->empty(); }, &free_));
  const size_t index = free_.back();
  free_.pop_back();
  pool_mu_.Unlock();
  return index;
}

void RedisCache::Impl::ReleaseSlot(size_t index) {
  absl::MutexLock lock(&pool_mu_);
  free_.push_back(index);
}

template <typename Body>
Outcome RedisCache::Impl::Run(Body&& body) {
  if (!breaker_.Allow()) {
    CountSkipped();
    return Outcome::kSkipped;
  }
  SigpipeGuard sigpipe_guard;
  Lease lease(*this);
  // Waiting for a slot may have outlasted another caller's timeout: once the breaker is open,
  // this call is skipped too rather than spending a second timeout on the same dead Redis.
  if (breaker_.state() == State::kOpen) {
    CountSkipped();
    return Outcome::kSkipped;
  }
  Conn& conn = lease.conn();
  if (conn.ctx == nullptr && !Connect(conn)) return Outcome::kFailed;
  const Outcome replayed = Replay(conn);
  if (replayed == Outcome::kSkipped) {
    CountSkipped();
    return replayed;
  }
  if (replayed == Outcome::kFailed) return replayed;
  if (HasPending()) {
    ReportSuccess();
    return Outcome::kBypassed;
  }
  const Outcome outcome = body(conn);
  if (outcome == Outcome::kOk) ReportSuccess();
  return outcome;
}

bool RedisCache::Impl::Connect(Conn& conn) {
  redisContext* ctx = redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                              absl::ToTimeval(options_.connect_timeout));
  if (ctx == nullptr) {
    ReportFailure("connect", "out of memory");
    return false;
  }
  if (ctx->err != 0) {
    ReportFailure("connect", ctx->errstr);
    redisFree(ctx);
    return false;
  }
  if (redisSetTimeout(ctx, absl::ToTimeval(options_.command_timeout)) != REDIS_OK) {
    ReportFailure("connect", ctx->errstr);
    redisFree(ctx);
    return false;
  }
  if (std::string why = AuthenticateRedis(ctx, options_); !why.empty()) {
    redisFree(ctx);
    ReportFailure("connect", why);
    return false;
  }
  conn.ctx = ctx;
  conn.client_id = 0;
  conn.client_addr.clear();
  // The server's own name for this connection, for a fence; it also proves Redis answers.
  Reply info = Command(conn, {"CLIENT", "INFO"});
  if (info == nullptr) {
    const std::string error = conn.ctx->errstr;
    Drop(conn, false);
    ReportFailure("connect", error);
    return false;
  }
  if (info->type == REDIS_REPLY_STRING || info->type == REDIS_REPLY_STATUS) {
    for (absl::string_view field :
         absl::StrSplit(absl::StripAsciiWhitespace(ReplyText(*info)), ' ')) {
      if (absl::ConsumePrefix(&field, "id=")) {
        if (!absl::SimpleAtoi(field, &conn.client_id)) conn.client_id = 0;
      } else if (absl::ConsumePrefix(&field, "addr=")) {
        conn.client_addr = std::string(field);
      }
    }
    if (conn.client_addr.empty()) conn.client_id = 0;
  }
  // An error reply (a Redis older than 6.2, or the command renamed) only means no fences.
  return true;
}

void RedisCache::Impl::Drop(Conn& conn, bool writes_unanswered) {
  if (conn.ctx == nullptr) return;
  redisFree(conn.ctx);
  conn.ctx = nullptr;
  if (writes_unanswered) AddFence(conn);
}

Reply RedisCache::Impl::Command(Conn& conn, const std::vector<absl::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (absl::string_view arg : args) {
    argv.push_back(arg.data());
    lens.push_back(arg.size());
  }
  const auto start = std::chrono::steady_clock::now();
  Reply reply(static_cast<redisReply*>(
      redisCommandArgv(conn.ctx, static_cast<int>(argv.size()), argv.data(), lens.data())));
  if (metrics_ != nullptr) {
    metrics_->command_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return reply;
}

std::vector<Reply> RedisCache::Impl::Pipeline(
    Conn& conn, const std::vector<std::vector<absl::string_view>>& commands, bool writes) {
  std::vector<Reply> replies(commands.size());
  const auto start = std::chrono::steady_clock::now();
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& args : commands) {
    argv.clear();
    lens.clear();
    for (absl::string_view arg : args) {
      argv.push_back(arg.data());
      lens.push_back(arg.size());
    }
    if (redisAppendCommandArgv(conn.ctx, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      Drop(conn, false);  // nothing was sent yet: appending only fills a buffer
      return replies;
    }
  }
  for (Reply& reply : replies) {
    void* raw = nullptr;
    if (redisGetReply(conn.ctx, &raw) != REDIS_OK || raw == nullptr) {
      Drop(conn, writes);
      break;
    }
    reply.reset(static_cast<redisReply*>(raw));
  }
  if (metrics_ != nullptr) {
    metrics_->command_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return replies;
}

Outcome RedisCache::Impl::SetIfNewer(Conn& conn, const std::string& key, const std::string& entry,
                                     const std::string& ttl_ms) {
  Reply reply = Command(conn, {"EVALSHA", script_sha_, "1", key, entry, ttl_ms});
  if (reply != nullptr && IsError(reply) && absl::StartsWith(ReplyText(*reply), "NOSCRIPT")) {
    // First use on this server (or after SCRIPT FLUSH): EVAL also caches the script.
    reply = Command(conn, {"EVAL", kSetIfNewerScript, "1", key, entry, ttl_ms});
  }
  if (reply == nullptr) {
    const std::string error = conn.ctx->errstr;
    Drop(conn, true);
    ReportFailure("set", error);
    return Outcome::kFailed;
  }
  if (IsError(reply)) {
    ReportFailure("set", ReplyText(*reply));
    return Outcome::kFailed;
  }
  return Outcome::kOk;
}

Outcome RedisCache::Impl::Delete(Conn& conn, const std::vector<std::string>& keys) {
  std::vector<absl::string_view> args = {"DEL"};
  args.insert(args.end(), keys.begin(), keys.end());
  Reply reply = Command(conn, args);
  if (reply == nullptr) {
    const std::string error = conn.ctx->errstr;
    Drop(conn, false);  // a delete that lands late can only cause a miss
    ReportFailure("delete", error);
    return Outcome::kFailed;
  }
  if (IsError(reply)) {
    ReportFailure("delete", ReplyText(*reply));
    return Outcome::kFailed;
  }
  return Outcome::kOk;
}

Outcome RedisCache::Impl::Replay(Conn& conn) {
  if (!HasPending()) return Outcome::kOk;
  absl::MutexLock replay_lock(&replay_mu_);
  while (true) {
    // Another caller's replay may have failed while we waited for it.
    if (breaker_.state() == State::kOpen) return Outcome::kSkipped;
    std::vector<Fence> fences;
    std::vector<Pending> batch;
    bool flush = false;
    uint64_t flush_epoch = 0;
    {
      absl::MutexLock lock(&pending_mu_);
      fences.assign(fences_.begin(), fences_.end());
      flush = flush_all_;
      flush_epoch = flush_epoch_;
      const size_t n = std::min(pending_.size(), kReplayBatch);
      batch.assign(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    if (fences.empty() && !flush && batch.empty()) return Outcome::kOk;

    if (!fences.empty()) {
      std::vector<std::vector<absl::string_view>> commands;
      for (const Fence& fence : fences) {
        commands.emplace_back(fence.args.begin(), fence.args.end());
      }
      const std::vector<Reply> replies = Pipeline(conn, commands, false);
      if (replies.back() == nullptr) {
        ReportFailure("fence", "connection lost");
        return Outcome::kFailed;
      }
      // An error reply (e.g. CLIENT KILL renamed away) cannot be helped by retrying; the fence
      // is best effort beyond that.
      absl::MutexLock lock(&pending_mu_);
      while (!fences_.empty() && fences_.front().seq <= fences.back().seq) fences_.pop_front();
      continue;
    }
    if (flush) {
      if (!FlushPrefix(conn)) return Outcome::kFailed;
      absl::MutexLock lock(&pending_mu_);
      if (flush_epoch_ == flush_epoch) flush_all_ = false;
      continue;
    }
    const Outcome outcome = ReplayOps(conn, std::move(batch));
    if (outcome != Outcome::kOk) return outcome;
  }
}

Outcome RedisCache::Impl::ReplayOps(Conn& conn, std::vector<Pending> batch) {
  // EVAL rather than EVALSHA: a NOSCRIPT reply in the middle of a pipeline could only be
  // retried after the commands behind it, out of order.
  std::vector<std::vector<absl::string_view>> commands;
  commands.reserve(batch.size());
  for (const Pending& op : batch) {
    std::vector<absl::string_view> args;
    if (op.kind == Pending::Kind::kSetIfNewer) {
      args = {"EVAL", kSetIfNewerScript, "1", op.args[0], op.args[1], op.args[2]};
    } else {
      args = {"DEL"};
      args.insert(args.end(), op.args.begin(), op.args.end());
    }
    commands.push_back(std::move(args));
  }
  const std::vector<Reply> replies = Pipeline(conn, commands, true);
  size_t done = 0;
  while (done < replies.size() && replies[done] != nullptr && !IsError(replies[done])) ++done;
  const bool refused = done < replies.size() && replies[done] != nullptr;
  // Commands behind a refused one that got a reply have run already, so the refused one can no
  // longer run in its place.
  const bool later_ran =
      refused && std::any_of(replies.begin() + static_cast<std::ptrdiff_t>(done) + 1, replies.end(),
                             [](const Reply& r) { return r != nullptr; });
  {
    absl::MutexLock lock(&pending_mu_);
    // Replaying an applied prefix again would be harmless, but there is no need to.
    const uint64_t last = later_ran ? batch.back().seq : (done > 0 ? batch[done - 1].seq : 0);
    while (!pending_.empty() && pending_.front().seq <= last) pending_.pop_front();
    if (later_ran) {
      // Drop the batch and flush the prefix instead, before what is queued behind it.
      flush_all_ = true;
      ++flush_epoch_;
    }
  }
  if (refused) {
    ReportFailure("replay", ReplyText(*replies[done]));
    return Outcome::kFailed;
  }
  if (done < replies.size()) {
    ReportFailure("replay", "connection lost");
    return Outcome::kFailed;
  }
  return Outcome::kOk;
}

bool RedisCache::Impl::FlushPrefix(Conn& conn) {
  // MATCH is a glob: escape its special characters in the prefix.
  std::string pattern;
  for (char c : options_.key_prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') pattern.push_back('\\');
    pattern.push_back(c);
  }
  pattern.push_back('*');
  std::string cursor = "0";
  do {
    Reply reply = Command(conn, {"SCAN", cursor, "MATCH", pattern, "COUNT", kScanCount});
    if (reply == nullptr) {
      const std::string error = conn.ctx->errstr;
      Drop(conn, false);
      ReportFailure("flush", error);
      return false;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
      ReportFailure("flush", IsError(reply) ? ReplyText(*reply) : "unexpected SCAN reply");
      return false;
    }
    cursor = std::string(ReplyText(*reply->element[0]));
    const redisReply& keys = *reply->element[1];
    if (keys.elements == 0) continue;
    std::vector<absl::string_view> args = {"UNLINK"};
    for (size_t i = 0; i < keys.elements; ++i) args.push_back(ReplyText(*keys.element[i]));
    Reply deleted = Command(conn, args);
    if (deleted == nullptr) {
      const std::string error = conn.ctx->errstr;
      Drop(conn, false);
      ReportFailure("flush", error);
      return false;
    }
    if (IsError(deleted)) {
      ReportFailure("flush", ReplyText(*deleted));
      return false;
    }
  } while (cursor != "0");
  log::Info("redis cache prefix flushed after too many pending operations");
  return true;
}

void RedisCache::Impl::WriteSide(Pending op) {
  const Outcome outcome = Run([&](Conn& conn) {
    return op.kind == Pending::Kind::kSetIfNewer
               ? SetIfNewer(conn, op.args[0], op.args[1], op.args[2])
               : Delete(conn, op.args);
  });
  // Bypassed: older operations are queued again, so this one goes behind them.
  if (outcome != Outcome::kOk) Remember(std::move(op));
}

void RedisCache::Impl::Remember(Pending op) {
  absl::MutexLock lock(&pending_mu_);
  if (pending_.size() >= kMaxPendingOps) {
    // The flush covers everything queued so far and this operation too (it runs later than
    // both); operations queued after it are replayed after the flush.
    if (!flush_all_) log::Warn("redis cache pending operations overflowed; will flush the prefix");
    pending_.clear();
    flush_all_ = true;
    ++flush_epoch_;
    return;
  }
  op.seq = next_seq_++;
  pending_.push_back(std::move(op));
}

void RedisCache::Impl::AddFence(const Conn& conn) {
  if (conn.client_id <= 0) return;
  absl::MutexLock lock(&pending_mu_);
  // Beyond the bound the oldest fence goes: its connection is the likeliest to be gone already.
  if (fences_.size() >= kMaxFences) fences_.pop_front();
  Fence fence;
  // Both filters must match, so a restarted server that reused the id kills nobody else.
  fence.args = {"CLIENT", "KILL", "ID", absl::StrCat(conn.client_id), "ADDR", conn.client_addr};
  fence.seq = next_seq_++;
  fences_.push_back(std::move(fence));
}

bool RedisCache::Impl::HasPending() const {
  absl::MutexLock lock(&pending_mu_);
  return !pending_.empty() || !fences_.empty() || flush_all_;
}

size_t RedisCache::Impl::pending() const {
  absl::MutexLock lock(&pending_mu_);
  return pending_.size() + fences_.size() + (flush_all_ ? 1 : 0);
}

void RedisCache::Impl::ReportSuccess() {
  breaker_.OnSuccess();
  SyncBreakerMetrics();
}

void RedisCache::Impl::ReportFailure(absl::string_view what, absl::string_view error) {
  if (metrics_ != nullptr) metrics_->errors.Increment();
  breaker_.OnFailure();
  SyncBreakerMetrics();
  if (metrics_ != nullptr) {
    // Under the watch mutex, so the watch thread cannot miss it between its check and its wait.
    absl::MutexLock lock(&watch_mu_);
    watch_cv_.Signal();
  }
  log::Warn("redis cache call failed; reads fall through to the database",
            {{"op", std::string(what)}, {"error", std::string(error)}});
}

void RedisCache::Impl::CountSkipped() {
  if (metrics_ != nullptr) metrics_->skipped.Increment();
}

void RedisCache::Impl::SyncBreakerMetrics() {
  if (metrics_ == nullptr) return;
  absl::MutexLock lock(&metrics_mu_);
  const int64_t trips = breaker_.trips();
  if (trips > reported_trips_) {
    metrics_->breaker_trips.Increment(static_cast<double>(trips - reported_trips_));
    reported_trips_ = trips;
  }
  metrics_->breaker_open.Set(breaker_.state() == State::kOpen ? 1 : 0);
}

void RedisCache::Impl::WatchBreaker() {
  // At most this long between looks at an open breaker, so an injected clock that jumps is
  // noticed too.
  constexpr absl::Duration kMaxWait = absl::Milliseconds(100);
  absl::MutexLock lock(&watch_mu_);
  while (!watch_stopping_) {
    // Read when the interval ends, then publish the state, both before waiting: an interval
    // that ends between the two is published by the next round (the wait is bounded by `until`),
    // and a breaker that opens after `until` was read signals us under watch_mu_, which we hold
    // until the wait releases it. (Publishing only after a wait left the gauge at 1 when the
    // interval ended before this thread looked at it.)
    const absl::Time until = breaker_.open_until();
    SyncBreakerMetrics();
    if (until == absl::InfinitePast()) {
      watch_cv_.Wait(&watch_mu_);
    } else {
      watch_cv_.WaitWithTimeout(&watch_mu_,
                                std::clamp(until - clock_.Now(), absl::Milliseconds(1), kMaxWait));
    }
  }
}

// --- Operations --------------------------------------------------------------------------------

std::optional<CachedValue> RedisCache::Impl::Get(absl::string_view key) {
  std::optional<CachedValue> result;
  const std::string full = Key(key);
  const Outcome outcome = Run([&](Conn& conn) {
    Reply reply = Command(conn, {"GET", full});
    if (reply == nullptr) {
      const std::string error = conn.ctx->errstr;
      Drop(conn, false);
      ReportFailure("get", error);
      return Outcome::kFailed;
    }
    if (IsError(reply)) {
      ReportFailure("get", ReplyText(*reply));
      return Outcome::kFailed;
    }
    if (reply->type == REDIS_REPLY_STRING) result = DecodeEntry(ReplyText(*reply));
    return Outcome::kOk;
  });
  if (metrics_ != nullptr && (outcome == Outcome::kOk || outcome == Outcome::kBypassed)) {
    (result.has_value() ? metrics_->hits : metrics_->misses).Increment();
  }
  return result;
}

std::vector<std::optional<CachedValue>> RedisCache::Impl::MultiGet(
    const std::vector<std::string>& keys) {
  std::vector<std::optional<CachedValue>> results(keys.size());
  if (keys.empty()) return results;
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (const std::string& key : keys) full.push_back(Key(key));
  const Outcome outcome = Run([&](Conn& conn) {
    std::vector<absl::string_view> args = {"MGET"};
    args.insert(args.end(), full.begin(), full.end());
    Reply reply = Command(conn, args);
    if (reply == nullptr) {
      const std::string error = conn.ctx->errstr;
      Drop(conn, false);
      ReportFailure("mget", error);
      return Outcome::kFailed;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != keys.size()) {
      ReportFailure("mget", IsError(reply) ? ReplyText(*reply) : "unexpected MGET reply");
      return Outcome::kFailed;
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      if (reply->element[i]->type == REDIS_REPLY_STRING) {
        results[i] = DecodeEntry(ReplyText(*reply->element[i]));
      }
    }
    return Outcome::kOk;
  });
  if (metrics_ != nullptr && (outcome == Outcome::kOk || outcome == Outcome::kBypassed)) {
    for (const auto& r : results) (r.has_value() ? metrics_->hits : metrics_->misses).Increment();
  }
  return results;
}

void RedisCache::Impl::Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl) {
  const std::string full = Key(key);
  const std::string entry = EncodeEntry(value.version, value.data);
  const std::string ttl_ms = TtlMillis(ttl);
  // While write-side work is pending the cache is not trusted, so a fill is not worth a round
  // trip; a failed fill is only counted.
  Run([&](Conn& conn) { return SetIfNewer(conn, full, entry, ttl_ms); });
}

void RedisCache::Impl::SetAfterWrite(absl::string_view key, const CachedValue& value,
                                     absl::Duration ttl) {
  Pending op;
  op.kind = Pending::Kind::kSetIfNewer;
  op.args = {Key(key), EncodeEntry(value.version, value.data), TtlMillis(ttl)};
  WriteSide(std::move(op));
}

void RedisCache::Impl::Invalidate(const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  Pending op;
  op.kind = Pending::Kind::kDelete;
  for (const std::string& key : keys) op.args.push_back(Key(key));
  WriteSide(std::move(op));
}

std::optional<int64_t> RedisCache::Impl::GetCounter(absl::string_view key) {
  std::optional<CachedValue> entry = Get(key);
  if (!entry.has_value()) return std::nullopt;
  return entry->version;
}

void RedisCache::Impl::RaiseCounter(absl::string_view key, int64_t value, bool after_write) {
  Pending op;
  op.kind = Pending::Kind::kSetIfNewer;
  op.args = {Key(key), EncodeEntry(value, ""), TtlMillis(options_.counter_ttl)};
  if (after_write) {
    WriteSide(std::move(op));
    return;
  }
  Run([&](Conn& conn) { return SetIfNewer(conn, op.args[0], op.args[1], op.args[2]); });
}

// --- RedisCache --------------------------------------------------------------------------------

RedisCache::RedisCache(RedisOptions options, metrics::CacheMetrics* metrics, Clock& clock)
    : breaker_(clock,
               CircuitBreakerOptions{options.breaker_open_interval, options.breaker_window,
                                     options.breaker_min_calls, options.breaker_failure_ratio}),
      impl_(std::make_unique<Impl>(std::move(options), metrics, breaker_, clock)) {}

RedisCache::~RedisCache() = default;

std::optional<CachedValue> RedisCache::Get(absl::string_view key) { return impl_->Get(key); }

std::vector<std::optional<CachedValue>> RedisCache::MultiGet(const std::vector<std::string>& keys) {
  return impl_->MultiGet(keys);
}

void RedisCache::Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl) {
  impl_->Fill(key, value, ttl);
}

void RedisCache::SetAfterWrite(absl::string_view key, const CachedValue& value,
                               absl::Duration ttl) {
  impl_->SetAfterWrite(key, value, ttl);
}

void RedisCache::Invalidate(const std::vector<std::string>& keys) { impl_->Invalidate(keys); }

std::optional<int64_t> RedisCache::GetCounter(absl::string_view key) {
  return impl_->GetCounter(key);
}

void RedisCache::RaiseCounter(absl::string_view key, int64_t value, bool after_write) {
  impl_->RaiseCounter(key, value, after_write);
}

size_t RedisCache::pending() const { return impl_->pending(); }

}  // namespace dangjian::cache
