// Structured logging: one JSON object per line on stderr, with ts, level, service, msg and any
// fields the caller adds (method, request_id, duration_ms, ...). Thread-safe: lines from
// concurrent threads never interleave. Secrets must never be passed as fields.
// RateLimitedLog holds back lines that repeat (a failure met on every attempt while a dependency
// is down) and says how many it held back.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace dangjian::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Set once at start by main(); every line carries the service name.
void Init(std::string service, Level min_level = Level::kInfo);
// Parses "debug", "info", "warn", "error"; false for anything else.
bool ParseLevel(absl::string_view text, Level* out);

// Whether lines of `level` are written; lets a hot path skip building fields nobody reads.
bool Enabled(Level level);
void Write(Level level, absl::string_view msg, nlohmann::json fields = nlohmann::json::object());
inline void Debug(absl::string_view msg, nlohmann::json f = nlohmann::json::object()) {
  Write(Level::kDebug, msg, std::move(f));
}
inline void Info(absl::string_view msg, nlohmann::json f = nlohmann::json::object()) {
  Write(Level::kInfo, msg, std::move(f));
}
inline void Warn(absl::string_view msg, nlohmann::json f = nlohmann::json::object()) {
  Write(Level::kWarn, msg, std::move(f));
}
inline void Error(absl::string_view msg, nlohmann::json f = nlohmann::json::object()) {
  Write(Level::kError, msg, std::move(f));
}

// Writes a line the first time its message comes, then at most once per `window` for as long as
// the same message keeps coming; a written line that follows held-back ones carries
// "suppressed": how many, and "suppressed_in_s": over how long. EndRun() closes a run (the failure
// is over), so the next occurrence is written at once. Lines are told apart by their message
// only: fields (an error text, a request id) are those of the line written. Thread-safe.
class RateLimitedLog {
 public:
  static constexpr absl::Duration kDefaultWindow = absl::Seconds(10);

  explicit RateLimitedLog(absl::Duration window = kDefaultWindow, Clock& clock = RealClock::Get());

  // Writes the line or counts it; true if written.
  bool Write(Level level, absl::string_view msg, nlohmann::json fields = nlohmann::json::object());
  bool Warn(absl::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    return Write(Level::kWarn, msg, std::move(f));
  }
  bool Error(absl::string_view msg, nlohmann::json f = nlohmann::json::object()) {
    return Write(Level::kError, msg, std::move(f));
  }
  // Ends the run of `msg`: returns how many times it came since the run began (written or held
  // back; 0 when it did not), for the caller's line saying the failure is over.
  int64_t EndRun(absl::string_view msg);

 private:
  struct Run {
    absl::Time last_written;
    int64_t held_back = 0;  // since last_written
    int64_t total = 0;      // since the run began
  };
  const absl::Duration window_;
  Clock& clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Run> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dangjian::log
