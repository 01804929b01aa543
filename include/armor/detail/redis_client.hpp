// armor/detail/redis_client.hpp: armor's connection to Redis. Not API:
// armor::redis_connection (armor/storage/redis.hpp) is the public face.
//
// A small pool of hiredis connections (synchronous API), each behind its own
// std::mutex, and one armor::circuit_breaker in front of them all:
//
//   - every call first asks the breaker; an open breaker refuses at once,
//     with no network I/O (a dead Redis costs one fast refusal per call);
//   - a call takes a free connection (try_lock round the pool), or waits
//     for one at most command_timeout, then gives up;
//   - a connection that is missing or broken is (re)made on the spot, with
//     connect_timeout, and its scripts are loaded again (SCRIPT LOAD);
//   - the script runs with EVALSHA; a NOSCRIPT answer (Redis restarted, or
//     SCRIPT FLUSH) falls back to EVAL, which caches it again;
//   - a reply that does not arrive within command_timeout, an I/O error or
//     an error reply is a failure: the connection is dropped (a late reply
//     would answer the wrong command) and the breaker records it.
//
// So a call costs at most command_timeout waiting for a connection, plus
// connect_timeout to reconnect (and as much again per script to load), plus
// command_timeout for the reply; an open breaker makes it a few nanoseconds.
//
// A call may also carry a deadline (a std::chrono::steady_clock instant: what
// a pipeline call has left, see redis_until): then every step of it (the
// pool wait, the connect, each command) waits at most until the deadline,
// when that comes before the step's own timeout, so the call ends by
// min(its bounds above, the deadline). A call whose deadline has passed
// sends nothing and asks nothing of the breaker. A call that the deadline
// cut short is redis_status::deadline; its breaker permit goes back
// unsettled (the caller's deadline says nothing of Redis), but the
// connection is dropped all the same (a late reply would answer the wrong
// command). Each command whose limit the deadline shortens costs one
// redisSetTimeout (two setsockopt calls); the next command restores it.
//
// Allocation: hiredis allocates the command buffer and the reply; the
// arguments are formatted on the stack.
#pragma once

#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/error.hpp>
#include <armor/verdict.hpp>

#include <hiredis/hiredis.h>

#include <sys/time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace armor {

/// How to reach Redis. An aggregate: `{.host = "10.0.0.5", .port = 6379}`.
struct redis_options {
  /// Host name or IPv4/IPv6 address; with port == 0, a Unix socket path.
  std::string host = "127.0.0.1";
  /// TCP port; 0 to use `host` as a Unix socket path.
  std::uint16_t port = 6379;
  /// Sent with AUTH after connecting, when not empty.
  std::string password{};
  /// Prepended to every key armor writes (no '{' or '}': armor adds the
  /// hash tags itself).
  std::string prefix = "armor";
  /// How long one connection attempt may take; > 0.
  std::chrono::milliseconds connect_timeout{250};
  /// How long a reply may take (and a call may wait for a free connection); > 0.
  std::chrono::milliseconds command_timeout{100};
  /// Connections in the pool, in [1, 64]; each is used by one call at a time.
  std::size_t connections = 2;
  /// The breaker in front of the connections: after `failure_threshold`
  /// consecutive failures it refuses calls for `open_for`, then lets one
  /// probe through (which reconnects).
  circuit_breaker_options breaker{.failure_threshold = 3, .open_for = std::chrono::seconds{1}};
};

/// Counters of a redis_connection, since it was made.
struct redis_connection_stats {
  std::uint64_t calls = 0;              ///< scripts run to an answer
  std::uint64_t failures = 0;           ///< calls that failed (I/O, timeout, error reply, no connection)
  std::uint64_t breaker_rejections = 0; ///< calls the open breaker refused without touching the network
  std::uint64_t pool_timeouts = 0;      ///< calls that found no free connection within command_timeout
  std::uint64_t connects = 0;           ///< connections made (the first ones and every reconnection)
  std::uint64_t script_reloads = 0;     ///< NOSCRIPT answers handled by EVAL
  std::uint64_t deadline_exceeded = 0;  ///< calls the caller's deadline ended (or found out of time) before an answer
};

