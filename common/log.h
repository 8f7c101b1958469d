// Structured logging: one JSON object per line on stderr, with ts, level, service, msg and any
// fields the caller adds (method, request_id, duration_ms, ...). Thread-safe: lines from
// concurrent threads never interleave. Secrets must never be passed as fields.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/string_view.h"

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

}  // namespace dangjian::log
