// armor/fixed_window.hpp: armor::fixed_window, "N per window" exactly, and
// the decision, status and event it shares with armor::sliding_window.
//
//     using namespace std::chrono_literals;
//     armor::fixed_window per_minute{{.limit = 60, .window = 1min}};
//     if (armor::window_decision d = per_minute.try_acquire(); !d) {
//         reject(d.code(), d.retry_after());  // rate_limited, until the minute turns
//     }
//     // Or as a pipeline layer:
//     auto p = armor::pipeline{armor::fixed_window{{.limit = 2000, .window = 5min}}};
//
// At most `limit` units in each window [offset + k * window, offset +
// (k + 1) * window) of the clock's time (windows are aligned to the clock's
// epoch, moved by `offset`); a refusal's retry_after() is the time to the
// window's end. All or nothing; n > limit fails at once (request_too_large).
// armor/http/rate_limit.hpp turns a decision into 429 response headers.
//
// Thread-safety: every member may be called concurrently, except moving
// the limiter. Cost: one 64-bit word {window index, count} changed by one
// CAS; a refusal reads it and writes nothing. No allocation, no lock, no
// floating point. Semantics, limits and measured costs: docs/rate_windows.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/window_state.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/rate.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// The options of armor::fixed_window. An aggregate:
/// `{.limit = 60, .window = 1min}`.
struct fixed_window_options {
  /// Units admitted per window; >= 1.
  std::int64_t limit = 0;
  /// The window's length; > 0.
  std::chrono::nanoseconds window{0};
  /// Where windows start: at offset + k * window of the clock's time
  /// (default 0: aligned to the clock's epoch; for the system clock, 1min
  /// windows then turn at every minute of UTC). 0 <= offset < window.
  std::chrono::nanoseconds offset{0};
  /// Count granted, rejected and too-large calls in stats() (one relaxed
  /// atomic add per call). Off by default; limiters inside armor::keyed
  /// never count.
  bool count_calls = false;
  /// In a pipeline, which of the call's costs this limiter counts (as
  /// token_bucket_options::cost).
  cost_source cost{};
};

namespace detail {
struct window_decision_access;
}  // namespace detail

/// How a window limiter answered.
enum class window_status : std::uint8_t {
  granted,    ///< counted in the window
  denied,     ///< the window has too little room now; see retry_after()
  too_large,  ///< more units than the limit: can never be granted
  invalid,    ///< a negative number of units
};

/// The enumerator's name: "granted", "denied", "too_large", "invalid".
[[nodiscard]] constexpr std::string_view to_string(window_status s) noexcept {
  switch (s) {
    case window_status::granted: return "granted";
    case window_status::denied: return "denied";
    case window_status::too_large: return "too_large";
    case window_status::invalid: return "invalid";
  }
  return "unknown";
}

/// The answer of a fixed or sliding window (an armor::decision_like and an
/// armor::http::rate_limit_decision). A small value; no allocation. A grant
/// is spent at once: there is no permit to give back.
class window_decision {
 public:
  using permit_type = no_permit;

