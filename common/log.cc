#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dangjian::log {
namespace {

struct State {
  std::mutex mu;
  std::string service = "dangjian";
  std::atomic<Level> min_level{Level::kInfo};
};

State& GetState() {
  static State* const kState = new State;
  return *kState;
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void Init(std::string service, Level min_level) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.service = std::move(service);
  s.min_level.store(min_level);
}

bool ParseLevel(absl::string_view text, Level* out) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (text == LevelName(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

bool Enabled(Level level) { return level >= GetState().min_level.load(); }

void Write(Level level, absl::string_view msg, nlohmann::json fields) {
  if (!Enabled(level)) return;
  State& s = GetState();
  std::string service;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    service = s.service;
  }
  // Every line starts ts, level, service, msg (easy to scan by eye and by grep), then the
  // caller's fields. Invalid UTF-8 from a caller is replaced rather than thrown on.
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
  auto dump = [&](const nlohmann::json& value) { return value.dump(-1, ' ', false, kReplace); };
  std::string text = "{\"ts\":";
  text += dump(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()));
  text += ",\"level\":\"";
  text += LevelName(level);
  text += "\",\"service\":";
  text += dump(service);
  text += ",\"msg\":";
  text += dump(std::string(msg));
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) {
      text += ',';
      text += dump(key);
      text += ':';
      text += dump(value);
    }
  }
  text += "}\n";
  std::lock_guard<std::mutex> lock(s.mu);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

RateLimitedLog::RateLimitedLog(absl::Duration window, Clock& clock)
    : window_(window), clock_(clock) {}

bool RateLimitedLog::Write(Level level, absl::string_view msg, nlohmann::json fields) {
  const absl::Time now = clock_.Now();
  int64_t held_back = 0;
  absl::Duration since;
  {
    absl::MutexLock lock(&mu_);
    Run& run = runs_[msg];
    if (run.total++ > 0 && now - run.last_written < window_) {
      ++run.held_back;
      return false;
    }
    held_back = std::exchange(run.held_back, 0);
    since = now - run.last_written;
    run.last_written = now;
  }
  if (held_back > 0 && fields.is_object()) {
    fields["suppressed"] = held_back;
    fields["suppressed_in_s"] = absl::ToDoubleSeconds(since);
  }
  log::Write(level, msg, std::move(fields));  // the free function, not this member
  return true;
}

int64_t RateLimitedLog::EndRun(absl::string_view msg) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(msg);
  if (it == runs_.end()) return 0;
  const int64_t total = it->second.total;
  runs_.erase(it);
  return total;
}

}  // namespace dangjian::log
