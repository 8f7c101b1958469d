#include "common/log.h"

#include <cstdio>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dangjian::log {
namespace {

struct State {
  std::mutex mu;
  std::string service = "dangjian";
  Level min_level = Level::kInfo;
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
  s.min_level = min_level;
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

void Write(Level level, absl::string_view msg, nlohmann::json fields) {
  State& s = GetState();
  std::string service;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (level < s.min_level) return;
    service = s.service;
  }
  // Ordered, so every line starts ts, level, service, msg: easy to scan by eye and by grep.
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = LevelName(level);
  line["service"] = std::move(service);
  line["msg"] = std::string(msg);
  if (fields.is_object()) {
    for (auto& [key, value] : fields.items()) line[key] = nlohmann::ordered_json(std::move(value));
  }
  // Invalid UTF-8 from a caller is replaced rather than thrown on.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  std::lock_guard<std::mutex> lock(s.mu);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace dangjian::log
