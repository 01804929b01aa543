// armor/redis/fixed_window.hpp: armor::redis_fixed_window, the window of
// armor::fixed_window with its count in Redis, shared by every instance
// that names the same limiter; a pipeline policy. Also what it shares with
// armor::redis_sliding_window (redis_window_options, redis_window_stats).
//
//     armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
//     armor::redis_fixed_window<> per_ip{{.limit = 60, .window = 1min}, redis, {.name = "per-ip"}};
//     if (armor::window_decision d = per_ip.try_acquire("203.0.113.9"); !d) {
//         reject(d.code(), d.retry_after());  // rate_limited, or storage_unavailable
//     }
//
// It answers with fixed_window's own decision, numbers included (with
// `time = caller`, call for call as fixed_window would). Every decision is
// one Lua script on one key: one round trip, atomic in Redis, Cluster-safe;
// the key expires when its window ends. In a pipeline, call_options::key
// picks the client. Failure modes and deadlines as redis_token_bucket's.
// With `time = server`, window and offset must be whole microseconds.
// Keys, time, failure modes, bounds: docs/redis.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/redis_reply.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/detail/window_state.hpp>
#include <armor/error.hpp>
#include <armor/fixed_window.hpp>
#include <armor/keyed.hpp>
#include <armor/policy.hpp>
#include <armor/redis/connection.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace armor {

/// The Redis side of armor::redis_fixed_window and armor::redis_sliding_window.
/// An aggregate: `{.name = "per-ip", .on_failure = armor::redis_failure_mode::fail_open}`.
struct redis_window_options {
  /// The limiter's name: windows (in any process) with the same name and
  /// kind share their counts. Not empty; no '{' or '}'.
  std::string name = "default";
  /// What a call does when Redis does not answer (docs/redis.md).
  redis_failure_mode on_failure = redis_failure_mode::fail_closed;
  /// fallback_local: the local window admits this share of the limit (at
  /// least 1 unit); in (0, 1], required with fallback_local (1 / replicas).
  double local_share = 0;
  /// Whose clock the scripts read: Redis's (the default), or the limiter's
  /// Clock (for tests on a manual clock).
  redis_time_source time = redis_time_source::server;
  /// fallback_local: the most per-key local windows held while Redis is
  /// away; >= 1.
  std::size_t local_keys = 10'000;
};

/// Counters of a redis_fixed_window or redis_sliding_window, since it was
/// made; each read with a relaxed load.
struct redis_window_stats {
  std::uint64_t unanswered = 0;         ///< calls Redis did not answer (failure, open breaker, busy pool)
  std::uint64_t failed_open = 0;        ///< calls admitted without Redis (fail_open)
  std::uint64_t failed_closed = 0;      ///< calls refused with storage_unavailable (fail_closed)
  std::uint64_t served_locally = 0;     ///< calls decided by the local fallback (fallback_local)
  std::uint64_t deadline_exceeded = 0;  ///< calls the caller's deadline ended before Redis answered (admit(ctx))

  static constexpr auto fields() noexcept {
    using s = redis_window_stats;
    return std::tuple{
        armor::counter("unanswered", &s::unanswered, "armor_redis_window_unanswered_total",
                       "Calls of a Redis window limiter that Redis did not answer (failure, open breaker, busy pool)."),
        armor::counter("failed_open", &s::failed_open, "armor_redis_window_failed_open_total",
                       "Calls of a Redis window limiter admitted without Redis while it was away (fail_open)."),
        armor::counter("failed_closed", &s::failed_closed, "armor_redis_window_failed_closed_total",
                       "Calls of a Redis window limiter refused with storage_unavailable while Redis was away "
                       "(fail_closed)."),
        armor::counter("served_locally", &s::served_locally, "armor_redis_window_served_locally_total",
                       "Calls of a Redis window limiter decided by its local fallback while Redis was away "
                       "(fallback_local)."),
        armor::counter("deadline_exceeded", &s::deadline_exceeded, "armor_redis_window_deadline_exceeded_total",
                       "Calls of a Redis window limiter that the caller's deadline ended before Redis answered."),
    };
  }
};

