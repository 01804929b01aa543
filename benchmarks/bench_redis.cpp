// Calls per second of a quota_tracker through three storages, in one run
// (and of a token bucket the same three ways, at the end of this file):
//
//   - the memory backend (lock-free atomics in this process), and the same
//     behind armor::any_quota_storage (what the virtual call costs);
//   - the Redis backend, one script per call (one loopback round trip);
//   - the Redis backend with leases of 1000 units (a round trip per 1000
//     calls, the rest one CAS);
//
// each on one thread and on four threads sharing the tracker; then the
// tracker and the bucket on a local Redis Cluster of three primaries, built
// from a redis+cluster:// URL. The program starts its own redis-servers on
// free loopback ports in temporary directories (nothing persisted) and
// kills them at exit; without redis-server on PATH the Redis benchmarks
// report themselves skipped. Limits are so high that nothing is refused
// during a run.
#include <armor/quota_tracker.hpp>
#include <armor/redis/fixed_window.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/sliding_window.hpp>
#include <armor/redis/token_bucket.hpp>
#include <armor/storage/any.hpp>
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

#include <array>
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
#include <vector>

using namespace std::chrono_literals;
using armor::quota_window;

namespace {

constexpr std::int64_t huge = armor::quota_max_limit;

/// A redis-server of this benchmark's own, or none (then `port` is 0).
class bench_server {
 public:
  /// A cluster node (`cluster`) gets a port whose bus port (+10000) is free too.
  explicit bench_server(bool cluster = false) {
    const std::string exe = find();
    if (exe.empty()) return;
    int port = 0;
    for (int tries = 0; tries < 100 && port == 0; ++tries) {
      port = free_port();
      if (cluster && (port > 55535 || !free_port(port + 10000))) port = 0;
    }
    if (port == 0) return;
    static int made = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("armor_bench_redis_" + std::to_string(::getpid()) + "_" + std::to_string(made++));
    std::filesystem::create_directories(dir_);
    const std::string p = std::to_string(port);
    const std::string dir = dir_.string();
    const pid_t parent = ::getpid();
    const std::string log = (dir_ / "redis.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      if (cluster) {
        ::execl(exe.c_str(), exe.c_str(), "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "no", "--dir", dir.c_str(), "--logfile", log.c_str(), "--daemonize", "no", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", static_cast<char*>(nullptr));
      } else {
        ::execl(exe.c_str(), exe.c_str(), "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "no", "--dir", dir.c_str(), "--logfile", log.c_str(), "--daemonize", "no", static_cast<char*>(nullptr));
      }
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
  /// A free loopback port (0 to ask the kernel for one); 0 if none.
  static int free_port(int want = 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(want));
    socklen_t len = sizeof a;
    const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    if (fd >= 0) ::close(fd);
    return ok ? ntohs(a.sin_port) : 0;
  }

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

/// One command to 127.0.0.1:port; its reply as text (integers as numbers,
/// arrays joined by spaces), or "" when nothing answered.
std::string command(int port, const std::vector<std::string>& words) {
  const timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  std::string out;
  if (c != nullptr && c->err == 0) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const std::string& w : words) {
      argv.push_back(w.c_str());
      lens.push_back(w.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    const auto text = [](const redisReply* x) {
      if (x->type == REDIS_REPLY_INTEGER) return std::to_string(x->integer);
      if (x->str != nullptr) return std::string(x->str, x->len);
      return std::string{};
    };
    if (r != nullptr) {
      if (r->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < r->elements; ++i) out += text(r->element[i]) + ' ';
      } else {
        out = text(r);
      }
      freeReplyObject(r);
    }
  }
  if (c != nullptr) redisFree(c);
  return out;
}

/// A Redis Cluster of three primaries on loopback (no replicas), its slots
/// split as redis-cli --cluster create splits them, joined by hand (as
/// tests/redis/test_redis_cluster.cpp does); its servers die with it.
/// up() is false when redis-server is missing or the nodes did not agree.
class bench_cluster {
 public:
  bench_cluster() {
    for (auto& n : nodes_) {
      n = std::make_unique<bench_server>(true);
      if (n->port() == 0) return;
    }
    const std::array<std::pair<int, int>, 3> ranges{{{0, 5460}, {5461, 10922}, {10923, 16383}}};
    for (std::size_t i = 0; i < 3; ++i) {
      command(port(i), {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)});
      command(port(i), {"CLUSTER", "ADDSLOTSRANGE", std::to_string(ranges[i].first), std::to_string(ranges[i].second)});
    }
    for (std::size_t i = 1; i < 3; ++i) command(port(0), {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(i))});
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
      if (agreed()) {
        up_ = true;
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  [[nodiscard]] bool up() const noexcept { return up_; }
  [[nodiscard]] int port(std::size_t i) const noexcept { return nodes_[i]->port(); }
  /// The URL of the cluster, every node a seed.
  [[nodiscard]] std::string url() const {
    std::string u = "redis+cluster://";
    for (std::size_t i = 0; i < 3; ++i) {
      if (i > 0) u += ',';
      u += "127.0.0.1:";
      u += std::to_string(port(i));
    }
    return u;
  }

 private:
  [[nodiscard]] bool agreed() const {
    for (std::size_t i = 0; i < 3; ++i) {
      const std::string info = command(port(i), {"CLUSTER", "INFO"});
      if (info.find("cluster_state:ok") == std::string::npos) return false;
      if (info.find("cluster_known_nodes:3") == std::string::npos) return false;
      const std::string nodes = command(port(i), {"CLUSTER", "NODES"});
      for (std::size_t j = 0; j < 3; ++j) {
        std::string address = ":";  // appended, not "..." + string: GCC 12 -O3 -Wrestrict false positive
        address += std::to_string(port(j));
        if (nodes.find(address) == std::string::npos) return false;
      }
    }
    return true;
  }

  std::array<std::unique_ptr<bench_server>, 3> nodes_;
  bool up_ = false;
};

bench_cluster& cluster() {
  static bench_cluster c;
  return c;
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

using any_tracker = armor::quota_tracker<armor::system_clock, armor::any_quota_storage>;

// The memory backend behind any_quota_storage's virtual call.
void bm_quota_any_memory(benchmark::State& state) {
  static any_tracker tracker{{.windows = {quota_window::per_day(huge)}}, {}, armor::make_quota_storage("memory:")};
  run(state, tracker);
}
BENCHMARK(bm_quota_any_memory)->Threads(1)->Threads(4)->UseRealTime();

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

// The same trackers built from a URL, on one server and on the cluster.
void url_bench(benchmark::State& state, bool on_cluster, shared_tracker<any_tracker>& shared) {
  if (server().port() == 0 || (on_cluster && !cluster().up())) {
    state.SkipWithError("skipped: redis-server is not on PATH, or the cluster did not form");
    return;
  }
  if (state.thread_index() == 0 && !shared.tracker) {
    const std::string url = on_cluster ? cluster().url() : "redis://127.0.0.1:" + std::to_string(server().port());
    shared.tracker = std::make_unique<any_tracker>(
        armor::quota_tracker_options{.windows = {quota_window::per_day(huge)}}, armor::system_clock{},
        armor::make_quota_storage(url + "?prefix=armor-bench&connections=4",
                                  {.tracker = on_cluster ? "url-cluster" : "url-single",
                                   .backends = {armor::redis_quota_backend}}));
    shared.ready.store(true);
  }
  while (!shared.ready.load()) std::this_thread::yield();
  run(state, *shared.tracker);
}

void bm_quota_url_redis(benchmark::State& state) {
  static shared_tracker<any_tracker> shared;
  url_bench(state, false, shared);
}
BENCHMARK(bm_quota_url_redis)->Threads(1)->Threads(4)->UseRealTime();

void bm_quota_url_redis_cluster(benchmark::State& state) {
  static shared_tracker<any_tracker> shared;
  url_bench(state, true, shared);
}
BENCHMARK(bm_quota_url_redis_cluster)->Threads(1)->Threads(4)->UseRealTime();

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

void redis_bucket_bench(benchmark::State& state, std::int64_t lease, shared_tracker<redis_bucket>& shared,
                        bool on_cluster = false) {
  if (server().port() == 0 || (on_cluster && !cluster().up())) {
    state.SkipWithError("skipped: redis-server is not on PATH (Debian: apt-get install redis-server), or the cluster "
                        "did not form");
    return;
  }
  if (state.thread_index() == 0 && !shared.tracker) {
    armor::redis_options o;
    o.port = static_cast<std::uint16_t>(on_cluster ? cluster().port(0) : server().port());
    if (on_cluster) {
      o.cluster = true;
      o.seeds = {"127.0.0.1:" + std::to_string(cluster().port(1)), "127.0.0.1:" + std::to_string(cluster().port(2))};
    }
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

// A shared bucket on the cluster: one script per call, to the node that
// holds the bucket's slot (the URL's other nodes are only seeds).
void bm_bucket_redis_cluster(benchmark::State& state) {
  static shared_tracker<redis_bucket> shared;
  redis_bucket_bench(state, 0, shared, true);
}
BENCHMARK(bm_bucket_redis_cluster)->Threads(1)->Threads(4)->UseRealTime();

// ---------------------------------------------------------------------------
// The window limiters in Redis (one script per call), beside the Redis
// bucket in the same run: a fixed window, an exact sliding window of 10
// segments, the approximation. A limit of 10^12 an hour: nothing is refused.

template <class W, class Options>
void redis_window_bench(benchmark::State& state, const Options& window, const char* name,
                        shared_tracker<W>& shared) {
  if (server().port() == 0) {
    state.SkipWithError("skipped: redis-server is not on PATH (Debian: apt-get install redis-server)");
    return;
  }
  if (state.thread_index() == 0 && !shared.tracker) {
    armor::redis_options o;
    o.port = static_cast<std::uint16_t>(server().port());
    o.connections = 4;
    o.prefix = "armor-bench";
    shared.tracker = std::make_unique<W>(window, armor::redis_connection{o}, armor::redis_window_options{.name = name});
    shared.ready.store(true);
  }
  while (!shared.ready.load()) std::this_thread::yield();
  run_bucket(state, *shared.tracker);
}

void bm_window_redis_fixed(benchmark::State& state) {
  static shared_tracker<armor::redis_fixed_window<>> shared;
  redis_window_bench(state, armor::fixed_window_options{.limit = 1'000'000'000'000, .window = 1h}, "fixed", shared);
}
BENCHMARK(bm_window_redis_fixed)->Threads(1)->Threads(4)->UseRealTime();

void bm_window_redis_exact(benchmark::State& state) {
  static shared_tracker<armor::redis_sliding_window<>> shared;
  redis_window_bench(state, armor::sliding_window_options{.limit = 1'000'000'000'000, .window = 1h, .segments = 10},
                     "exact", shared);
}
BENCHMARK(bm_window_redis_exact)->Threads(1)->Threads(4)->UseRealTime();

void bm_window_redis_approximate(benchmark::State& state) {
  static shared_tracker<armor::redis_sliding_window<>> shared;
  redis_window_bench(state,
                     armor::sliding_window_options{.limit = 1'000'000'000'000,
                                                   .window = 1h,
                                                   .algorithm = armor::sliding_window_algorithm::approximate},
                     "approximate", shared);
}
BENCHMARK(bm_window_redis_approximate)->Threads(1)->Threads(4)->UseRealTime();

}  // namespace
