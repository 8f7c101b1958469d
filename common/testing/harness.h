// Test harness: real PostgreSQL and Redis servers on free loopback ports, in temporary folders,
// stopped by PID when the object is destroyed (also when the test fails). As root, PostgreSQL
// runs as the unprivileged user `dangjian` (created by scripts/deps.sh), since it refuses root.
// Not thread-safe: use from the test's main thread.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dangjian::testing {

// A port no one listens on right now (bound and released); callers retry on a collision.
int PickFreePort();

class PostgresServer {
 public:
  // initdb in a fresh temporary folder (fsync off), then pg_ctl start on a free port.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();  // Stop() and remove the folder

  int port() const { return port_; }
  // A libpq connection string for `database` on this server.
  std::string ConnInfo(absl::string_view database = "postgres") const;
  absl::Status CreateDatabase(absl::string_view name);
  absl::Status DropDatabase(absl::string_view name);
  // Kills every backend connected to `database` (fault tests: dropped connections) and waits, up
  // to 10 s, until their processes are gone and so their sockets closed.
  absl::Status TerminateConnections(absl::string_view database);
  void Stop();

 private:
  PostgresServer() = default;
  std::string dir_;
  int port_ = 0;
  bool running_ = false;
};

class RedisServer {
 public:
  // With a `password`, Redis requires it (requirepass, from a config file in the server's folder,
  // so it is not on the command line for `ps` to show).
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(absl::string_view password = "");
  ~RedisServer();

  int port() const { return port_; }
  const std::string& password() const { return password_; }
  // SIGKILLs the server (fault tests); Restart() brings a new, empty one up on the same port.
  void Kill();
  absl::Status Restart();
  // Sends SIGSTOP / SIGCONT: a Redis that accepts connections but never answers.
  void Pause();
  void Resume();
  bool running() const { return pid_ > 0; }

 private:
  RedisServer() = default;
  absl::Status Launch();
  std::string dir_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
bool PollUntil(const std::function<bool()>& condition, absl::Duration timeout);

}  // namespace dangjian::testing