namespace detail {

/// The shape of a Redis window: which script, its period (P ns: the fixed
/// window, an exact window's segment, the approximation's window), offset,
/// segments, limit and window length.
struct redis_window_shape {
  redis_script script = redis_script::window_fixed;
  std::int64_t limit = 1;
  std::int64_t window = 1;
  std::int64_t period = 1;
  std::int64_t offset = 0;
  std::int64_t segments = 1;
};

/// Checks what the scripts need beyond what the memory limiter checks.
template <class Fail>
void redis_check_window(const Fail& fail, const redis_window_shape& s, const redis_window_options& o) {
  redis_check_limit_options(fail, "name", o.name, o.on_failure, o.local_share, o.time);
  if (o.on_failure == redis_failure_mode::fallback_local && o.local_keys < 1) fail("local_keys must be at least 1");
  if (s.limit > (std::int64_t{1} << 52)) {
    fail("limit must be at most 2^52 (got " + std::to_string(s.limit) + "): the scripts count exactly below 2^53");
  }
  if (s.window >= redis_slice_max) {
    fail("window must be shorter than 2^53 ns, 104 days (got " + std::to_string(s.window) +
         " ns): the scripts compute exactly below 2^53");
  }
  if (s.period < 1000) {
    fail("the window's period (the window, or a segment) must be at least 1 us (got " + std::to_string(s.period) +
         " ns): period indices stay below 2^53");
  }
  if (o.time == redis_time_source::server && (s.period % 1000 != 0 || s.offset % 1000 != 0)) {
    fail("with time = server, the period (the window, or a segment) and offset must be whole microseconds "
         "(got " + std::to_string(s.period) + " ns and " + std::to_string(s.offset) + " ns): Redis's TIME has "
         "microseconds");
  }
}

/// The state of a Redis window limiter, behind a pointer so that it moves.
/// `Local` is the memory limiter the fallback keeps per key.
template <class Local, class Clock>
class redis_window_state {
 public:
  redis_window_state(redis_connection conn, redis_window_options o, const redis_window_shape& shape, const char* kind,
                     std::optional<typename Local::options_type> local, Clock clock)
      : conn_(std::move(conn)),
        options_(std::move(o)),
        shape_(shape),
        limit_(shape.limit),
        key_(conn_.options().prefix + kind + "{" + options_.name + "}") {
    if (local) {
      local_ = std::make_unique<keyed<Local>>(*local, keyed_options{.max_keys = options_.local_keys},
                                              std::move(clock));
    }
  }
  redis_window_state(const redis_window_state&) = delete;
  redis_window_state& operator=(const redis_window_state&) = delete;
  ~redis_window_state() = default;

  // `left`: the time the call has left (nanoseconds::max(): no deadline).
  window_decision acquire(std::string_view key, std::int64_t n, std::int64_t now,
                          std::chrono::nanoseconds left = std::chrono::nanoseconds::max()) noexcept {
    // One reading of the limit per decision: a reconfiguration lands
    // between decisions, never inside one.
    redis_window_shape s = shape_;
    s.limit = limit_.load();
    if (n < 0) {
      return window_decision_access::make(window_status::invalid,
                                          window_result::exact(window_outcome::too_large, n, s.limit, s.window, 0, 0, 0));
    }
    const redis_deadline until = redis_until(left);
    try {
      if (key.empty()) return remote(s, key_, key, n, now, until);
      const std::size_t len = key_.size() + 3 + key.size();
      if (len <= stack_key) {
        std::array<char, stack_key> buf;
        std::copy(key_.begin(), key_.end(), buf.begin());
        std::copy_n(":k:", 3, buf.begin() + static_cast<std::ptrdiff_t>(key_.size()));
        std::copy(key.begin(), key.end(), buf.begin() + static_cast<std::ptrdiff_t>(key_.size() + 3));
        return remote(s, std::string_view(buf.data(), len), key, n, now, until);
      }
      std::string long_key = key_;
      long_key += ":k:";
      long_key += key;
      return remote(s, long_key, key, n, now, until);
    } catch (...) {  // out of memory for a long key or a local window
      count(counter::failed_closed);
      return closed(s, n);
    }
  }

  [[nodiscard]] redis_window_stats stats() const noexcept {
    const redis_limit_counters c = counters_;
    redis_window_stats s;
    s.unanswered = c.load(counter::unanswered);
    s.failed_open = c.load(counter::failed_open);
    s.failed_closed = c.load(counter::failed_closed);
    s.served_locally = c.load(counter::served_locally);
    s.deadline_exceeded = c.load(counter::deadline_exceeded);
    return s;
  }

