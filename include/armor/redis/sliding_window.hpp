// armor/redis/sliding_window.hpp: armor::redis_sliding_window, the sliding
// window of armor::sliding_window (exact over segments, or the two-counter
// approximation) with its counts in Redis, shared by every instance that
// names the same limiter; a pipeline policy.
//
//     armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
//     armor::redis_sliding_window<> recent{{.limit = 100, .window = 10s, .segments = 10}, redis,
//                                          {.name = "recent"}};
//     if (armor::window_decision d = recent.try_acquire("user-7"); !d) {
//         reject(d.code(), d.retry_after());  // rate_limited, or storage_unavailable
//     }
//
// It answers with sliding_window's own decision, numbers included (with
// `time = caller`, call for call as sliding_window would). Every decision
// is one Lua script on one key (exact: a hash of the window's segments;
// approximate: two counters): one round trip, atomic, Cluster-safe; the key
// expires when nothing in it counts any more. Options, failure modes and
// deadlines as armor::redis_fixed_window's (armor/redis/fixed_window.hpp).
// Keys, time, bounds: docs/redis.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/redis_scripts.hpp>
#include <armor/error.hpp>
#include <armor/fixed_window.hpp>
#include <armor/policy.hpp>
#include <armor/redis/connection.hpp>
#include <armor/redis/fixed_window.hpp>
#include <armor/sliding_window.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace armor {

/// A sliding window in Redis, shared by every instance that names the same
/// limiter (and algorithm), and an armor::policy. `Clock` is the clock
/// try_acquire() reads (caller time: the decisions' time; server time: only
/// the local fallback's) and the pipeline's clock. Move-only; moving is not
/// thread-safe, every other member is. A call holds one of the connection's
/// connections for its round trip; the exact window's script reads up to
/// `segments` hash fields.
template <class Clock = steady_clock>
class redis_sliding_window {
  static_assert(armor::clock<Clock>, "armor::redis_sliding_window: Clock must have now() returning its time_point");

 public:
  using clock_type = Clock;
  using options_type = sliding_window_options;
  /// Units are spent when admitted; there is nothing to give back.
  using permit_type = no_permit;

  /// Checks the options (throws armor::error(invalid_argument) naming a bad
  /// one: those sliding_window refuses, a limit above 2^52, a window of 2^53
  /// ns or more, a segment (exact) or window (approximate) under 1 us, with
  /// server time one or an offset that is not whole microseconds). Sends
  /// nothing to Redis yet. count_calls is ignored (see stats()).
  redis_sliding_window(const sliding_window_options& window, redis_connection connection, redis_window_options options,
                       Clock clock = Clock{})
      : state_(make_state(window, std::move(connection), std::move(options), clock)),
        clock_(std::move(clock)),
        cost_(window.cost) {}

  redis_sliding_window(redis_sliding_window&&) noexcept = default;
  redis_sliding_window& operator=(redis_sliding_window&&) noexcept = default;
  redis_sliding_window(const redis_sliding_window&) = delete;
  redis_sliding_window& operator=(const redis_sliding_window&) = delete;
  ~redis_sliding_window() = default;

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

  /// Policy protocol: as redis_fixed_window::admit.
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

  /// Changes the limit at run time, as sliding_window::reconfigure does:
  /// as redis_fixed_window::reconfigure, with window, algorithm, segments
  /// (exact), offset and cost fixed at construction.
  void reconfigure(const sliding_window_options& options) {
    constexpr const char* who = "armor::redis_sliding_window::reconfigure";
    (void)sliding_window<Clock>{options, clock_};  // what the memory window refuses, with its messages
    const detail::redis_window_shape& now = state_->shape();
    const bool exact = options.algorithm == sliding_window_algorithm::exact;
    if (options.window.count() != now.window) detail::fixed_at_construction(who, "window");
    if (exact != (now.script == detail::redis_script::window_exact)) detail::fixed_at_construction(who, "algorithm");
    if (exact && options.segments != now.segments) detail::fixed_at_construction(who, "segments");
    if (options.offset.count() != now.offset) detail::fixed_at_construction(who, "offset");
    if (!(options.cost == cost_)) detail::fixed_at_construction(who, "cost");
    detail::redis_window_shape s = now;
    s.limit = options.limit;
    detail::redis_check_window([](const std::string& what) { detail::invalid_config(std::string(who) + ": " + what); },
                               s, state_->options());
    std::optional<sliding_window_options> local;
    if (state_->options().on_failure == redis_failure_mode::fallback_local) {
      local = options;
      local->limit = detail::redis_local_limit(options.limit, state_->options().local_share);
      local->count_calls = false;
    }
    state_->reconfigure(options.limit, local);
  }
  [[nodiscard]] sliding_window_algorithm algorithm() const noexcept {
    return state_->shape().script == detail::redis_script::window_exact ? sliding_window_algorithm::exact
                                                                        : sliding_window_algorithm::approximate;
  }
  [[nodiscard]] redis_window_stats stats() const noexcept { return state_->stats(); }
  [[nodiscard]] const redis_connection& connection() const noexcept { return state_->connection(); }
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  using state = detail::redis_window_state<sliding_window<Clock>, Clock>;

  static constexpr std::int64_t ns(timestamp t) noexcept { return t.time_since_epoch().count(); }

  static std::unique_ptr<state> make_state(const sliding_window_options& w, redis_connection conn,
                                           redis_window_options o, const Clock& clock) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::redis_sliding_window: " + what); };
    (void)sliding_window<Clock>{w, clock};  // what the memory window refuses, with its messages
    const bool exact = w.algorithm == sliding_window_algorithm::exact;
    detail::redis_window_shape s;
    s.script = exact ? detail::redis_script::window_exact : detail::redis_script::window_approx;
    s.limit = w.limit;
    s.window = w.window.count();
    s.segments = exact ? w.segments : 1;
    s.period = s.window / s.segments;
    s.offset = w.offset.count();
    detail::redis_check_window(fail, s, o);
    std::optional<sliding_window_options> local;
    if (o.on_failure == redis_failure_mode::fallback_local) {
      local = w;
      local->limit = detail::redis_local_limit(w.limit, o.local_share);
      local->count_calls = false;
    }
    return std::make_unique<state>(std::move(conn), std::move(o), s, exact ? ":sw:" : ":sa:", local, clock);
  }

  std::unique_ptr<state> state_;
  [[no_unique_address]] Clock clock_;
  cost_source cost_;  // sliding_window_options::cost
};

}  // namespace armor
