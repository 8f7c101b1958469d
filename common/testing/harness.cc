#include "common/testing/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace dangjian::testing {
namespace {

constexpr char kPgBin[] = "/usr/lib/postgresql/15/bin";
constexpr char kServerUser[] = "dangjian";

// Runs argv (as `user` when we are root and `user` is set), waits, returns the exit status and
// captures combined output into *output.
absl::Status RunCommand(const std::vector<std::string>& argv, bool as_server_user,
                        std::string* output = nullptr) {
  std::vector<std::string> full;
  if (as_server_user && geteuid() == 0) {
    full = {"/usr/sbin/runuser", "-u", kServerUser, "--"};
  }
  full.insert(full.end(), argv.begin(), argv.end());
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    std::vector<char*> args;
    for (std::string& a : full) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (output != nullptr) *output = out;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(full[0], " ", argv[0], " failed: ", out));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MakeTempDir(absl::string_view prefix) {
  std::string pattern = absl::StrCat("/tmp/", prefix, "-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  if (geteuid() == 0) {
    struct passwd* pw = getpwnam(kServerUser);
    if (pw == nullptr) {
      return absl::FailedPreconditionError(
          "user 'dangjian' is missing: run scripts/deps.sh as root first");
    }
    if (chown(pattern.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::InternalError("chown of the temporary folder failed");
    }
  }
  return pattern;
}

bool CanConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool PollUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

// --- PostgreSQL ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> server(new PostgresServer);
  auto dir = MakeTempDir("dj-pg");
  if (!dir.ok()) return dir.status();
  server->dir_ = *dir;
  const std::string data = server->dir_ + "/data";
  absl::Status st = RunCommand({absl::StrCat(kPgBin, "/initdb"), "-D", data, "-A", "trust", "-U",
                                "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"},
                               /*as_server_user=*/true);
  if (!st.ok()) return st;
  // A free port can be taken between our probe and the server's bind: retry a few times.
  for (int attempt = 0; attempt < 5; ++attempt) {
    server->port_ = PickFreePort();
    const std::string opts =
        absl::StrCat("-p ", server->port_, " -k ", server->dir_,
                     " -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
                     " -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB");
    st = RunCommand({absl::StrCat(kPgBin, "/pg_ctl"), "-D", data, "-l", server->dir_ + "/log", "-o",
                     opts, "-w", "-t", "60", "start"},
                    true);
    if (st.ok()) {
      server->running_ = true;
      return server;
    }
  }
  return st;
}

PostgresServer::~PostgresServer() {
  Stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void PostgresServer::Stop() {
  if (!running_) return;
  running_ = false;
  (void)RunCommand(
      {absl::StrCat(kPgBin, "/pg_ctl"), "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"},
      true);
}

std::string PostgresServer::ConnInfo(absl::string_view database) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=postgres dbname=", database,
                      " connect_timeout=5");
}

namespace {
absl::Status Psql(const PostgresServer& server, const std::string& sql) {
  return RunCommand({"/usr/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                     server.ConnInfo("postgres"), "-c", sql},
                    false);
}
}  // namespace

absl::Status PostgresServer::CreateDatabase(absl::string_view name) {
  return Psql(*this, absl::StrCat("CREATE DATABASE \"", name, "\""));
}

absl::Status PostgresServer::DropDatabase(absl::string_view name) {
  return Psql(*this, absl::StrCat("DROP DATABASE IF EXISTS \"", name, "\" WITH (FORCE)"));
}

absl::Status PostgresServer::TerminateConnections(absl::string_view database) {
  // The timeout (ms) makes PostgreSQL wait until each backend process is gone, so its socket is
  // closed and the client can see it; without it the backend may still be between leaving
  // pg_stat_activity and closing the socket when the test goes on.
  return Psql(*this, absl::StrCat("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                                  "WHERE datname = '",
                                  database, "' AND pid <> pg_backend_pid()"));
}

// --- Redis ----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(absl::string_view password) {
  std::unique_ptr<RedisServer> server(new RedisServer);
  auto dir = MakeTempDir("dj-redis");
  if (!dir.ok()) return dir.status();
  server->dir_ = *dir;
  server->password_ = std::string(password);
  {
    // Always written (empty without a password), so Launch() has one command line.
    const std::string conf = server->dir_ + "/redis.conf";
    std::ofstream out(conf, std::ios::trunc);
    if (!password.empty()) out << "requirepass \"" << password << "\"\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", conf));
    std::filesystem::permissions(
        conf, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  absl::Status st;
  for (int attempt = 0; attempt < 5; ++attempt) {
    server->port_ = PickFreePort();
    st = server->Launch();
    if (st.ok()) return server;
  }
  return st;
}

absl::Status RedisServer::Launch() {
  const std::string port = std::to_string(port_);
  const std::string log = dir_ + "/redis.log";
  const std::string conf = dir_ + "/redis.conf";
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execl("/usr/bin/redis-server", "redis-server", conf.c_str(), "--port", port.c_str(), "--bind",
          "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir",
          dir_.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  const bool up = PollUntil(
      [&] {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;  // exited (port taken?)
          return true;
        }
        return CanConnect(port_);
      },
      absl::Seconds(10));
  if (pid_ < 0 || !up) {
    Kill();
    return absl::UnavailableError(absl::StrCat("redis-server did not start on port ", port_));
  }
  return absl::OkStatus();
}

RedisServer::~RedisServer() {
  Kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);  // in case it was paused
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status RedisServer::Restart() {
  Kill();
  // The kernel may need a moment to release the port; Launch() polls for the new server.
  absl::Status st;
  for (int attempt = 0; attempt < 20; ++attempt) {
    st = Launch();
    if (st.ok()) return st;
  }
  return st;
}

void RedisServer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

}  // namespace dangjian::testing