  [[nodiscard]] const redis_connection& connection() const noexcept { return conn_; }
  /// The shape at construction; its limit is the first one (see limit()).
  [[nodiscard]] const redis_window_shape& shape() const noexcept { return shape_; }
  [[nodiscard]] std::int64_t limit() const noexcept { return limit_.load(); }
  [[nodiscard]] const redis_window_options& options() const noexcept { return options_; }

  /// Replaces the limit (checked by the caller) and, with a local fallback,
  /// the local windows' options (their share of it).
  void reconfigure(std::int64_t limit, const std::optional<typename Local::options_type>& local) {
    if (local_ && local) local_->reconfigure(*local);
    limit_.store(limit);
  }
  [[nodiscard]] const std::string& key() const noexcept { return key_; }

 private:
  static constexpr std::size_t stack_key = 256;
  using counter = redis_limit_counter;

  void count(counter c) noexcept { counters_.add(c, 1); }

  static window_decision closed(const redis_window_shape& s, std::int64_t n) noexcept {
    return window_decision_access::refused(errc::storage_unavailable, s.limit, s.window, n);
  }

  window_decision remote(const redis_window_shape& s, std::string_view redis_key, std::string_view key, std::int64_t n,
                         std::int64_t now, redis_deadline until) {
    redis_window_ask q;
    q.script = s.script;
    q.n = n;
    q.limit = s.limit;
    q.period = s.period;
    q.segments = s.segments;
    q.caller = options_.time == redis_time_source::caller;
    q.index = window_floor_div(now - s.offset, s.period);  // |now - offset| < 2^63 for any clock reading armor takes
    q.elapsed = now - s.offset - q.index * s.period;
    redis_args args;
    args.add_flag(!q.caller);
    args.add(q.index);
    args.add(q.elapsed);
    args.add(s.period);
    args.add(s.offset / 1000);
    args.add(n);
    args.add(s.limit);
    if (s.script == redis_script::window_exact) args.add(s.segments);
    const std::array<std::string_view, 1> keys{redis_key};
    const redis_answer a = conn_.client().run(s.script, keys, args.views(), until);
    const std::optional<redis_window_answer> r = a ? redis_window_reply(a.reply.get(), q) : std::nullopt;
    if (!r) {
      count(counter::unanswered);
      if (a.status == redis_status::deadline) {
        count(counter::deadline_exceeded);
        return window_decision_access::refused(errc::deadline_exceeded, s.limit, s.window, n);
      }
      return degrade(s, key, n, now);
    }
    return window_decision_access::make(result(s, *r, n));
  }

  // The memory limiters' numbers from the script's counts (fixed_window::
  // acquire, sliding_window::judge_exact and judge_approx), with every time
  // measured from the call's own: t = start of period i + e.
  [[nodiscard]] static window_result result(const redis_window_shape& s, const redis_window_answer& r,
                                            std::int64_t n) noexcept {
    const auto o = r.status == 0 ? window_outcome::granted
                   : r.status == 1 ? window_outcome::denied
                                   : window_outcome::too_large;
    // Time from the call to the start of period i + k.
    const auto until_period = [&](std::int64_t k) { return (r.at - r.index + k) * s.period - r.elapsed; };
    const auto rest = [](std::int64_t v) { return v < 0 ? std::int64_t{0} : v; };
    switch (s.script) {
      case redis_script::window_fixed: {
        const std::int64_t used = r.a;
        const std::int64_t to_end = until_period(1);
        switch (o) {
          case window_outcome::too_large:
            return window_result::exact(o, n, s.limit, s.window, rest(s.limit - used), used == 0 ? 0 : to_end, 0);
          case window_outcome::denied:
            return window_result::exact(o, n, s.limit, s.window, rest(s.limit - used), to_end, to_end);
          case window_outcome::granted: break;
        }
        if (n == 0) return window_result::exact(o, n, s.limit, s.window, rest(s.limit - used), used == 0 ? 0 : to_end, 0);
        return window_result::exact(o, n, s.limit, s.window, rest(s.limit - used - n), to_end, 0);
      }
      case redis_script::window_exact: {
        const std::int64_t after = r.a;
        return window_result::exact(o, n, s.limit, s.window, after > s.limit ? 0 : s.limit - after,
                                    r.b == 0 ? 0 : until_period(r.b), r.c == 0 ? 0 : until_period(r.c));
      }
      default: break;
    }
    window_result w;
    w.outcome = o;
    w.approx = true;
    w.n = n;
    w.limit = s.limit;
    w.window = s.window;
    w.x = r.a;
    w.y = r.b;
    w.z = r.at > r.index ? 0 : r.elapsed;
    return w;
  }

