// A redis-server of the tests' own: started on 127.0.0.1 and a free port,
// in a temporary directory, with nothing persisted (--save '' --appendonly
// no); killed and the directory removed by the destructor, also when a test
// fails. It dies with the test process (PR_SET_PDEATHSIG) if that crashes.
//
// Without redis-server on PATH the whole executable exits with 77 before
// any test runs, which CTest reports as skipped (SKIP_RETURN_CODE), never as
// passed.
#pragma once

#include <hiredis/hiredis.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace armor_test {

/// The path of redis-server, or "" when it is not on PATH.
inline std::string redis_server_path() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path p = std::filesystem::path(dir.empty() ? "." : dir) / "redis-server";
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

/// Every Redis test file starts with this: the whole binary is skipped
/// (exit code 77, which CTest reports as skipped) when redis-server is
/// not on PATH.
inline bool require_redis_server() {
  if (redis_server_path().empty()) {
    std::puts("SKIPPED: redis-server is not on PATH (Debian: apt-get install redis-server)");
    std::fflush(stdout);
    std::_Exit(77);
  }
  return true;
}

/// One command on 127.0.0.1:port; its reply as text ("(error) ..." for an
/// error, the number for an integer, "" for nil, elements joined by ' ',
/// "(no connection)" or "(no reply)"), waiting at most `timeout`.
inline std::string redis_command(int port, const std::vector<std::string>& words,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
  const timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  std::string out = "(no connection)";
  if (c != nullptr && c->err == 0) {
    redisSetTimeout(c, tv);
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const std::string& w : words) {
      argv.push_back(w.data());
      lens.push_back(w.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    const auto text = [](const redisReply* x) -> std::string {
      switch (x->type) {
        case REDIS_REPLY_INTEGER: return std::to_string(x->integer);
        case REDIS_REPLY_ERROR: return "(error) " + std::string(x->str, x->len);
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS: return std::string(x->str, x->len);
        default: return {};
      }
    };
    if (r == nullptr) {
      out = "(no reply)";
    } else if (r->type == REDIS_REPLY_ARRAY) {
      out.clear();
      for (std::size_t i = 0; i < r->elements; ++i) {
        if (i > 0) out += ' ';
        out += text(r->element[i]);
      }
    } else {
      out = text(r);
    }
    if (r != nullptr) freeReplyObject(r);
  }
  if (c != nullptr) redisFree(c);
  return out;
}

/// A loopback port nobody listens on now.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("free_port: cannot bind a loopback socket");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

/// True when nobody listens on loopback `port` now.
inline bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

/// A port for a cluster node: free, and so is its cluster bus port
/// (port + 10000, which must stay below 65536).
inline int free_cluster_port() {
  for (int i = 0; i < 200; ++i) {
    const int p = free_port();
    if (p + 10000 <= 65535 && port_free(p + 10000)) return p;
  }
  throw std::runtime_error("free_cluster_port: no port p with p + 10000 free");
}

class redis_server {
 public:
  /// `extra`: more arguments for redis-server (`--cluster-enabled yes`, ...).
  /// A node of a Redis Cluster gets a port whose bus port (+10000) is free.
  explicit redis_server(std::vector<std::string> extra = {})
      : port_(extra.empty() ? free_port() : free_cluster_port()), extra_(std::move(extra)) {
    static int n = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("armor_redis_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::create_directories(dir_);
    start();
  }
  ~redis_server() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }

  /// Starts the server (again, on the same port) and waits until it answers
  /// PING as this process: a server of another test that took the port
  /// between free_port() and our bind would answer PING too, so the answer
  /// must carry our child's process id. If the child exits at once (the
  /// port was taken), the first start picks another port, up to four times.
  void start() {
    if (pid_ > 0) return;
    for (int attempt = 0;; ++attempt) {
      if (launch_and_wait()) {
        started_ = true;
        return;
      }
      if (started_ || attempt == 4) break;
      port_ = extra_.empty() ? free_port() : free_cluster_port();
    }
    throw std::runtime_error("redis_server: redis-server did not answer on port " + std::to_string(port_) +
                             " (log: " + (dir_ / "redis.log").string() + ")");
  }

  /// kill -9, and reaps it.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  void stop() { kill(); }
  /// Freezes it (SIGSTOP): connections are accepted by the kernel, nothing answers.
  void pause() const {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
  }
  void resume() const {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

  /// True when the server answers PING.
  [[nodiscard]] bool ping() const {
    const timeval tv{0, 200'000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    bool ok = false;
    if (c != nullptr && c->err == 0) {
      redisSetTimeout(c, tv);
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
      if (r != nullptr) freeReplyObject(r);
    }
    if (c != nullptr) redisFree(c);
    return ok;
  }

  /// Runs a command (printf-style, as redisCommand) and returns its integer
  /// reply, or -1.
  template <class... A>
  long long integer(const char* fmt, A... args) const {
    const timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    long long v = -1;
    if (c != nullptr && c->err == 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, fmt, args...));
      if (r != nullptr && r->type == REDIS_REPLY_INTEGER) v = r->integer;
      if (r != nullptr) freeReplyObject(r);
    }
    if (c != nullptr) redisFree(c);
    return v;
  }

 private:
  // Forks redis-server on port_ and waits up to 10 s for it to answer as
  // itself; false (child reaped) if it exited or never answered.
  bool launch_and_wait() {
    const std::string exe = redis_server_path();
    const std::string port = std::to_string(port_);
    const std::string dir = dir_.string();
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("redis_server: fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      const std::string log = (dir_ / "redis.log").string();
      std::vector<const char*> argv{exe.c_str(), "--port",      port.c_str(), "--bind",    "127.0.0.1",
                                    "--save",    "",            "--appendonly", "no",        "--dir",
                                    dir.c_str(), "--logfile",   log.c_str(),  "--daemonize", "no"};
      for (const std::string& a : extra_) argv.push_back(a.c_str());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: bind failed, most likely
        pid_ = -1;
        return false;
      }
      if (answers_as_child()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    stop();
    return false;
  }

  // True when the server on port_ answers INFO with our child's process id.
  [[nodiscard]] bool answers_as_child() const {
    const std::string info = redis_command(port_, {"INFO", "server"}, std::chrono::milliseconds{200});
    return info.find("process_id:" + std::to_string(pid_) + "\r") != std::string::npos;
  }

  bool started_ = false;
  int port_;
  std::vector<std::string> extra_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

/// One server shared by the tests that do not stop theirs.
inline redis_server& shared_redis() {
  static redis_server s;
  return s;
}

}  // namespace armor_test