  [[nodiscard]] constexpr window_status status() const noexcept { return status_; }
  [[nodiscard]] constexpr bool allowed() const noexcept { return status_ == window_status::granted; }
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return allowed(); }

  /// Empty when granted; errc::rate_limited (denied), errc::request_too_large
  /// (too_large) or errc::invalid_argument (a negative number of units). A
  /// window whose state lives elsewhere (armor::redis_fixed_window) may deny
  /// for its own reason, e.g. errc::storage_unavailable.
  [[nodiscard]] std::error_code code() const noexcept {
    if (code_ != errc{}) return code_;
    switch (status_) {
      case window_status::granted: return {};
      case window_status::denied: return errc::rate_limited;
      case window_status::too_large: return errc::request_too_large;
      case window_status::invalid: break;
    }
    return errc::invalid_argument;
  }

  /// Units per window (RateLimit-Limit).
  [[nodiscard]] constexpr std::int64_t limit() const noexcept { return r_.limit; }
  /// The limit as a rate, limit per window (RateLimit-Policy: `limit;w=window`).
  [[nodiscard]] constexpr armor::rate rate() const noexcept { return {r_.limit, std::chrono::nanoseconds{r_.window}}; }
  /// The window's length.
  [[nodiscard]] constexpr std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{r_.window}; }
  /// The units this decision was asked for.
  [[nodiscard]] constexpr std::int64_t requested() const noexcept { return r_.n; }
  /// Units that may still be granted now, after this decision (RateLimit-Remaining).
  [[nodiscard]] constexpr std::int64_t remaining() const noexcept { return r_.remaining(); }
  /// Time until everything counted so far has left the window, so that the
  /// whole limit is free again (RateLimit-Reset); zero when nothing is counted.
  [[nodiscard]] constexpr std::chrono::nanoseconds reset() const noexcept { return std::chrono::nanoseconds{r_.reset()}; }
  /// For a denial: the exact time until the same request is granted if no
  /// other is granted meanwhile. Zero when granted; nanoseconds::max() when
  /// it can never be granted.
  [[nodiscard]] constexpr std::chrono::nanoseconds retry_after() const noexcept {
    switch (status_) {
      case window_status::granted: return std::chrono::nanoseconds::zero();
      case window_status::denied: return std::chrono::nanoseconds{r_.retry_after()};
      default: return std::chrono::nanoseconds::max();
    }
  }
  /// No permit: the units are spent.
  [[nodiscard]] constexpr no_permit permit() const noexcept { return {}; }

 private:
  template <class, bool, class>
  friend class fixed_window;
  template <class, bool, class>
  friend class sliding_window;
  friend struct detail::window_decision_access;

  constexpr window_decision(window_status s, const detail::window_result& r) noexcept : status_(s), r_(r) {}
  constexpr explicit window_decision(const detail::window_result& r) noexcept : status_(status_of(r)), r_(r) {}

  static constexpr window_status status_of(const detail::window_result& r) noexcept {
    switch (r.outcome) {
      case detail::window_outcome::granted: return window_status::granted;
      case detail::window_outcome::denied: return window_status::denied;
      case detail::window_outcome::too_large: break;
    }
    return window_status::too_large;
  }

  window_status status_;
  detail::window_result r_;
  errc code_{};  // a denial's reason other than the status's own (set by window_decision_access::refused)
};

static_assert(decision_like<window_decision>);

namespace detail {
/// Makes window_decisions for window limiters whose state lives elsewhere.
struct window_decision_access {
  [[nodiscard]] static constexpr window_decision make(const window_result& r) noexcept { return window_decision(r); }
  [[nodiscard]] static constexpr window_decision make(window_status s, const window_result& r) noexcept {
    return {s, r};
  }
  /// A denial for a reason of the implementation's own (`code`, e.g.
  /// storage_unavailable), with no numbers from the state: remaining() is
  /// the limit, reset() and retry_after() zero.
  [[nodiscard]] static constexpr window_decision refused(errc code, std::int64_t limit, std::int64_t window,
                                                         std::int64_t n) noexcept {
    window_decision d(window_status::denied, window_result::exact(window_outcome::denied, n, limit, window, limit, 0, 0));
    d.code_ = code;
    return d;
  }
};
}  // namespace detail

/// What a window limiter's listener hears: a call it refused. The listener
/// is armor::no_listener (the default) or anything callable as
/// `listener(const window_event&) noexcept` (or std::ref to it); it runs on
/// the refused caller's thread, once per refusal.
struct window_event {
  window_status status = window_status::denied;  ///< denied, or too_large
  std::int64_t tokens = 0;                       ///< units the call asked for
  std::chrono::nanoseconds retry_after{0};       ///< for `denied`: what the caller is told to wait

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = window_event;
    return std::tuple{armor::field("status", &e::status), armor::field("tokens", &e::tokens),
                      armor::field("retry_after", &e::retry_after)};
  }
};

/// A snapshot of a fixed window. Each field is read with a relaxed load.
struct fixed_window_stats {
  std::int64_t limit = 0;                   ///< units per window
  std::chrono::nanoseconds window{0};       ///< the window's length
  std::int64_t used = 0;                    ///< units counted in the current window
  std::chrono::nanoseconds reset{0};        ///< time until the current window ends (0 when nothing is counted)
  bool counting = false;                    ///< whether the counters below are kept
  std::uint64_t granted = 0;                ///< calls granted
  std::uint64_t rejected = 0;               ///< calls refused: the window was full
  std::uint64_t too_large = 0;              ///< calls refused for asking more than the limit

