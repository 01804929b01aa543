// armor/clock.hpp: the clocks armor reads and sleeps through.
//
// A pipeline has one clock. Its driver reads the clock once per attempt and
// hands the reading to every policy, and it sleeps (backoff delays, rate-limit
// waits) through the same clock. Tests use manual_clock, whose sleep_until
// moves time forward instead of blocking, so a test of a 30-second backoff
// runs in microseconds and gives exact results:
//
//     armor::manual_clock clock;            // starts at its epoch
//     auto p = armor::pipeline{clock, armor::deadline{2s}};
//     clock.advance(500ms);                 // every copy of clock sees it
//
// Policies keep time as armor::timestamp: nanoseconds since the epoch of the
// pipeline's clock. Mixing readings of different clocks is a bug; pipelines
// check at compile time that a policy which declares a clock_type agrees.
// See docs/architecture.md#time.
#pragma once

#include <armor/detail/time.hpp>
#include <armor/error.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <memory>
#include <thread>

namespace armor {

/// Tag for armor::timestamp: "the epoch of whichever clock the pipeline uses".
struct clock_epoch {};

/// A clock reading as policies keep it: nanoseconds since the epoch of the
/// clock that produced it. `timestamp::max()` means "never" (no deadline).
using timestamp = std::chrono::time_point<clock_epoch, std::chrono::nanoseconds>;

/// Anything with a `time_point` type and a `now()` armor can read.
template <class C>
concept clock = requires(const C& c) {
  typename C::time_point;
  { c.now() } -> std::same_as<typename C::time_point>;
};

/// A clock a driver can also wait on: `sleep_until(t)` returns once `now() >= t`.
template <class C>
concept sleeping_clock = clock<C> && requires(const C& c, typename C::time_point t) {
  c.sleep_until(t);
};

/// Converts a reading of any clock into an armor::timestamp (saturating).
template <class TimePoint>
[[nodiscard]] constexpr timestamp to_timestamp(TimePoint t) noexcept {
  return timestamp{std::chrono::nanoseconds{detail::to_ns(t.time_since_epoch())}};
}

/// Converts an armor::timestamp back into Clock's time_point, rounding up so
/// that sleeping until the result never wakes before the timestamp.
template <clock Clock>
[[nodiscard]] constexpr typename Clock::time_point from_timestamp(timestamp t) noexcept {
  using tp = typename Clock::time_point;
  using d = typename tp::duration;
  if (t == timestamp::max()) return tp::max();
  return tp{std::chrono::ceil<d>(t.time_since_epoch())};
}

/// The default clock: std::chrono::steady_clock (monotonic, unaffected by
/// wall-clock changes). Stateless; sleep_until blocks the calling thread.
struct steady_clock {
  using base = std::chrono::steady_clock;
  using rep = base::rep;
  using period = base::period;
  using duration = base::duration;
  using time_point = base::time_point;
  static constexpr bool is_steady = true;

  [[nodiscard]] static time_point now() noexcept { return base::now(); }
  static void sleep_until(time_point t) { std::this_thread::sleep_until(t); }
};

/// Wall time: std::chrono::system_clock. Calendar windows (a daily quota that
/// resets at midnight UTC) need it; it can jump when the host's time is set.
struct system_clock {
  using base = std::chrono::system_clock;
  using rep = base::rep;
  using period = base::period;
  using duration = base::duration;
  using time_point = base::time_point;
  static constexpr bool is_steady = false;

  [[nodiscard]] static time_point now() noexcept { return base::now(); }
  static void sleep_until(time_point t) { std::this_thread::sleep_until(t); }
};

/// A clock that moves only when told to. Copies share one time, so a test can
/// hand a copy to a pipeline and keep one to advance. Thread-safe: every
/// member may be called concurrently. `sleep_until(t)` advances the shared
/// time to `t` (if it is earlier) and returns at once, so drivers "sleep"
/// instantly and exactly.
///
/// The epoch is arbitrary; a manual_clock starts at 0 unless given a start.
/// Construction allocates (the shared time); reading does not.
class manual_clock {
 public:
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<manual_clock, duration>;
  static constexpr bool is_steady = false;  // set() may move it backwards

  /// A new, independent time starting at the epoch (or at `start`).
  manual_clock() : now_(std::make_shared<shared_time>()) {}
  explicit manual_clock(time_point start) : manual_clock() { set(start); }
  /// Starts at the given offset from the epoch, e.g. `manual_clock{24h}`.
  template <class Rep, class Period>
  explicit manual_clock(std::chrono::duration<Rep, Period> since_epoch)
      : manual_clock(time_point{std::chrono::duration_cast<duration>(since_epoch)}) {}

  [[nodiscard]] time_point now() const noexcept {
    // acquire pairs with the release in the writers, so a thread that sees
    // the new time also sees what the advancing thread wrote before it.
    return time_point{duration{now_->ns.load(std::memory_order_acquire)}};
  }

  /// Moves time forward by `d`. A negative `d` is refused (use set()).
  template <class Rep, class Period>
  void advance(std::chrono::duration<Rep, Period> d) const {
    const auto ns = detail::to_ns(d);
    if (ns < 0) detail::invalid_config("armor::manual_clock::advance: duration must not be negative");
    std::int64_t cur = now_->ns.load(std::memory_order_relaxed);
    while (!now_->ns.compare_exchange_weak(cur, detail::saturating_add(cur, ns),
                                           std::memory_order_acq_rel, std::memory_order_relaxed)) {
    }
  }

  /// Sets the time, forwards or backwards (to test a clock that jumps).
  void set(time_point t) const noexcept {
    now_->ns.store(t.time_since_epoch().count(), std::memory_order_release);
  }

  /// Moves time forward to `t` unless it is already later; never blocks.
  void sleep_until(time_point t) const noexcept {
    const std::int64_t target = t.time_since_epoch().count();
    std::int64_t cur = now_->ns.load(std::memory_order_relaxed);
    while (cur < target && !now_->ns.compare_exchange_weak(cur, target, std::memory_order_acq_rel,
                                                           std::memory_order_relaxed)) {
    }
  }

  /// Same as advance(d), as a sleep.
  template <class Rep, class Period>
  void sleep_for(std::chrono::duration<Rep, Period> d) const {
    advance(d);
  }

  /// True when both share one time (one is a copy of the other).
  [[nodiscard]] friend bool operator==(const manual_clock& a, const manual_clock& b) noexcept {
    return a.now_ == b.now_;
  }

 private:
  struct shared_time {
    std::atomic<std::int64_t> ns{0};
  };
  std::shared_ptr<shared_time> now_;
};

static_assert(sleeping_clock<steady_clock>);
static_assert(sleeping_clock<system_clock>);
static_assert(sleeping_clock<manual_clock>);

}  // namespace armor