namespace detail {

/// Why a call got no answer.
enum class redis_status : std::uint8_t { ok, breaker_open, pool_busy, failed, deadline };

/// When a call must end: a steady_clock instant; max() for none.
using redis_deadline = std::chrono::steady_clock::time_point;
inline constexpr redis_deadline redis_no_deadline = redis_deadline::max();

/// The deadline of a call with `left` to go (a context's remaining());
/// nanoseconds::max() (no deadline) reads no clock.
[[nodiscard]] inline redis_deadline redis_until(std::chrono::nanoseconds left) noexcept {
  if (left == std::chrono::nanoseconds::max()) return redis_no_deadline;
  const auto now = std::chrono::steady_clock::now();
  const auto room = redis_no_deadline - now;  // saturate rather than overflow
  if (left >= room) return redis_no_deadline - std::chrono::nanoseconds{1};
  return now + std::chrono::duration_cast<redis_deadline::duration>(left);
}

struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

/// A script's answer: the reply (an array or integer), or why there is none.
struct redis_answer {
  redis_status status = redis_status::failed;
  redis_reply_ptr reply;
  [[nodiscard]] explicit operator bool() const noexcept { return status == redis_status::ok; }
};

/// The body of a script, prelude included.
[[nodiscard]] inline const std::string& redis_script_body(redis_script id) {
  static const std::array<std::string, static_cast<std::size_t>(redis_script::count)> bodies = [] {
    std::array<std::string, static_cast<std::size_t>(redis_script::count)> b;
    const auto with_prelude = [](std::string_view s) {
      std::string out(redis_lua_prelude);
      out += s;
      return out;
    };
    b[static_cast<std::size_t>(redis_script::quota_consume)] = with_prelude(redis_lua_quota_consume);
    b[static_cast<std::size_t>(redis_script::quota_release)] = with_prelude(redis_lua_quota_release);
    b[static_cast<std::size_t>(redis_script::quota_read)] = with_prelude(redis_lua_quota_read);
    const auto bucket = [&](std::string_view s) { return with_prelude(std::string(redis_lua_bucket_prelude) += s); };
    b[static_cast<std::size_t>(redis_script::bucket_acquire)] = bucket(redis_lua_bucket_acquire);
    b[static_cast<std::size_t>(redis_script::bucket_return)] = bucket(redis_lua_bucket_return);
    b[static_cast<std::size_t>(redis_script::bucket_configure)] = bucket(redis_lua_bucket_configure);
    return b;
  }();
  return bodies[static_cast<std::size_t>(id)];
}

/// Formats integers into one stack buffer and hands out views of them.
class redis_args {
 public:
  static constexpr std::size_t max_args = 96;

  void add(std::string_view s) noexcept {
    if (count_ < max_args) views_[count_++] = s;
    else overflow_ = true;
  }
  void add(std::int64_t v) noexcept {
    char* at = buf_.data() + used_;
    const auto [end, ec] = std::to_chars(at, buf_.data() + buf_.size(), v);
    if (ec != std::errc{}) {
      overflow_ = true;
      return;
    }
    used_ = static_cast<std::size_t>(end - buf_.data());
    add(std::string_view(at, static_cast<std::size_t>(end - at)));
  }
  [[nodiscard]] std::span<const std::string_view> views() const noexcept { return {views_.data(), count_}; }
  [[nodiscard]] bool overflow() const noexcept { return overflow_; }

