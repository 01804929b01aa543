// The demo's flaky upstream: a real HTTP server on 127.0.0.1 (an ephemeral
// port, cpp-httplib) whose behaviour follows the scenario's phases.
//
// It limits each client (named by the X-Client request header) with an
// armor::token_bucket of its own and answers 429 with Retry-After and the
// RateLimit-* / X-RateLimit-* headers beyond the limit, as a public API
// does. In the throttling phase that limit drops sharply. Every answer is
// counted per client, so the demo can compare what two clients received.
//
// It serves a small set of resources, GET /api/items/N, and says how long
// an answer may be reused in Cache-Control (max-age, stale-if-error), as
// real APIs do. A client with a cache may use that; the plain one does not.
#pragma once

#include <armor/http/rate_limit.hpp>
#include <armor/token_bucket.hpp>

#include <httplib.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace demo {

/// The upstream's life, one phase after the other.
enum class phase : int { healthy = 0, failing = 1, throttling = 2, slow = 3, recovered = 4 };

inline constexpr int phase_count = 5;

/// How each phase is announced (a test looks for these names).
inline constexpr std::array<std::string_view, phase_count> phase_names = {
    "healthy", "failing (500)", "throttling (429)", "slow", "healthy again",
};

/// The upstream's clients: armor's pipeline, and a plain client without armor
/// that sends the same calls at the same times, for comparison.
enum class client : int { armor = 0, plain = 1 };
inline constexpr int client_count = 2;

/// What the upstream answered one client, counted by the server.
struct answer_counts {
  std::uint64_t requests = 0;
  std::uint64_t ok = 0;              ///< 200
  std::uint64_t server_errors = 0;   ///< 500
  std::uint64_t throttled = 0;       ///< 429 (its rate limit)
};

/// The upstream's rate limits per client.
struct upstream_limits {
  armor::rate normal{10, std::chrono::seconds{1}};
  std::int64_t normal_burst = 2;
  armor::rate throttled{2, std::chrono::seconds{1}};
  std::int64_t throttled_burst = 1;
  /// What a 200 says in Cache-Control: fresh for max_age, and usable for
  /// stale_if_error past that when the upstream fails.
  std::chrono::seconds max_age{2};
  std::chrono::seconds stale_if_error{60};
};

