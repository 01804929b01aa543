// Calls per second of a quota_tracker through three storages, in one run
// (and of a token bucket the same three ways, at the end of this file):
//
//   - the memory backend (lock-free atomics in this process);
//   - the Redis backend, one script per call (one loopback round trip);
//   - the Redis backend with leases of 1000 units (a round trip per 1000
//     calls, the rest one CAS);
//
// each on one thread and on four threads sharing the tracker. The program
// starts its own redis-server on a free loopback port in a temporary
// directory (nothing persisted) and kills it at exit; without redis-server
// on PATH the Redis benchmarks report themselves skipped. Limits are so high
// that nothing is refused during a run.
#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/token_bucket.hpp>
#include <armor/token_bucket.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using armor::quota_window;

namespace {

constexpr std::int64_t huge = armor::quota_max_limit;

/// A redis-server of this benchmark's own, or none (then `port` is 0).
class bench_server {
 public:
  bench_server() {
    const std::string exe = find();
    if (exe.empty()) return;
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    const int port = ntohs(a.sin_port);
    dir_ = std::filesystem::temp_directory_path() / ("armor_bench_redis_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string p = std::to_string(port);
    const std::string dir = dir_.string();
    const pid_t parent = ::getpid();
    const std::string log = (dir_ / "redis.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::execl(exe.c_str(), exe.c_str(), "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
              "no", "--dir", dir.c_str(), "--logfile", log.c_str(), "--daemonize", "no", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500 && pid_ > 0; ++i) {
      redisContext* c = redisConnect("127.0.0.1", port);
      const bool up = c != nullptr && c->err == 0;
      if (c != nullptr) redisFree(c);
      if (up) {
        port_ = port;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
  }
  ~bench_server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  bench_server(const bench_server&) = delete;
  bench_server& operator=(const bench_server&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }

 private:
  static std::string find() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "");
    std::string d;
    while (std::getline(dirs, d, ':')) {
      const auto p = std::filesystem::path(d.empty() ? "." : d) / "redis-server";
      if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
    return {};
  }

  pid_t pid_ = -1;
  int port_ = 0;
  std::filesystem::path dir_;
};

bench_server& server() {
  static bench_server s;
  return s;
}

using redis_tracker = armor::quota_tracker<armor::system_clock, armor::redis_quota_storage>;

/// One tracker per benchmark, shared by its threads (made by thread 0).
template <class Tracker>
struct shared_tracker {
  std::unique_ptr<Tracker> tracker;
  std::atomic<bool> ready{false};
};

void run(benchmark::State& state, auto& tracker) {
  std::int64_t refused = 0;
  for (auto _ : state) {
    const auto d = tracker.try_consume(1);
    refused += d ? 0 : 1;
    benchmark::DoNotOptimize(d);
  }
  if (refused > 0) state.SkipWithError("a consumption was refused");
}

void bm_quota_memory(benchmark::State& state) {
  static armor::quota_tracker tracker{{.windows = {quota_window::per_day(huge)}}};
  run(state, tracker);
}
BENCHMARK(bm_quota_memory)->Threads(1)->Threads(4)->UseRealTime();

void redis_bench(benchmark::State& state, std::int64_t lease, shared_tracker<redis_tracker>& shared) {
  if (server().port() == 0) {
    state.SkipWithError("skipped: redis-server is not on PATH (Debian: apt-get install redis-server)");
    return;
  }
  if (state.thread_index() == 0 && !shared.tracker) {
    armor::redis_options o;
    o.port = static_cast<std::uint16_t>(server().port());
    o.connections = 4;
    o.prefix = "armor-bench";
    shared.tracker = std::make_unique<redis_tracker>(
        armor::quota_tracker_options{.windows = {quota_window::per_day(huge)}}, armor::system_clock{},
        armor::redis_quota_storage{armor::redis_connection{o},
                                   {.tracker = "bench-" + std::to_string(lease), .lease = lease}});
    shared.ready.store(true);
  }
  while (!shared.ready.load()) std::this_thread::yield();
  run(state, *shared.tracker);
}

void bm_quota_redis(benchmark::State& state) {
  static shared_tracker<redis_tracker> shared;
  redis_bench(state, 0, shared);
}
BENCHMARK(bm_quota_redis)->Threads(1)->Threads(4)->UseRealTime();

void bm_quota_redis_lease(benchmark::State& state) {
  static shared_tracker<redis_tracker> shared;
  redis_bench(state, 1000, shared);
}
BENCHMARK(bm_quota_redis_lease)->Threads(1)->Threads(4)->UseRealTime();

// ---------------------------------------------------------------------------
// The token bucket: armor::token_bucket in memory, armor::redis_token_bucket
// (one script per call), and the Redis bucket with leases of 1000 tokens
// (served for up to a second: at this rate 1000 intervals are a microsecond).
// One token per nanosecond and a huge burst: nothing is refused.

const armor::token_bucket_options open_bucket{.rate = {1, std::chrono::nanoseconds{1}}, .burst = 1'000'000'000'000};

void run_bucket(benchmark::State& state, auto& bucket) {
  std::int64_t refused = 0;
  for (auto _ : state) {
    const auto d = bucket.try_acquire(1);
    refused += d ? 0 : 1;
    benchmark::DoNotOptimize(d);
  }
  if (refused > 0) state.SkipWithError("an acquisition was refused");
}

void bm_bucket_memory(benchmark::State& state) {
  static armor::token_bucket<> bucket{open_bucket};
  run_bucket(state, bucket);
}
BENCHMARK(bm_bucket_memory)->Threads(1)->Threads(4)->UseRealTime();

using redis_bucket = armor::redis_token_bucket<>;

void redis_bucket_bench(benchmark::State& state, std::int64_t lease, shared_tracker<redis_bucket>& shared) {
  if (server().port() == 0) {
    state.SkipWithError("skipped: redis-server is not on PATH (Debian: apt-get install redis-server)");
    return;
  }
  if (state.thread_index() == 0 && !shared.tracker) {
    armor::redis_options o;
    o.port = static_cast<std::uint16_t>(server().port());
    o.connections = 4;
    o.prefix = "armor-bench";
    shared.tracker = std::make_unique<redis_bucket>(
        open_bucket, armor::redis_connection{o},
        armor::redis_token_bucket_options{.name = "bucket-" + std::to_string(lease), .lease = lease, .lease_ttl = 1s});
    shared.ready.store(true);
  }
  while (!shared.ready.load()) std::this_thread::yield();
  run_bucket(state, *shared.tracker);
}

void bm_bucket_redis(benchmark::State& state) {
  static shared_tracker<redis_bucket> shared;
  redis_bucket_bench(state, 0, shared);
}
BENCHMARK(bm_bucket_redis)->Threads(1)->Threads(4)->UseRealTime();

void bm_bucket_redis_lease(benchmark::State& state) {
  static shared_tracker<redis_bucket> shared;
  redis_bucket_bench(state, 1000, shared);
}
BENCHMARK(bm_bucket_redis_lease)->Threads(1)->Threads(4)->UseRealTime();

}  // namespace
