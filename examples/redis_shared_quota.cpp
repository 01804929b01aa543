// Two worker processes share one daily quota through Redis, as two replicas
// of a service behind a load balancer would share an API's free tier.
//
// The example starts its own redis-server (no Docker: the Debian package,
// `apt-get install redis-server`) on a free loopback port, in a temporary
// directory, with nothing persisted, and stops it at the end. Each worker
// builds the same tracker, named "gemini-free-tier", and spends units until
// the quota refuses; together they spend exactly the limit.
//
// With a Redis of your own, the worker's code is all you need:
//
//     armor::redis_connection redis{{.host = "127.0.0.1", .port = 6379}};
//     armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(20)}},
//                                armor::system_clock{},
//                                armor::redis_quota_storage{redis, {.tracker = "gemini-free-tier"}}};
#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

constexpr std::int64_t daily_limit = 20;

std::string find_redis_server() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  std::string d;
  while (std::getline(dirs, d, ':')) {
    const auto p = std::filesystem::path(d.empty() ? "." : d) / "redis-server";
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  if (fd >= 0) ::close(fd);
  return ok ? ntohs(a.sin_port) : 0;
}

bool answers(int port) {
  redisContext* c = redisConnect("127.0.0.1", port);
  const bool up = c != nullptr && c->err == 0;
  if (c != nullptr) redisFree(c);
  return up;
}

// One replica: spends one unit per "request" until the shared quota refuses.
int worker(int id, int port) {
  armor::redis_options where;
  where.port = static_cast<std::uint16_t>(port);
  const armor::redis_connection redis{where};
  armor::quota_tracker quota{{.windows = {armor::quota_window::per_day(daily_limit)}},
                             armor::system_clock{},
                             armor::redis_quota_storage{redis, {.tracker = "gemini-free-tier"}}};
  int spent = 0;
  for (;;) {
    const armor::quota_tracker_decision<> d = quota.try_consume(1);
    if (!d) {
      std::printf("worker %d: refused (%s), %lld/%lld used today, resets in %lld min\n", id,
                  d.code().message().c_str(), static_cast<long long>(d.used()), static_cast<long long>(d.limit()),
                  static_cast<long long>(d.retry_after() / 1min));
      break;
    }
    ++spent;
    std::this_thread::sleep_for(1ms);  // the "request"
  }
  std::printf("worker %d: spent %d\n", id, spent);
  std::fflush(stdout);
  return spent;
}

}  // namespace

int main() {
  const std::string exe = find_redis_server();
  if (exe.empty()) {
    std::puts("SKIPPED: redis-server is not on PATH (Debian: apt-get install redis-server)");
    return 77;
  }
  const int port = free_loopback_port();
  const auto dir = std::filesystem::temp_directory_path() / ("armor_example_redis_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const pid_t parent = ::getpid();
  const pid_t server = ::fork();
  if (server == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the example
    if (::getppid() != parent) ::_exit(1);
    const std::string p = std::to_string(port);
    const std::string log = (dir / "redis.log").string();
    ::execl(exe.c_str(), exe.c_str(), "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", dir.c_str(), "--logfile", log.c_str(), "--daemonize", "no", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int code = 1;
  bool up = false;
  for (int i = 0; i < 500 && !(up = answers(port)); ++i) std::this_thread::sleep_for(10ms);
  if (up) {
    std::printf("redis-server on 127.0.0.1:%d; two workers share a daily quota of %lld\n", port,
                static_cast<long long>(daily_limit));
    std::fflush(stdout);
    pid_t workers[2] = {-1, -1};
    for (int w = 0; w < 2; ++w) {
      workers[w] = ::fork();
      if (workers[w] == 0) ::_exit(worker(w + 1, port));  // the exit status carries what it spent
    }
    int total = 0;
    for (const pid_t w : workers) {
      int status = 0;
      ::waitpid(w, &status, 0);
      if (WIFEXITED(status)) total += WEXITSTATUS(status);
    }
    std::printf("together: %d of %lld (%s)\n", total, static_cast<long long>(daily_limit),
                total == daily_limit ? "exactly the limit" : "WRONG");
    code = total == daily_limit ? 0 : 1;
  } else {
    std::puts("redis-server did not start");
  }
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return code;
}