 private:
  std::array<char, max_args * 21> buf_;
  std::array<std::string_view, max_args> views_;
  std::size_t used_ = 0;
  std::size_t count_ = 0;
  bool overflow_ = false;
};

/// Locks `m` if it frees up within `limit`. Polls try_lock() with short
/// sleeps rather than std::timed_mutex::try_lock_for, which ThreadSanitizer
/// (GCC 12) cannot follow (pthread_mutex_clocklock is not intercepted). Off
/// the hot path: only a call that finds every connection busy waits here.
[[nodiscard]] inline bool redis_lock_within(std::mutex& m, std::chrono::nanoseconds limit) noexcept {
  if (m.try_lock()) return true;
  if (limit <= std::chrono::nanoseconds::zero()) return false;
  const auto until = std::chrono::steady_clock::now() + limit;
  auto pause = std::chrono::microseconds{20};
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(pause);
    if (m.try_lock()) return true;
    pause = std::min(pause * 2, std::chrono::microseconds{1000});
  }
  return false;
}

/// The shorter of `limit` and the time left until `until` (zero or less:
/// none left); `cut` says whether the deadline was the shorter.
[[nodiscard]] inline std::chrono::nanoseconds redis_limit(std::chrono::nanoseconds limit, redis_deadline until,
                                                          bool& cut) noexcept {
  cut = false;
  if (until == redis_no_deadline) return limit;
  const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
  if (left < limit) {
    cut = true;
    return left;
  }
  return limit;
}

/// Locks `m` if it frees up within `limit` and before `until`; `cut` says
/// whether the deadline ended the wait (or left none).
[[nodiscard]] inline bool redis_lock_until(std::mutex& m, std::chrono::nanoseconds limit, redis_deadline until,
                                           bool& cut) noexcept {
  cut = false;
  if (until == redis_no_deadline) return redis_lock_within(m, limit);
  if (m.try_lock()) return true;
  return redis_lock_within(m, redis_limit(limit, until, cut));
}