  // What on_failure says to do when Redis did not answer. May throw (a new
  // local window); the caller turns that into fail_closed.
  window_decision degrade(const redis_window_shape& s, std::string_view key, std::int64_t n, std::int64_t now) {
    switch (options_.on_failure) {
      case redis_failure_mode::fail_open:
        count(counter::failed_open);
        return window_decision_access::make(
            window_result::exact(window_outcome::granted, n, s.limit, s.window, s.limit, 0, 0));
      case redis_failure_mode::fallback_local: {
        count(counter::served_locally);
        const timestamp at{std::chrono::nanoseconds{now}};
        auto h = local_->get(key, at);
        return h->try_acquire(n, at);
      }
      case redis_failure_mode::fail_closed: break;
    }
    count(counter::failed_closed);
    return closed(s, n);
  }

  redis_connection conn_;
  redis_window_options options_;
  redis_window_shape shape_;
  config_cell<std::int64_t> limit_;  // the one option that changes at run time
  std::string key_;
  std::unique_ptr<keyed<Local>> local_;
  redis_limit_counters counters_;
};

/// The pipeline's answer for a Redis window's decision.
[[nodiscard]] inline admission<no_permit> redis_window_admission(const window_decision& d) noexcept {
  if (d) return admission<no_permit>::admit();
  const std::error_code code = d.code();
  if (code == errc::rate_limited) return admission<no_permit>::reject(code, d.retry_after(), true);
  const bool retryable = code == errc::storage_unavailable || code == errc::deadline_exceeded;
  return admission<no_permit>::reject(code, std::nullopt, retryable);
}

/// The fallback's share of a limit: at least 1 unit.
[[nodiscard]] inline std::int64_t redis_local_limit(std::int64_t limit, double share) noexcept {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<long double>(limit) *
                                                             static_cast<long double>(share)));
}

}  // namespace detail

/// A fixed window in Redis, shared by every instance that names the same
/// limiter, and an armor::policy. `Clock` is the clock try_acquire() reads
/// (caller time: the decisions' time; server time: only the local
/// fallback's) and the pipeline's clock. Move-only; moving is not
/// thread-safe, every other member is. A call holds one of the connection's
/// connections for its round trip.
template <class Clock = steady_clock>
class redis_fixed_window {
  static_assert(armor::clock<Clock>, "armor::redis_fixed_window: Clock must have now() returning its time_point");

 public:
  using clock_type = Clock;
  using options_type = fixed_window_options;
  /// Units are spent when admitted; there is nothing to give back.
  using permit_type = no_permit;

  /// Checks the options (throws armor::error(invalid_argument) naming a bad
  /// one: those fixed_window refuses, a limit above 2^52, a window of 2^53
  /// ns or more or under 1 us, with server time a window or offset that is
  /// not whole microseconds). Sends nothing to Redis yet. count_calls is
  /// ignored (see stats()).
  redis_fixed_window(const fixed_window_options& window, redis_connection connection, redis_window_options options,
                     Clock clock = Clock{})
      : state_(make_state(window, std::move(connection), std::move(options), clock)),
        clock_(std::move(clock)),
        cost_(window.cost) {}

  redis_fixed_window(redis_fixed_window&&) noexcept = default;
  redis_fixed_window& operator=(redis_fixed_window&&) noexcept = default;
  redis_fixed_window(const redis_fixed_window&) = delete;
  redis_fixed_window& operator=(const redis_fixed_window&) = delete;
  ~redis_fixed_window() = default;

  /// Counts n units now (reads the clock), or none. Refused with code()
  /// rate_limited (and the exact retry_after()), request_too_large,
  /// invalid_argument, or storage_unavailable (fail_closed; retry_after()
  /// zero). A fail_open answer reports an empty window.
  [[nodiscard]] window_decision try_acquire(std::int64_t n = 1) noexcept(noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }
  /// Counts n units at `now` (caller time: the decision's time).
  [[nodiscard]] window_decision try_acquire(std::int64_t n, timestamp now) noexcept {
    return state_->acquire({}, n, ns(now));
  }
  /// Counts n units in `key`'s window (one Redis key per key).
  [[nodiscard]] window_decision try_acquire(std::string_view key, std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(key, n, to_timestamp(clock_.now()));
  }
  /// Counts n units in `key`'s window at `now`.
  [[nodiscard]] window_decision try_acquire(std::string_view key, std::int64_t n, timestamp now) noexcept {
    return state_->acquire(key, n, ns(now));
  }

