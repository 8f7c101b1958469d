// The cache in front of PostgreSQL reads (cache-aside, with versioned entries).
//
// Entries carry the version of the row they were read from. SetIfNewer() stores an entry only
// if Redis holds none or an older version (one Lua script, atomic in Redis), so a reader that
// loaded an old row before a write committed can never overwrite the writer's newer entry.
// Counters (e.g. a service's change-feed revision) only ever rise (RaiseCounter). Every entry
// expires (a counter some time after it last rose); an entry found without a TTL was not written
// by us and is overwritten by the next write.
//
// A Redis failure never fails a request: it is counted, logged, and reads fall through to
// PostgreSQL. A write-side operation (SetIfNewer after a commit, Invalidate, RaiseCounter) that
// fails is remembered; until it has been replayed on a healthy Redis, every read bypasses the
// cache, so no read after a successful write can return the old value.
// Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dangjian::cache {

struct CachedValue {
  int64_t version = 0;
  std::string data;
  bool operator==(const CachedValue& o) const { return version == o.version && data == o.data; }
};

class Cache {
 public:
  virtual ~Cache() = default;
  // nullopt on a miss, an error, an open breaker, or while write-side operations are pending.
  virtual std::optional<CachedValue> Get(absl::string_view key) = 0;
  // What this process holds of `key` without any I/O (an in-process tier, see near_cache.h), for
  // callers that must not block; nullopt when there is no such tier or it cannot vouch for `key`.
  virtual std::optional<CachedValue> GetLocal(absl::string_view) { return std::nullopt; }
  // One round trip; the result has keys.size() entries.
  virtual std::vector<std::optional<CachedValue>> MultiGet(
      const std::vector<std::string>& keys) = 0;
  // Read fill: best effort, failures only counted.
  virtual void Fill(absl::string_view key, const CachedValue& value, absl::Duration ttl) = 0;
  // After a commit: like Fill, but a failure is remembered and replayed.
  virtual void SetAfterWrite(absl::string_view key, const CachedValue& value,
                             absl::Duration ttl) = 0;
  // After a commit: deletes keys; a failure is remembered and replayed.
  virtual void Invalidate(const std::vector<std::string>& keys) = 0;
  virtual std::optional<int64_t> GetCounter(absl::string_view key) = 0;
  // Sets the counter to `value` if it is absent or lower. `after_write` failures are remembered
  // and replayed, like SetAfterWrite.
  virtual void RaiseCounter(absl::string_view key, int64_t value, bool after_write) = 0;
};

// A cache that holds nothing (Redis not configured): every read misses.
class NullCache final : public Cache {
 public:
  std::optional<CachedValue> Get(absl::string_view) override { return std::nullopt; }
  std::vector<std::optional<CachedValue>> MultiGet(const std::vector<std::string>& keys) override {
    return std::vector<std::optional<CachedValue>>(keys.size());
  }
  void Fill(absl::string_view, const CachedValue&, absl::Duration) override {}
  void SetAfterWrite(absl::string_view, const CachedValue&, absl::Duration) override {}
  void Invalidate(const std::vector<std::string>&) override {}
  std::optional<int64_t> GetCounter(absl::string_view) override { return std::nullopt; }
  void RaiseCounter(absl::string_view, int64_t, bool) override {}
};

}  // namespace dangjian::cache