/// A positive duration as a timeval, rounded up to whole microseconds (a
/// timeout never ends before the instant it stands for).
[[nodiscard]] inline timeval redis_timeval(std::chrono::nanoseconds d) noexcept {
  const auto us = std::chrono::ceil<std::chrono::microseconds>(std::max(d, std::chrono::nanoseconds{1})).count();
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(us / 1'000'000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(us % 1'000'000);
  return tv;
}

/// The pool, the breaker and the scripts (see the top of this header).
class redis_client {
 public:
  explicit redis_client(redis_options o) : options_(checked(std::move(o))), breaker_(options_.breaker) {
    links_ = std::make_unique<link[]>(options_.connections);
  }
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;
  ~redis_client() {
    for (std::size_t i = 0; i < options_.connections; ++i) links_[i].drop();
  }

  [[nodiscard]] const redis_options& options() const noexcept { return options_; }

  /// Runs script `id` with `keys` and `args`: one round trip when the
  /// connection is up and the script loaded; ends by `until` (see the top
  /// of this header). Never throws.
  [[nodiscard]] redis_answer run(redis_script id, std::span<const std::string_view> keys,
                                 std::span<const std::string_view> args,
                                 redis_deadline until = redis_no_deadline) noexcept {
    redis_answer a;
    if (until != redis_no_deadline && std::chrono::steady_clock::now() >= until) {
      count(stats_.deadline_exceeded);
      a.status = redis_status::deadline;
      return a;  // out of time: touches neither Redis nor the breaker
    }
    auto permit = breaker_.try_acquire();
    if (permit.kind == admission_kind::rejected) {
      count(stats_.breaker_rejections);
      a.status = redis_status::breaker_open;
      return a;
    }
    bool cut = false;
    link* l = take(until, cut);
    if (l == nullptr && cut) {
      count(stats_.deadline_exceeded);
      a.status = redis_status::deadline;
      return a;  // the permit goes back unsettled
    }
    if (l == nullptr) {
      count(stats_.pool_timeouts);
      a.status = redis_status::pool_busy;
      return a;  // the permit goes back unsettled: a busy pool says nothing of Redis
    }
    const std::lock_guard<std::mutex> hold(l->m, std::adopt_lock);
    a.reply = call(*l, id, keys, args, until);
    if (a.reply) {
      a.status = redis_status::ok;
      count(stats_.calls);
      breaker_.record(std::move(permit.permit), verdict::success());
    } else if (l->cut && std::chrono::steady_clock::now() >= until) {
      // The deadline ended the step that failed; the permit goes back unsettled.
      a.status = redis_status::deadline;
      count(stats_.deadline_exceeded);
    } else {
      a.status = redis_status::failed;
      count(stats_.failures);
      breaker_.record(std::move(permit.permit), verdict::failure(errc::storage_unavailable));
    }
    return a;
  }

  [[nodiscard]] redis_connection_stats stats() const noexcept {
    redis_connection_stats s;
    s.calls = stats_.calls.load(std::memory_order_relaxed);
    s.failures = stats_.failures.load(std::memory_order_relaxed);
    s.breaker_rejections = stats_.breaker_rejections.load(std::memory_order_relaxed);
    s.pool_timeouts = stats_.pool_timeouts.load(std::memory_order_relaxed);
    s.connects = stats_.connects.load(std::memory_order_relaxed);
    s.script_reloads = stats_.script_reloads.load(std::memory_order_relaxed);
    s.deadline_exceeded = stats_.deadline_exceeded.load(std::memory_order_relaxed);
    return s;
  }

  [[nodiscard]] breaker_state breaker() const noexcept { return breaker_.state(); }

 private:
  struct link {
    std::mutex m;
    redisContext* ctx = nullptr;
    std::array<std::string, static_cast<std::size_t>(redis_script::count)> sha;
    std::chrono::nanoseconds timeout{0};  // the reply timeout set on ctx
    bool cut = false;                     // the last step's limit was the caller's deadline
    void drop() noexcept {
      if (ctx != nullptr) redisFree(ctx);
      ctx = nullptr;
      for (auto& s : sha) s.clear();
    }
  };
  struct counters {
    std::atomic<std::uint64_t> calls{0}, failures{0}, breaker_rejections{0}, pool_timeouts{0}, connects{0},
        script_reloads{0}, deadline_exceeded{0};
  };

  static void count(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

  static redis_options checked(redis_options o) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::redis_options: " + what); };
    if (o.host.empty()) fail("host must not be empty");
    if (o.prefix.find_first_of("{}") != std::string::npos) {
      fail("prefix must not contain '{' or '}' (got \"" + o.prefix + "\"): armor adds the hash tags");
    }
    if (o.connect_timeout.count() <= 0) {
      fail("connect_timeout must be positive (got " + std::to_string(o.connect_timeout.count()) + " ms)");
    }
    if (o.command_timeout.count() <= 0) {
      fail("command_timeout must be positive (got " + std::to_string(o.command_timeout.count()) + " ms)");
    }
    if (o.connections < 1 || o.connections > 64) {
      fail("connections must be within [1, 64] (got " + std::to_string(o.connections) + ")");
    }
    return o;
  }

  // A free connection, locked; nullptr when none frees up in time.
  link* take(redis_deadline until, bool& cut) noexcept {
    const std::size_t n = options_.connections;
    const std::size_t first = next_.fetch_add(1, std::memory_order_relaxed) % n;
    for (std::size_t k = 0; k < n; ++k) {
      link& l = links_[(first + k) % n];
      if (l.m.try_lock()) return &l;
    }
    link& l = links_[first];
    return redis_lock_until(l.m, options_.command_timeout, until, cut) ? &l : nullptr;
  }

  bool connect(link& l, redis_deadline until) noexcept {
    l.drop();
    const std::chrono::nanoseconds limit = redis_limit(options_.connect_timeout, until, l.cut);
    if (limit <= std::chrono::nanoseconds::zero()) return false;
    count(stats_.connects);
    const timeval ct = redis_timeval(limit);
    l.ctx = options_.port == 0 ? redisConnectUnixWithTimeout(options_.host.c_str(), ct)
                               : redisConnectWithTimeout(options_.host.c_str(), options_.port, ct);
    if (l.ctx == nullptr || l.ctx->err != 0) {
      l.drop();
      return false;
    }
    if (redisSetTimeout(l.ctx, redis_timeval(options_.command_timeout)) != REDIS_OK) {
      l.drop();
      return false;
    }
    l.timeout = options_.command_timeout;
    (void)redisEnableKeepAlive(l.ctx);
    if (!options_.password.empty()) {
      const std::array<std::string_view, 2> auth{"AUTH", options_.password};
      const redis_reply_ptr r = command(l, auth, until);
      if (!r || r->type == REDIS_REPLY_ERROR) {
        l.drop();
        return false;
      }
    }
    return true;
  }

  // One command; null (and the connection dropped) on I/O error or timeout.
  // The reply may take command_timeout, or until `until` if that is sooner
  // (null, the connection kept, if no time is left).
  redis_reply_ptr command(link& l, std::span<const std::string_view> words, redis_deadline until) noexcept {
    const std::chrono::nanoseconds limit = redis_limit(options_.command_timeout, until, l.cut);
    if (limit <= std::chrono::nanoseconds::zero()) return nullptr;
    if (limit != l.timeout) {
      if (redisSetTimeout(l.ctx, redis_timeval(limit)) != REDIS_OK) {
        l.drop();
        return nullptr;
      }
      l.timeout = limit;
    }
    std::array<const char*, redis_args::max_args + 8> argv{};
    std::array<std::size_t, redis_args::max_args + 8> lens{};
    if (words.size() > argv.size()) return nullptr;
    for (std::size_t i = 0; i < words.size(); ++i) {
      argv[i] = words[i].data();
      lens[i] = words[i].size();
    }
    void* r = redisCommandArgv(l.ctx, static_cast<int>(words.size()), argv.data(), lens.data());
    if (r == nullptr) {
      l.drop();
      return nullptr;
    }
    return redis_reply_ptr(static_cast<redisReply*>(r));
  }

  redis_reply_ptr call(link& l, redis_script id, std::span<const std::string_view> keys,
                       std::span<const std::string_view> args, redis_deadline until) noexcept {
    l.cut = false;
    try {
      if ((l.ctx == nullptr || l.ctx->err != 0) && !connect(l, until)) return nullptr;
      const auto sid = static_cast<std::size_t>(id);
      const std::string& body = redis_script_body(id);
      if (l.sha[sid].empty()) {
        const std::array<std::string_view, 3> load{"SCRIPT", "LOAD", body};
        redis_reply_ptr r = command(l, load, until);
        if (!r) return nullptr;
        if (r->type != REDIS_REPLY_STRING) return nullptr;
        l.sha[sid].assign(r->str, r->len);
      }
      std::array<std::string_view, redis_args::max_args + 8> words{};
      if (keys.size() + args.size() + 3 > words.size()) return nullptr;
      std::array<char, 24> nkeys{};
      const auto [end, ec] = std::to_chars(nkeys.data(), nkeys.data() + nkeys.size(), keys.size());
      (void)ec;
      std::size_t w = 0;
      words[w++] = "EVALSHA";
      words[w++] = l.sha[sid];
      words[w++] = std::string_view(nkeys.data(), static_cast<std::size_t>(end - nkeys.data()));
      for (const std::string_view k : keys) words[w++] = k;
      for (const std::string_view a : args) words[w++] = a;
      redis_reply_ptr r = command(l, {words.data(), w}, until);
      if (r && r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
        count(stats_.script_reloads);
        words[0] = "EVAL";
        words[1] = body;
        r = command(l, {words.data(), w}, until);
      }
      if (!r || r->type == REDIS_REPLY_ERROR) return nullptr;
      return r;
    } catch (...) {  // out of memory for a SHA string
      return nullptr;
    }
  }

  redis_options options_;
  circuit_breaker<steady_clock> breaker_;
  std::unique_ptr<link[]> links_;
  std::atomic<std::size_t> next_{0};
  counters stats_;
};

}  // namespace detail
}  // namespace armor