  /// Policy protocol: counts the call's cost (or the one
  /// fixed_window_options::cost selects) in the window of ctx.key() (the
  /// unkeyed window when empty) at ctx.now(), the round trip ending by ctx's
  /// deadline. Rejections: rate_limited with retry_after,
  /// storage_unavailable (fail_closed) and deadline_exceeded are retryable;
  /// request_too_large and invalid_argument are not.
  [[nodiscard]] admission<no_permit> admit(context& ctx) noexcept {
    const std::int64_t n = ctx.cost(cost_);
    if (n == 0) return admission<no_permit>::admit();
    return detail::redis_window_admission(state_->acquire(ctx.key(), n, ns(ctx.now()), ctx.remaining()));
  }
  /// Policy protocol: nothing to do (the units stay counted).
  void settle(context&, no_permit, const verdict&) noexcept {}

  [[nodiscard]] std::int64_t limit() const noexcept { return state_->limit(); }
  [[nodiscard]] std::chrono::nanoseconds window() const noexcept {
    return std::chrono::nanoseconds{state_->shape().window};
  }

  /// Changes the limit at run time, as fixed_window::reconfigure does
  /// (docs/reconfiguration.md): `options` is checked as by the constructor,
  /// and window, offset and cost must equal the limiter's (count_calls is
  /// ignored). The next decision sends the new limit to the script, which
  /// weighs the units already counted in Redis against it; a local
  /// fallback's windows take their share of it. Throws
  /// armor::error(invalid_argument) naming the option; the old limit then
  /// stays. Thread-safe; decisions never wait for it. Other instances that
  /// name the same limiter keep their own limit.
  void reconfigure(const fixed_window_options& options) {
    constexpr const char* who = "armor::redis_fixed_window::reconfigure";
    (void)fixed_window<Clock>{options, clock_};  // what the memory window refuses, with its messages
    const detail::redis_window_shape& now = state_->shape();
    if (options.window.count() != now.window) detail::fixed_at_construction(who, "window");
    if (options.offset.count() != now.offset) detail::fixed_at_construction(who, "offset");
    if (!(options.cost == cost_)) detail::fixed_at_construction(who, "cost");
    detail::redis_window_shape s = now;
    s.limit = options.limit;
    detail::redis_check_window([](const std::string& what) { detail::invalid_config(std::string(who) + ": " + what); },
                               s, state_->options());
    std::optional<fixed_window_options> local;
    if (state_->options().on_failure == redis_failure_mode::fallback_local) {
      local = options;
      local->limit = detail::redis_local_limit(options.limit, state_->options().local_share);
      local->count_calls = false;
    }
    state_->reconfigure(options.limit, local);
  }

  [[nodiscard]] redis_window_stats stats() const noexcept { return state_->stats(); }
  [[nodiscard]] const redis_connection& connection() const noexcept { return state_->connection(); }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  using state = detail::redis_window_state<fixed_window<Clock>, Clock>;

  static constexpr std::int64_t ns(timestamp t) noexcept { return t.time_since_epoch().count(); }

  static std::unique_ptr<state> make_state(const fixed_window_options& w, redis_connection conn,
                                           redis_window_options o, const Clock& clock) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::redis_fixed_window: " + what); };
    (void)fixed_window<Clock>{w, clock};  // what the memory window refuses, with its messages
    detail::redis_window_shape s;
    s.script = detail::redis_script::window_fixed;
    s.limit = w.limit;
    s.window = w.window.count();
    s.period = s.window;
    s.offset = w.offset.count();
    detail::redis_check_window(fail, s, o);
    std::optional<fixed_window_options> local;
    if (o.on_failure == redis_failure_mode::fallback_local) {
      local = w;
      local->limit = detail::redis_local_limit(w.limit, o.local_share);
      local->count_calls = false;
    }
    return std::make_unique<state>(std::move(conn), std::move(o), s, ":fw:", local, clock);
  }

  std::unique_ptr<state> state_;
  [[no_unique_address]] Clock clock_;
  cost_source cost_;  // fixed_window_options::cost
};

}  // namespace armor