  /// The fields as armor/fmt.hpp prints them and armor/prometheus.hpp
  /// exports them (armor_fixed_window_*; the counters only while counting).
  static constexpr auto fields() noexcept {
    using s = fixed_window_stats;
    return std::tuple{
        armor::gauge("limit", &s::limit, "armor_fixed_window_limit", "Units the fixed window admits per window."),
        armor::gauge("window", &s::window, "armor_fixed_window_length_seconds", "The fixed window's length."),
        armor::gauge("used", &s::used, "armor_fixed_window_used", "Units counted in the current fixed window."),
        armor::gauge("reset", &s::reset, "armor_fixed_window_reset_seconds",
                     "Seconds until the current fixed window ends (0 when nothing is counted)."),
        armor::counter("granted", &s::granted, "armor_fixed_window_granted_total",
                       "Calls the fixed window granted (count_calls only).")
            .when_counting(),
        armor::counter("rejected", &s::rejected, "armor_fixed_window_rejected_total",
                       "Calls the fixed window refused because the window was full (count_calls only).")
            .when_counting(),
        armor::counter("too_large", &s::too_large, "armor_fixed_window_too_large_total",
                       "Calls the fixed window refused for asking more than the limit (count_calls only).")
            .when_counting(),
    };
  }
};

namespace detail {
/// The counters of a padded window limiter, indexed like window_outcome.
enum class window_counter : std::uint8_t { granted, denied, too_large, count };

struct window_counters {
  counter_set<window_counter> calls;
  bool on = false;
  explicit window_counters(bool count) noexcept : on(count) {}
};
struct no_window_counters {
  explicit no_window_counters(bool) noexcept {}
};

/// Counts and reports a window result (shared by both window limiters).
template <bool Padded, class Counters, class Listener>
void window_record(Counters& counters, Listener& listener, const window_result& r) noexcept {
  if constexpr (Padded) {
    if (counters.on) [[unlikely]] counters.calls.add(static_cast<window_counter>(r.outcome));
  }
  if (r.outcome != window_outcome::granted) {
    notify(listener, [&] {
      window_event e;
      e.tokens = r.n;
      if (r.outcome == window_outcome::denied) {
        e.retry_after = std::chrono::nanoseconds{r.retry_after()};
      } else {
        e.status = window_status::too_large;
      }
      return e;
    });
  }
}

/// The pipeline's answer for a window result.
[[nodiscard]] inline admission<no_permit> window_admission(const window_result& r) noexcept {
  switch (r.outcome) {
    case window_outcome::granted: return admission<no_permit>::admit();
    case window_outcome::denied:
      return admission<no_permit>::reject(errc::rate_limited, std::chrono::nanoseconds{r.retry_after()}, true);
    case window_outcome::too_large: break;
  }
  return admission<no_permit>::reject(errc::request_too_large, std::nullopt, false);
}

inline void check_window_times(std::chrono::nanoseconds window, std::chrono::nanoseconds offset, const char* who) {
  if (window.count() <= 0) {
    invalid_config(std::string(who) + ": window must be positive (got " + std::to_string(window.count()) + " ns)");
  }
  if (offset.count() < 0 || offset >= window) {
    invalid_config(std::string(who) + ": offset must be in [0, window) (got " + std::to_string(offset.count()) +
                   " ns)");
  }
}
}  // namespace detail

/// A fixed-window rate limiter, and an armor::policy (see the top of this
/// header). `Padded` keeps it on its own cache line (armor::keyed stores
/// unpadded ones). Constructors throw armor::error(invalid_argument),
/// naming the option, for limit < 1, window <= 0, an offset outside
/// [0, window), a limit too large for the window (docs/rate_windows.md), or
/// a cost slot a call does not have.
template <class Clock = steady_clock, bool Padded = true, class Listener = no_listener>
class alignas(Padded ? detail::cache_line : alignof(std::atomic<std::uint64_t>)) fixed_window {
  static_assert(armor::clock<Clock>, "armor::fixed_window: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, window_event>,
                "armor::fixed_window: Listener must be no_listener or callable as "
                "listener(const armor::window_event&) noexcept");

 public:
  using clock_type = Clock;
  using options_type = fixed_window_options;
  using permit_type = no_permit;
  /// What armor::keyed stores per key: the same limiter, unpadded, without a listener.
  using keyed_instance = fixed_window<Clock, false>;
  using listener_type = Listener;

  explicit fixed_window(const fixed_window_options& options, Clock clock = Clock{}, Listener listener = Listener{})
      : pack_(checked(options)),
        limit_(options.limit),
        window_(options.window.count()),
        offset_(options.offset.count()),
        cost_(options.cost),
        counters_(options.count_calls),
        clock_(std::move(clock)),
        listener_(std::move(listener)) {}