/// The scripted HTTP upstream. Starts listening on construction, stops on
/// stop() or destruction.
class upstream {
 public:
  explicit upstream(const upstream_limits& limits, std::uint64_t seed)
      : normal_{armor::token_bucket<>{{.rate = limits.normal, .burst = limits.normal_burst}},
                armor::token_bucket<>{{.rate = limits.normal, .burst = limits.normal_burst}}},
        throttled_{armor::token_bucket<>{{.rate = limits.throttled, .burst = limits.throttled_burst}},
                   armor::token_bucket<>{{.rate = limits.throttled, .burst = limits.throttled_burst}}},
        cache_control_("max-age=" + std::to_string(limits.max_age.count()) +
                       ", stale-if-error=" + std::to_string(limits.stale_if_error.count())),
        seed_(seed) {
    // Slow answers hold a thread each: give the server enough of them.
    server_.new_task_queue = [] { return new httplib::ThreadPool(64); };
    server_.Get(R"(/api/items/(\d+))", [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("armor demo: cannot bind a port on 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }

  upstream(const upstream&) = delete;
  upstream& operator=(const upstream&) = delete;
  ~upstream() { stop(); }

  [[nodiscard]] int port() const noexcept { return port_; }

  /// Moves the upstream to phase `p`.
  void set_phase(phase p) noexcept { phase_.store(static_cast<int>(p), std::memory_order_relaxed); }

  /// What the upstream has answered client `c` so far.
  [[nodiscard]] answer_counts counts(client c) const noexcept {
    const counters& k = counters_[static_cast<std::size_t>(c)];
    constexpr auto r = std::memory_order_relaxed;
    return {k.requests.load(r), k.ok.load(r), k.server_errors.load(r), k.throttled.load(r)};
  }

  /// Stops listening and wakes slow answers; returns when the server's
  /// threads have ended.
  void stop() {
    {
      const std::lock_guard lock(stop_mutex_);
      stopping_ = true;
    }
    stop_cv_.notify_all();
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }

 private:
  struct counters {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> ok{0};
    std::atomic<std::uint64_t> server_errors{0};
    std::atomic<std::uint64_t> throttled{0};
  };

  void serve(const httplib::Request& req, httplib::Response& res) {
    const auto c = static_cast<std::size_t>(req.get_header_value("X-Client") == "plain" ? client::plain : client::armor);
    counters& k = counters_[c];
    k.requests.fetch_add(1, std::memory_order_relaxed);
    const auto p = static_cast<phase>(phase_.load(std::memory_order_relaxed));
    // The same call gets the same answer time from both clients: the draw is
    // keyed by the call's number and attempt (X-Call, X-Attempt) when the
    // client sends them, so the comparison is of the clients, not of luck.
    const std::uint64_t key = call_key(req);

    // The rate limit comes first, whatever state the upstream is in.
    armor::token_bucket<>& bucket = p == phase::throttling ? throttled_[c] : normal_[c];
    const armor::token_bucket_decision<> d = bucket.try_acquire();
    armor::http::rate_limit_headers(d, [&](std::string_view name, std::string_view value) {
      res.set_header(std::string(name), std::string(value));
    });
    if (!d) {
      k.throttled.fetch_add(1, std::memory_order_relaxed);
      res.status = 429;
      res.set_content("rate limited\n", "text/plain");
      return;
    }

    using std::chrono::milliseconds;
    switch (p) {
      case phase::failing:
        pause(milliseconds{20});
        k.server_errors.fetch_add(1, std::memory_order_relaxed);
        res.status = 500;
        res.set_content("internal error\n", "text/plain");
        return;
      case phase::slow:
        // 1 to 2.8 s: slower than the client's slow-call threshold, and
        // sometimes slower than its deadline.
        pause(milliseconds{1000 + static_cast<int>(draw(key) % 1800)});
        break;
      case phase::healthy:
      case phase::throttling:
      case phase::recovered: pause(milliseconds{5 + static_cast<int>(draw(key) % 10)}); break;
    }
    k.ok.fetch_add(1, std::memory_order_relaxed);
    res.status = 200;
    res.set_header("Cache-Control", cache_control_);
    res.set_content("{\"id\":" + std::string(req.matches[1]) + "}\n", "application/json");
  }

  // Sleeps for `d`, or less when the server stops.
  void pause(std::chrono::milliseconds d) {
    std::unique_lock lock(stop_mutex_);
    stop_cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  // The request's X-Call and X-Attempt as one number (0 without X-Call).
  static std::uint64_t call_key(const httplib::Request& req) {
    const std::string call = req.get_header_value("X-Call");
    if (call.empty()) return 0;
    const std::string attempt = req.get_header_value("X-Attempt");
    return 1 + std::stoull(call) * 16 + (attempt.empty() ? 0 : std::stoull(attempt) % 16);
  }

  // splitmix64 over `key`, or over a shared counter when it is 0: a
  // thread-safe, seeded random number.
  std::uint64_t draw(std::uint64_t key) noexcept {
    const std::uint64_t n = key != 0 ? key : (1ULL << 62U) + draws_.fetch_add(1, std::memory_order_relaxed) + 1;
    std::uint64_t z = seed_ + 0x9e3779b97f4a7c15ULL * n;
    z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31U);
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> phase_{0};
  std::array<armor::token_bucket<>, client_count> normal_;
  std::array<armor::token_bucket<>, client_count> throttled_;
  std::array<counters, client_count> counters_{};
  std::string cache_control_;
  std::uint64_t seed_;
  std::atomic<std::uint64_t> draws_{0};
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

}  // namespace demo