  /// Moves the state. Not thread-safe: move a limiter before sharing it.
  fixed_window(fixed_window&& other) noexcept
      : word_(other.word_.load(std::memory_order_relaxed)),
        pack_(other.pack_),
        limit_(other.limit_),
        window_(other.window_),
        offset_(other.offset_),
        cost_(other.cost_),
        counters_(other.counters_),
        clock_(std::move(other.clock_)),
        listener_(std::move(other.listener_)) {}
  fixed_window(const fixed_window&) = delete;
  fixed_window& operator=(const fixed_window&) = delete;
  fixed_window& operator=(fixed_window&&) = delete;
  ~fixed_window() = default;

  /// Counts n units now (reads the clock), or none.
  [[nodiscard]] window_decision try_acquire(std::int64_t n = 1) noexcept(noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }

  /// Counts n units at `now` (a reading of this limiter's clock), or none.
  [[nodiscard]] window_decision try_acquire(std::int64_t n, timestamp now) noexcept {
    if (n < 0) [[unlikely]] {
      return {window_status::invalid, result(detail::window_outcome::too_large, n, limit_.load(), 0, 0, 0)};
    }
    const detail::window_result r = acquire(n, ns(now));
    detail::window_record<Padded>(counters_, listener_, r);
    return decide(r);
  }

  /// Policy protocol: counts ctx.cost(options.cost) units at ctx.now(), or rejects.
  [[nodiscard]] admission<no_permit> admit(context& ctx) noexcept {
    const std::int64_t n = ctx.cost(cost_);
    if (n <= 0) [[unlikely]] {
      if (n == 0) return admission<no_permit>::admit();
      return admission<no_permit>::reject(errc::invalid_argument, std::nullopt, false);
    }
    const detail::window_result r = acquire(n, ns(ctx.now()));
    detail::window_record<Padded>(counters_, listener_, r);
    return detail::window_admission(r);
  }

  /// Policy protocol: the units stay counted, whatever the outcome.
  void settle(context&, no_permit, const verdict&) noexcept {}

  [[nodiscard]] std::int64_t limit() const noexcept { return limit_.load(); }
  [[nodiscard]] std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{window_}; }

  /// Changes the limit at run time (docs/reconfiguration.md): `options` is
  /// validated as by the constructor, and window, offset, cost and
  /// count_calls must equal the limiter's (they shape its state). The next
  /// decision uses the new limit against the units already counted in the
  /// current window. Throws armor::error(invalid_argument) naming the option;
  /// the old limit then stays. Thread-safe; decisions never wait for it.
  void reconfigure(const fixed_window_options& options) {
    (void)checked(options);
    constexpr const char* who = "armor::fixed_window::reconfigure";
    if (options.window.count() != window_) detail::fixed_at_construction(who, "window");
    if (options.offset.count() != offset_) detail::fixed_at_construction(who, "offset");
    if (!(options.cost == cost_)) detail::fixed_at_construction(who, "cost");
    if constexpr (Padded) {
      if (options.count_calls != counters_.on) detail::fixed_at_construction(who, "count_calls");
    }
    limit_.store(options.limit);
  }

  /// Units that may be granted at `now`, without counting any.
  [[nodiscard]] std::int64_t available(timestamp now) const noexcept {
    return std::max<std::int64_t>(0, limit_.load() - used_at(ns(now)).used);
  }
  [[nodiscard]] std::int64_t available() const { return available(to_timestamp(clock_.now())); }

  /// A snapshot at `now` (see fixed_window_stats).
  [[nodiscard]] fixed_window_stats stats(timestamp now) const noexcept {
    const std::int64_t t = ns(now);
    const usage u = used_at(t);
    fixed_window_stats s;
    s.limit = limit_.load();
    s.window = std::chrono::nanoseconds{window_};
    s.used = u.used;
    s.reset = std::chrono::nanoseconds{u.used == 0 ? 0 : end_of(u.index) - t};
    if constexpr (Padded) {
      s.counting = counters_.on;
      s.granted = counters_.calls.load(detail::window_counter::granted);
      s.rejected = counters_.calls.load(detail::window_counter::denied);
      s.too_large = counters_.calls.load(detail::window_counter::too_large);
    }
    return s;
  }
  [[nodiscard]] fixed_window_stats stats() const { return stats(to_timestamp(clock_.now())); }

  /// For armor::keyed: true when nothing is counted in the window of `now`
  /// (a fresh limiter would decide the same).
  [[nodiscard]] bool idle(timestamp now) const noexcept { return used_at(ns(now)).used == 0; }

  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  struct usage {
    std::int64_t index;
    std::int64_t used;
  };

  static constexpr std::int64_t ns(timestamp t) noexcept { return t.time_since_epoch().count(); }

  static detail::window_packing checked(const fixed_window_options& o) {
    detail::check_window_times(o.window, o.offset, "armor::fixed_window");
    detail::check_cost_source(o.cost, "armor::fixed_window");
    return detail::checked_window_packing(o.limit, o.window.count(), "armor::fixed_window");
  }

  [[nodiscard]] std::int64_t index_of(std::int64_t t) const noexcept {
    return detail::window_floor_div(t - offset_, window_);
  }
  [[nodiscard]] std::int64_t end_of(std::int64_t index) const noexcept { return (index + 1) * window_ + offset_; }

  // The window a call at `t` counts in, and its count, given the word `w`.
  [[nodiscard]] ARMOR_ALWAYS_INLINE usage usage_of(std::uint64_t w, std::int64_t t) const noexcept {
    // First without dividing: the word's tag is its window's index modulo
    // 2^tag_bits, so when t falls in the window whose index is the tag
    // itself (k * window <= t - offset < (k + 1) * window), t's index is k,
    // its tag is k's and the call counts in the word's window, as below.
    // This holds for every call at clock times in [offset, offset +
    // 2^tag_bits * window), at least 2^61 ns (73 years) from the clock's
    // epoch; elsewhere (negative times, a window turning) the call divides.
    // No overflow: the tag has at most max(1, 61 - floor(log2(window)))
    // bits (checked_window_packing), so k * window < 2^63; since - start is
    // computed only when since >= start.
    const std::int64_t k = static_cast<std::int64_t>(pack_.tag_of(w));
    const std::int64_t start = k * window_;
    const std::int64_t since = t - offset_;
    if (since >= start && since - start < window_) [[likely]] return {k, pack_.count_of(w)};
    std::int64_t index = index_of(t);
    if (pack_.tag_of(w) == pack_.tag(index)) return {index, pack_.count_of(w)};
    const std::int64_t ahead = pack_.ahead(w, index);
    if (ahead != 0) return {index + ahead, pack_.count_of(w)};
    return {index, 0};
  }
  [[nodiscard]] usage used_at(std::int64_t t) const noexcept {
    // Relaxed: the word is the whole state; nothing else is published with it.
    return usage_of(word_.load(std::memory_order_relaxed), t);
  }

  [[nodiscard]] detail::window_result result(detail::window_outcome o, std::int64_t n, std::int64_t limit,
                                            std::int64_t remaining, std::int64_t reset,
                                            std::int64_t retry) const noexcept {
    return detail::window_result::exact(o, n, limit, window_, remaining < 0 ? 0 : remaining, reset, retry);
  }

  detail::window_result acquire(std::int64_t n, std::int64_t t) noexcept {
    using o = detail::window_outcome;
    // One read of the limit per decision: a reconfiguration lands between
    // decisions, never inside one. A lowered limit may find more units
    // counted than it allows (remaining reports 0).
    const std::int64_t limit = limit_.load();
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      const usage u = usage_of(w, t);
      const std::int64_t to_end = end_of(u.index) - t;
      if (n > limit) [[unlikely]] return result(o::too_large, n, limit, limit - u.used, u.used == 0 ? 0 : to_end, 0);
      if (u.used + n > limit) return result(o::denied, n, limit, limit - u.used, to_end, to_end);
      if (n == 0) [[unlikely]] return result(o::granted, n, limit, limit - u.used, u.used == 0 ? 0 : to_end, 0);
      // Relaxed: the CAS orders nothing but the word itself.
      if (word_.compare_exchange_weak(w, pack_.pack(u.index, u.used + n), std::memory_order_relaxed)) {
        return result(o::granted, n, limit, limit - u.used - n, to_end, 0);
      }
    }
  }

  [[nodiscard]] static window_decision decide(const detail::window_result& r) noexcept { return window_decision(r); }

  std::atomic<std::uint64_t> word_{0};
  detail::window_packing pack_;
  detail::config_cell<std::int64_t> limit_;  // the one option that changes at run time
  std::int64_t window_;
  std::int64_t offset_;
  cost_source cost_;
  [[no_unique_address]] std::conditional_t<Padded, detail::window_counters, detail::no_window_counters> counters_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
};

fixed_window(const fixed_window_options&) -> fixed_window<steady_clock>;
template <class C>
fixed_window(const fixed_window_options&, C) -> fixed_window<C>;
template <class C, class L>
fixed_window(const fixed_window_options&, C, L) -> fixed_window<C, true, L>;

}  // namespace armor
