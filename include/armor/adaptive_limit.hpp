// armor/adaptive_limit.hpp: a concurrency limit that follows the upstream's
// latency. Calls are admitted while fewer than `limit` are in flight; every
// window (1 s by default) one call turns the window's latencies into the
// next limit with a swappable algorithm: gradient_limit (the default),
// vegas_limit or aimd_limit. Defines armor::adaptive_limit<Algorithm, Clock,
// Listener>, its options, permit, stats, event and the three algorithms.
//
//     using namespace std::chrono_literals;
//     // Start at 20 calls in flight; let the latency move it between 4 and 200.
//     armor::adaptive_limit<> upstream{{.initial_limit = 20, .min_limit = 4, .max_limit = 200}};
//     auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream)};
//     auto r = p.try_execute([&](const armor::context& ctx) { return forward(req, ctx.remaining()); },
//                            {.priority = armor::priority::sheddable});  // refused first
//     if (!r && r.code() == armor::errc::concurrency_limited) return service_unavailable(r.retry_after());
//
// The algorithms, their parameters and defaults, priorities, the optional
// FIFO queue (max_queue, max_wait), the regression cases and the cost:
// docs/adaptive_limit.md. Bounds, shares and the rest change at run time
// with reconfigure(): docs/reconfiguration.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/adaptive_limit_core.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/random.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>

namespace armor {

/// What one closed window saw: the input of a limit algorithm's step.
/// Latencies are of the calls that settled in the window with a success or
/// a failure; timeouts and throttled answers are counted, not timed.
struct adaptive_limit_window {
  double limit = 0;                              ///< the limit during the window (unrounded)
  std::uint64_t samples = 0;                     ///< calls timed
  std::chrono::nanoseconds mean_latency{0};      ///< their mean latency (0 without samples)
  std::chrono::nanoseconds min_latency{0};       ///< their smallest latency (0 without samples)
  std::uint32_t max_in_flight = 0;               ///< the most calls in flight at once
  std::uint64_t timeouts = 0;                    ///< attempts that ran out of time
  std::uint64_t throttled = 0;                   ///< attempts the upstream throttled (a 429): slow down
  std::chrono::nanoseconds duration{0};          ///< how long the window was open
  /// The lowest priority's threshold during the window (sheddable calls'); 0: unknown.
  std::uint32_t sheddable_limit = 0;

  /// Signals to reduce: timeouts and throttled answers.
  [[nodiscard]] constexpr std::uint64_t drops() const noexcept { return timeouts + throttled; }
  /// True when the calls did not use the limit: fewer than half of it in
  /// flight at once, and below the sheddable threshold (a workload of
  /// sheddable calls only, with sheddable_share < 0.5, uses its whole share
  /// below half the limit). Latency then says nothing about a higher limit.
  [[nodiscard]] constexpr bool app_limited() const noexcept {
    return 2.0 * max_in_flight < limit && (sheddable_limit == 0 || max_in_flight < sheddable_limit);
  }
};

/// What a limit algorithm is: parameters (an aggregate, checked by
/// `check()`, which throws armor::error(invalid_argument) naming the bad
/// one), a `state` it keeps between windows (touched only by the thread
/// that closes a window), and a pure step from a window to the next limit
/// (unclamped: the policy clamps it to [min_limit, max_limit]).
template <class A>
concept limit_algorithm = std::copy_constructible<A> && std::default_initializable<typename A::state> &&
                          requires(const A& a, const adaptive_limit_window& w, typename A::state& s) {
                            { a.next(w, s) } noexcept -> std::same_as<double>;
                            a.check();
                          };

namespace detail {
[[noreturn]] inline void bad_algorithm_option(std::string_view who, std::string_view what, double got) {
  std::string m(who);
  m.append(": ").append(what).append(" (got ").append(std::to_string(got)).append(")");
  invalid_config(m);
}
inline bool in_open_unit(double x) noexcept { return x > 0.0 && x < 1.0; }    // (0, 1), NaN false
inline bool in_half_unit(double x) noexcept { return x > 0.0 && x <= 1.0; }   // (0, 1], NaN false
inline double nanos(std::chrono::nanoseconds d) noexcept { return static_cast<double>(d.count()); }
}  // namespace detail

/// Gradient: compares the window's mean latency with a long-term average of
/// it, in the spirit of Netflix's Gradient2 and Envoy's gradient
/// controller. limit' = limit * clamp(tolerance * long / short, 0.5, 1) +
/// sqrt(limit) (the growth only while short <= long), smoothed; a drop
/// multiplies the limit by backoff_ratio. The average starts from the
/// lowest latency of its first warmup_windows windows (a low one counting
/// once two windows in a row saw it), not from the first window alone: a
/// stall while it warms up is not learned as the healthy latency.
struct gradient_limit {
  /// How far the window's mean may exceed the long-term average before the
  /// limit falls; >= 1.
  double tolerance = 1.5;
  /// Windows the long-term average spans (an exponential average with
  /// weight 1/long_window for each new window); >= 1.
  double long_window = 600;
  /// Weight of the new limit against the old one; in (0, 1].
  double smoothing = 0.2;
  /// Factor applied to the limit on a window with timeouts or throttled answers; in (0, 1).
  double backoff_ratio = 0.9;
  /// A ceiling on the long-term average (0: none). During a long incident
  /// the average drifts up to the incident's latency and the limiter stops
  /// reacting; the ceiling keeps "healthy" from drifting past this.
  std::chrono::nanoseconds max_healthy_latency{0};
  /// Windows (with timed calls) the long-term average warms up over; >= 1.
  /// During them it is the lowest window mean seen twice in a row (the
  /// larger of a window's and the previous window's), and afterwards it
  /// averages from there. 1: the first window's mean, as before.
  std::uint32_t warmup_windows = 10;

  struct state {
    double long_ns = 0;      // 0: no window yet
    double previous_ns = 0;  // the last warm-up window's mean: a new low must be seen twice
    std::uint32_t windows = 0;  // windows with samples seen, counted up to warmup_windows
  };
  /// Whether `s` is as a fresh limit starts (what adaptive_limit::idle() asks).
  /// Every field leaves its default with the first timed window, together.
  [[nodiscard]] static constexpr bool at_rest(const state& s) noexcept { return s.long_ns == 0; }

  void check() const {
    constexpr std::string_view who = "armor::gradient_limit";
    if (!(tolerance >= 1.0) || !std::isfinite(tolerance)) detail::bad_algorithm_option(who, "tolerance must be >= 1", tolerance);
    if (!(long_window >= 1.0) || !std::isfinite(long_window)) {
      detail::bad_algorithm_option(who, "long_window must be >= 1", long_window);
    }
    if (!detail::in_half_unit(smoothing)) detail::bad_algorithm_option(who, "smoothing must be in (0, 1]", smoothing);
    if (!detail::in_open_unit(backoff_ratio)) {
      detail::bad_algorithm_option(who, "backoff_ratio must be in (0, 1)", backoff_ratio);
    }
    if (max_healthy_latency.count() < 0) {
      detail::bad_algorithm_option(who, "max_healthy_latency must not be negative (ns)",
                                   detail::nanos(max_healthy_latency));
    }
    if (warmup_windows < 1) detail::bad_algorithm_option(who, "warmup_windows must be at least 1", 0);
  }

  [[nodiscard]] double next(const adaptive_limit_window& w, state& s) const noexcept {
    if (w.drops() > 0) return w.limit * backoff_ratio;
    if (w.samples == 0) return w.limit;
    const double short_ns = std::max(detail::nanos(w.mean_latency), 1.0);
    if (s.windows < warmup_windows) {
      // Warming up: the first windows' latency is what "healthy" will mean
      // for the next long_window windows, so a stall then (a machine pause,
      // a cold cache) must not set it. Keep the lowest mean that two windows
      // in a row reached: a stall passes once two windows are clean, and
      // one lucky window does not set it either. Averaging the warm-up
      // windows (Gradient2's warm-up) would only dilute a stall.
      const double low = s.previous_ns == 0 ? short_ns : std::max(short_ns, s.previous_ns);
      s.long_ns = s.long_ns == 0 ? low : std::min(s.long_ns, low);
      s.previous_ns = short_ns;
      ++s.windows;
    } else {
      s.long_ns += (short_ns - s.long_ns) / long_window;
    }
    // After a spike, the average comes back quickly rather than at 1/long_window.
    if (s.long_ns > 2 * short_ns) s.long_ns *= 0.95;
    if (max_healthy_latency.count() > 0) s.long_ns = std::min(s.long_ns, detail::nanos(max_healthy_latency));
    if (w.app_limited()) return w.limit;
    const double gradient = std::clamp(tolerance * s.long_ns / short_ns, 0.5, 1.0);
    // Grow only while the window is no slower than the long-term average:
    // under steady overload the average catches up with the window from
    // below, and growing then would never stop (a queue hides the latency).
    const double growth = short_ns <= s.long_ns ? std::sqrt(w.limit) : 0.0;
    const double target = w.limit * gradient + growth;
    return w.limit * (1 - smoothing) + target * smoothing;
  }
};

/// Vegas: estimates the queue at the upstream from the lowest latency it
/// has seen (the baseline): queue = limit * (1 - baseline / mean). Below
/// alpha * log10(limit) the limit grows by log10(limit), above beta *
/// log10(limit) it shrinks by as much (log10 taken as at least 1). A drop
/// multiplies it by backoff_ratio. A window lowers the baseline only to the
/// larger of its minimum and the previous window's. It is re-taken every
/// probe_every windows (jittered), so an upstream that became slower for
/// good is not measured against its past forever.
struct vegas_limit {
  double alpha = 3;  ///< queue below alpha * log10(limit): grow; > 0
  double beta = 6;   ///< queue above beta * log10(limit): shrink; >= alpha
  /// Weight of the new limit against the old one; in (0, 1].
  double smoothing = 1.0;
  /// Factor applied to the limit on a window with timeouts or throttled answers; in (0, 1).
  double backoff_ratio = 0.9;
  /// Windows between baseline re-takes; 0: never. The baseline is then the
  /// probing window's candidate; the limit is not pinned while probing.
  std::uint32_t probe_every = 600;
  /// The interval varies by up to this fraction, drawn from `seed`; in [0, 1).
  double probe_jitter = 0.5;
  /// Seeds the jitter (the injectable random source: a fixed seed gives a fixed schedule).
  std::uint64_t seed = 0x5eed;
  /// A ceiling on the baseline (0: none), as gradient_limit's max_healthy_latency.
  std::chrono::nanoseconds max_healthy_latency{0};

  struct state {
    double baseline_ns = 0;       // 0: none yet
    double previous_min_ns = 0;   // the last window's minimum: a new low must be seen twice
    std::uint64_t windows = 0;    // windows since the baseline was last taken
    std::uint64_t next_probe = 0;  // 0: not drawn yet
    std::uint64_t rng = 0;
    bool seeded = false;
  };
  /// Whether `s` is as a fresh limit starts (what adaptive_limit::idle() asks).
  [[nodiscard]] static constexpr bool at_rest(const state& s) noexcept { return s.baseline_ns == 0; }

  void check() const {
    constexpr std::string_view who = "armor::vegas_limit";
    if (!(alpha > 0) || !std::isfinite(alpha)) detail::bad_algorithm_option(who, "alpha must be positive", alpha);
    if (!(beta >= alpha) || !std::isfinite(beta)) detail::bad_algorithm_option(who, "beta must be >= alpha", beta);
    if (!detail::in_half_unit(smoothing)) detail::bad_algorithm_option(who, "smoothing must be in (0, 1]", smoothing);
    if (!detail::in_open_unit(backoff_ratio)) {
      detail::bad_algorithm_option(who, "backoff_ratio must be in (0, 1)", backoff_ratio);
    }
    if (!(probe_jitter >= 0 && probe_jitter < 1)) {
      detail::bad_algorithm_option(who, "probe_jitter must be in [0, 1)", probe_jitter);
    }
    if (max_healthy_latency.count() < 0) {
      detail::bad_algorithm_option(who, "max_healthy_latency must not be negative (ns)",
                                   detail::nanos(max_healthy_latency));
    }
  }

  [[nodiscard]] double next(const adaptive_limit_window& w, state& s) const noexcept {
    if (w.drops() > 0) return w.limit * backoff_ratio;
    if (w.samples == 0) return w.limit;
    const double mean_ns = std::max(detail::nanos(w.mean_latency), 1.0);
    // A new low counts once two windows in a row have seen it: one lucky
    // fast sample does not collapse the baseline.
    const double low = std::max(detail::nanos(w.min_latency), 1.0);
    const double candidate = s.previous_min_ns == 0 ? low : std::max(low, s.previous_min_ns);
    s.previous_min_ns = low;
    ++s.windows;
    if (s.baseline_ns == 0 || (probe_every != 0 && s.windows >= probe_interval(s))) {
      s.baseline_ns = candidate;
      s.windows = 0;
      s.next_probe = 0;
    } else {
      s.baseline_ns = std::min(s.baseline_ns, candidate);
    }
    if (max_healthy_latency.count() > 0) s.baseline_ns = std::min(s.baseline_ns, detail::nanos(max_healthy_latency));
    const double step = std::max(1.0, std::log10(w.limit));
    const double queue = w.limit * (1 - s.baseline_ns / mean_ns);
    double target = w.limit;
    if (queue > beta * step) {
      target = w.limit - step;
    } else if (queue < alpha * step && !w.app_limited()) {
      target = w.limit + step;
    }
    return w.limit * (1 - smoothing) + target * smoothing;
  }

 private:
  // probe_every, moved by up to probe_jitter of itself, drawn once per interval.
  [[nodiscard]] std::uint64_t probe_interval(state& s) const noexcept {
    if (s.next_probe == 0) {
      if (!s.seeded) {
        s.rng = seed;
        s.seeded = true;
      }
      s.rng += detail::splitmix64_gamma;
      const double u = detail::unit_interval(detail::splitmix64_mix(s.rng));  // [0, 1)
      const double span = static_cast<double>(probe_every) * (1 + probe_jitter * (2 * u - 1));
      s.next_probe = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(span));
    }
    return s.next_probe;
  }
};

/// AIMD: adds `increase` after a window whose calls used the limit, and
/// multiplies by backoff_ratio after a window with a drop or with a mean
/// latency above latency_threshold.
struct aimd_limit {
  double increase = 1;                          ///< added per window; > 0
  double backoff_ratio = 0.9;                   ///< in (0, 1)
  std::chrono::nanoseconds latency_threshold{0};  ///< a mean above it is a drop (0: latency is ignored)

  struct state {};
  /// Keeps nothing between windows: always as a fresh limit starts.
  [[nodiscard]] static constexpr bool at_rest(const state&) noexcept { return true; }

  void check() const {
    constexpr std::string_view who = "armor::aimd_limit";
    if (!(increase > 0) || !std::isfinite(increase)) detail::bad_algorithm_option(who, "increase must be positive", increase);
    if (!detail::in_open_unit(backoff_ratio)) {
      detail::bad_algorithm_option(who, "backoff_ratio must be in (0, 1)", backoff_ratio);
    }
    if (latency_threshold.count() < 0) {
      detail::bad_algorithm_option(who, "latency_threshold must not be negative (ns)", detail::nanos(latency_threshold));
    }
  }

  [[nodiscard]] double next(const adaptive_limit_window& w, state&) const noexcept {
    const bool slow = latency_threshold.count() > 0 && w.samples > 0 && w.mean_latency > latency_threshold;
    if (w.drops() > 0 || slow) return w.limit * backoff_ratio;
    if (w.samples == 0 || w.app_limited()) return w.limit;
    return w.limit + increase;
  }
};

static_assert(limit_algorithm<gradient_limit> && limit_algorithm<vegas_limit> && limit_algorithm<aimd_limit>);

/// The options of armor::adaptive_limit. An aggregate:
/// `{.initial_limit = 20, .min_limit = 4, .max_limit = 200, .window = 500ms}`.
template <class Algorithm = gradient_limit>
struct adaptive_limit_options {
  /// The limit before the first window closes; in [min_limit, max_limit].
  std::uint32_t initial_limit = 20;
  /// The limit never falls below this; >= 1.
  std::uint32_t min_limit = 1;
  /// The limit never rises above this; below 2^21.
  std::uint32_t max_limit = 1000;
  /// How long a window lasts at least; > 0.
  std::chrono::nanoseconds window = std::chrono::seconds{1};
  /// A window closes only once it has this many timed calls (or a drop);
  /// until then it stays open. >= 1.
  std::uint32_t min_samples = 10;
  /// Normal calls are admitted while fewer than normal_share * limit are in
  /// flight (at least 1); in (0, 1]. Critical calls use the whole limit.
  double normal_share = 0.9;
  /// Sheddable calls are admitted while fewer than sheddable_share * limit
  /// are in flight (at least 1); in (0, normal_share].
  double sheddable_share = 0.75;
  /// Count admissions and refusals for stats() (two relaxed counters; off
  /// by default so that a refusal writes nothing).
  bool count_calls = false;
  /// Callers that may wait for a slot at once; 0 (the default) refuses at
  /// once. Critical calls wait ahead of normal ones; sheddable calls never
  /// wait. In [0, 2^31).
  std::uint32_t max_queue = 0;
  /// How long a queued caller waits at most (its deadline may cut it
  /// shorter); > 0 when max_queue > 0.
  std::chrono::nanoseconds max_wait = std::chrono::seconds{1};
  /// The algorithm and its parameters.
  Algorithm algorithm{};
};

template <class Algorithm, class Clock, class Listener>
class adaptive_limit;

namespace detail {

/// What an adaptive limit's reconfigure() changes and a window's close reads
/// whole (detail::config_cell: 5 words).
struct adaptive_limit_config {
  std::int64_t window_ns = 0;
  std::uint32_t min_samples = 0;
  std::uint32_t min_limit = 0;
  std::uint32_t max_limit = 0;
  double normal_share = 0;
  double sheddable_share = 0;
};

/// One adaptive limit's heap block: the shared core, and what only the
/// window's closer touches.
template <class Algorithm>
struct adaptive_limit_block : adaptive_limit_core {
  Algorithm algorithm;  // the closer's (reconfigure() holds the window's claim to change it)
  typename Algorithm::state state{};
  double limit = 0;  // unrounded; the closer's
  std::atomic<bool> at_rest{true};  // the state is as it started (Algorithm::at_rest, or no window closed yet)
  std::atomic<std::uint32_t> published{0};
  std::atomic<std::uint64_t> windows{0};
  std::atomic<std::uint64_t> samples_total{0};
  std::atomic<std::uint64_t> timeouts_total{0};
  std::atomic<std::uint64_t> throttled_total{0};

  // Changed by reconfigure() only.
  config_cell<adaptive_limit_config> config;
  std::atomic<std::int64_t> window_ns{0};      // config.window_ns, for the settle path's one comparison
  std::atomic<std::int64_t> max_wait_ns{0};    // for callers that queue
  std::atomic<std::uint32_t> rest_limit{0};    // initial_limit: where a fresh limit starts (idle())
  std::mutex options_mutex;                    // guards the limit's copy of its options (options(), reconfigure())

  adaptive_limit_block(const Algorithm& a, const adaptive_limit_config& c) : algorithm(a), config(c) {}
};

struct adaptive_permit_access;

}  // namespace detail

/// An adaptive limit's receipt for one call in flight, or for a place in
/// its queue. Move-only; dropping it unsettled (an exception, a destroyed
/// coroutine) gives back what it holds without a latency sample: the slot,
/// or the place (if a slot was handed to the place meanwhile, that slot,
/// which goes on to the next in line). Must not outlive its adaptive_limit.
class adaptive_limit_permit {
 public:
  adaptive_limit_permit() noexcept = default;
  adaptive_limit_permit(adaptive_limit_permit&& o) noexcept
      : core_(std::exchange(o.core_, nullptr)),
        waiter_(std::exchange(o.waiter_, nullptr)),
        start_(o.start_),
        level_(o.level_) {}
  adaptive_limit_permit& operator=(adaptive_limit_permit&& o) noexcept {
    if (this != &o) {
      release();
      core_ = std::exchange(o.core_, nullptr);
      waiter_ = std::exchange(o.waiter_, nullptr);
      start_ = o.start_;
      level_ = o.level_;
    }
    return *this;
  }
  adaptive_limit_permit(const adaptive_limit_permit&) = delete;
  adaptive_limit_permit& operator=(const adaptive_limit_permit&) = delete;
  ~adaptive_limit_permit() { release(); }

  /// True while it holds a slot or a place in the queue.
  [[nodiscard]] explicit operator bool() const noexcept { return core_ != nullptr; }
  /// True while it holds a place in the queue (not yet a slot).
  [[nodiscard]] bool queued() const noexcept { return waiter_ != nullptr; }
  /// When the call was admitted (for a queued call: when it left the queue
  /// with a slot, on the limit's clock; its wait is not part of its latency).
  [[nodiscard]] timestamp started() const noexcept { return start_; }

  /// Ends a wait in the queue (see armor::queue_waiter): true when a slot
  /// was handed over (the permit now holds it), false when not (the permit
  /// is empty, the place given back). For a permit that holds a slot: true.
  [[nodiscard]] bool leave_queue() noexcept {
    if (core_ == nullptr) return false;
    if (waiter_ == nullptr) return true;
    if (!core_->leave_queue(*std::exchange(waiter_, nullptr), level_)) {
      core_ = nullptr;
      return false;
    }
    start_ = timestamp{std::chrono::nanoseconds{core_->granted_at(start_.time_since_epoch().count())}};
    return true;
  }

  /// Gives the slot or the place back now, recording nothing; the permit is
  /// empty afterwards.
  void release() noexcept {
    detail::adaptive_limit_core* c = std::exchange(core_, nullptr);
    if (c == nullptr) return;
    if (queue_waiter* w = std::exchange(waiter_, nullptr); w != nullptr && !c->leave_queue(*w, level_)) return;
    c->leave();
  }

 private:
  friend struct detail::adaptive_permit_access;
  adaptive_limit_permit(detail::adaptive_limit_core* c, timestamp start, queue_waiter* w = nullptr,
                        unsigned level = 0) noexcept
      : core_(c), waiter_(w), start_(start), level_(static_cast<std::uint8_t>(level)) {}

  detail::adaptive_limit_core* core_ = nullptr;
  queue_waiter* waiter_ = nullptr;
  timestamp start_{};
  std::uint8_t level_ = 0;
};

namespace detail {
struct adaptive_permit_access {
  static adaptive_limit_permit make(adaptive_limit_core* c, timestamp start) noexcept { return {c, start}; }
  static adaptive_limit_permit make_queued(adaptive_limit_core* c, timestamp start, queue_waiter& w,
                                           unsigned level) noexcept {
    return {c, start, &w, level};
  }
  static adaptive_limit_core* core(const adaptive_limit_permit& p) noexcept { return p.core_; }
  static bool queued(const adaptive_limit_permit& p) noexcept { return p.waiter_ != nullptr; }
  static void disarm(adaptive_limit_permit& p) noexcept { p.core_ = nullptr; }
};
}  // namespace detail

/// A snapshot of an adaptive limit, read with relaxed loads (field by field).
struct adaptive_limit_stats {
  std::uint32_t limit = 0;                   ///< the limit now (critical calls)
  std::uint32_t in_flight = 0;               ///< calls in flight now
  std::chrono::nanoseconds mean_latency{0};  ///< mean latency of the last closed window
  std::uint64_t windows = 0;                 ///< windows closed
  std::uint64_t samples = 0;                 ///< calls timed in closed windows
  std::uint64_t timeouts = 0;                ///< timeouts seen in closed windows
  std::uint64_t throttled = 0;               ///< throttled answers seen in closed windows
  bool counting = false;                     ///< whether the counters below are kept (count_calls)
  std::uint64_t admitted = 0;                ///< calls admitted
  std::uint64_t refused = 0;                 ///< calls refused
  bool queueing = false;                     ///< whether the limit has a queue (max_queue > 0): the fields below
  std::uint32_t queued = 0;                  ///< callers waiting for a slot now
  std::uint32_t max_queue = 0;               ///< the bound on callers waiting
  std::uint64_t abandoned = 0;               ///< callers that left the queue without a slot

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = adaptive_limit_stats;
    return std::tuple{
        armor::gauge("limit", &s::limit, "armor_adaptive_limit_limit", "The adaptive concurrency limit now."),
        armor::gauge("in_flight", &s::in_flight, "armor_adaptive_limit_in_flight",
                     "Calls in flight under the adaptive limit now."),
        armor::gauge("mean_latency", &s::mean_latency, "armor_adaptive_limit_latency_seconds",
                     "Mean latency of the adaptive limit's last closed window."),
        armor::counter("windows", &s::windows, "armor_adaptive_limit_windows_total",
                       "Windows the adaptive limit has closed."),
        armor::counter("samples", &s::samples, "armor_adaptive_limit_samples_total",
                       "Calls the adaptive limit timed in closed windows."),
        armor::counter("timeouts", &s::timeouts, "armor_adaptive_limit_drops_total",
                       "Signals to reduce the adaptive limit saw: timeouts and throttled answers.")
            .labelled("reason", "timeout"),
        armor::counter("throttled", &s::throttled, "armor_adaptive_limit_drops_total",
                       "Signals to reduce the adaptive limit saw: timeouts and throttled answers.")
            .labelled("reason", "throttled"),
        armor::counter("admitted", &s::admitted, "armor_adaptive_limit_admitted_total",
                       "Calls the adaptive limit admitted (count_calls only).")
            .when_counting(),
        armor::counter("refused", &s::refused, "armor_adaptive_limit_refused_total",
                       "Calls the adaptive limit refused (count_calls only).")
            .when_counting(),
        armor::gauge("queued", &s::queued, "armor_adaptive_limit_queued",
                     "Callers waiting for a slot under the adaptive limit now (with a queue only).")
            .when(&s::queueing),
        armor::gauge("max_queue", &s::max_queue, "armor_adaptive_limit_max_queue",
                     "The adaptive limit's bound on callers waiting (with a queue only).")
            .when(&s::queueing),
        armor::counter("abandoned", &s::abandoned, "armor_adaptive_limit_abandoned_total",
                       "Callers that left the adaptive limit's queue without a slot (with a queue only).")
            .when(&s::queueing),
    };
  }
};

/// What happened, for an adaptive limit's listener.
enum class adaptive_limit_event_kind : std::uint8_t {
  limit_changed,  ///< a window closed and the (rounded) limit moved
  refused,        ///< a call was refused (with a queue: the queue was full, or a sheddable call)
  queued,         ///< a caller joined the queue
  abandoned,      ///< a queued caller left without a slot: max_wait, its deadline, cancellation, its permit dropped
};

/// The enumerator's name: "limit_changed", "refused", "queued", "abandoned".
[[nodiscard]] constexpr std::string_view to_string(adaptive_limit_event_kind k) noexcept {
  switch (k) {
    case adaptive_limit_event_kind::limit_changed: return "limit_changed";
    case adaptive_limit_event_kind::refused: return "refused";
    case adaptive_limit_event_kind::queued: return "queued";
    case adaptive_limit_event_kind::abandoned: return "abandoned";
  }
  return "unknown";
}

/// What an adaptive limit's listener hears.
struct adaptive_limit_event {
  adaptive_limit_event_kind kind = adaptive_limit_event_kind::refused;
  std::uint32_t limit = 0;           ///< the limit now
  std::uint32_t previous_limit = 0;  ///< limit_changed: the limit before
  std::uint32_t in_flight = 0;       ///< calls in flight
  armor::priority priority = armor::priority::normal;  ///< refused, queued, abandoned: the call's
  /// In armor::keyed, the key served; otherwise the constructor's (empty by
  /// default). Valid during the call only.
  std::string_view key{};

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = adaptive_limit_event;
    return std::tuple{armor::field("kind", &e::kind),       armor::field("limit", &e::limit),
                      armor::field("previous_limit", &e::previous_limit), armor::field("in_flight", &e::in_flight),
                      armor::field("priority", &e::priority), armor::field("key", &e::key)};
  }
};

static_assert(decision_like<decision<adaptive_limit_permit>>);

/// An adaptive concurrency limit, and an armor::policy (see the top of
/// this header and docs/adaptive_limit.md).
///
/// Admission is one load of the published thresholds and one 16-byte CAS
/// loop on the in-flight count: in flight never exceeds the limit in force
/// when the call entered. Settling a call gives the slot back and adds its
/// sample (count and latency together) in one 16-byte CAS, after lowering
/// the window's minimum if it must. The call that finds the window over
/// claims it (one CAS on its start), takes count and sum in one step, runs
/// the algorithm, publishes the limit and the thresholds (two relaxed
/// stores), tells the listener, then reopens the window. A window times at
/// most 2^32 - 1 calls (and a latency sum below 2^63 ns); later calls in it
/// settle untimed. A lowered limit does not evict calls in flight: new calls
/// wait (are refused) until the count falls below it.
///
/// With max_queue > 0 it is an armor::queueing_policy: a normal or critical
/// call that finds no room may wait in a bounded FIFO queue (critical calls
/// ahead of normal ones) for at most max_wait; a freed slot, or the room a
/// higher limit makes, goes to the head of the queue, and no newcomer takes
/// a slot while anyone waits. As in armor::bulkhead, the queue is a list
/// under a mutex that only callers that wait, and releases that find a
/// waiter, take; the fast paths see one bit in the word they CAS anyway.
///
/// What the verdict means to it: success and failure are latency samples;
/// timeout and throttled are drops (signals to reduce, not timed);
/// rejected and cancelled are neither.
///
/// Thread-safety: every member may be called concurrently, except moving
/// (move before sharing; share with std::ref). Constructors throw
/// armor::error(invalid_argument) naming a bad option, and allocate once.
template <class Algorithm = gradient_limit, class Clock = steady_clock, class Listener = no_listener>
class adaptive_limit {
  static_assert(limit_algorithm<Algorithm>,
                "armor::adaptive_limit: Algorithm must meet armor::limit_algorithm (state, check(), "
                "next(const adaptive_limit_window&, state&) noexcept -> double)");
  static_assert(armor::clock<Clock>, "armor::adaptive_limit: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, adaptive_limit_event>,
                "armor::adaptive_limit: Listener must be no_listener or callable as "
                "listener(const armor::adaptive_limit_event&) noexcept (or std::ref to such a callable)");

 public:
  using permit_type = adaptive_limit_permit;
  using options_type = adaptive_limit_options<Algorithm>;
  using clock_type = Clock;
  using listener_type = Listener;
  using algorithm_type = Algorithm;

  /// The driver reads the clock after the operation: settle() times the call.
  static constexpr bool needs_completion_time = true;

  explicit adaptive_limit(const options_type& options = {}, Clock clock = Clock{}, Listener listener = Listener{})
      : adaptive_limit(options, std::move(clock), std::move(listener), std::string_view{}) {}

  /// An adaptive limit whose events carry `key`: what armor::keyed builds
  /// for each key. `key` must outlive it.
  adaptive_limit(const options_type& options, Clock clock, Listener listener, std::string_view key)
      : options_(checked(options)),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        key_(key),
        block_(std::make_unique<detail::adaptive_limit_block<Algorithm>>(options.algorithm, config_of(options))),
        current_(std::make_unique<options_type>(options)) {
    block_->limit = options_.initial_limit;
    block_->count_calls = options_.count_calls;
    block_->max_queue.store(options_.max_queue, std::memory_order_relaxed);
    block_->window_ns.store(options_.window.count(), std::memory_order_relaxed);
    block_->max_wait_ns.store(options_.max_wait.count(), std::memory_order_relaxed);
    block_->rest_limit.store(options_.initial_limit, std::memory_order_relaxed);
    publish(block_->config.load(), options_.initial_limit);
    block_->window_start.store(read_clock().time_since_epoch().count(), std::memory_order_relaxed);
    hook();
  }

  /// Not thread-safe: move an adaptive limit before sharing it (nobody may
  /// be queued).
  adaptive_limit(adaptive_limit&& o) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                              std::is_nothrow_move_constructible_v<Listener> &&
                                              std::is_nothrow_move_constructible_v<options_type>)
      : options_(std::move(o.options_)),
        clock_(std::move(o.clock_)),
        listener_(std::move(o.listener_)),
        key_(o.key_),
        block_(std::move(o.block_)),
        current_(std::move(o.current_)) {
    hook();
  }
  adaptive_limit(const adaptive_limit&) = delete;
  adaptive_limit& operator=(const adaptive_limit&) = delete;
  adaptive_limit& operator=(adaptive_limit&&) = delete;
  ~adaptive_limit() = default;

  // ---------------------------------------------------------------- policy protocol

  /// Admits the call if fewer calls than its priority's threshold are in
  /// flight and nobody waits in the queue; else, with a queue and for a
  /// normal or critical call, invites the driver to queue (enqueue());
  /// else refuses it with concurrency_limited, retryable, with retry_after
  /// the time a slot takes to free on average (the last window's mean
  /// latency / limit) once one is known.
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<adaptive_limit_permit> admit(context& ctx) noexcept {
    const unsigned level = level_of(ctx.priority());
    if (const std::uint32_t n = block_->try_enter(level); ARMOR_LIKELY(n != 0)) {
      return admission<adaptive_limit_permit>::admit(entered(n, ctx.now()));
    }
    if (options_.max_queue != 0 && level < 2) {
      auto a = admission<adaptive_limit_permit>::queue(errc::concurrency_limited);
      a.retry_after = hint();  // for a driver that cannot queue
      return a;
    }
    return refusal(ctx.priority());
  }

  /// Policy protocol (queueing): puts the driver's waiter in line. Answers
  /// admitted (room came free and nobody of the call's priority or above
  /// waits), rejected (the queue is full, a sheddable call, or no queue:
  /// concurrency_limited), or queued for at most max_wait (the permit holds
  /// the place; see queue_waiter).
  [[nodiscard]] admission<adaptive_limit_permit> enqueue(context& ctx, queue_waiter& waiter) noexcept {
    const unsigned level = level_of(ctx.priority());
    if (options_.max_queue == 0 || level >= 2) return refusal(ctx.priority());
    std::uint32_t n = 0;
    switch (block_->join(waiter, level, n)) {
      case detail::adaptive_limit_core::join_result::entered:
        return admission<adaptive_limit_permit>::admit(entered(n, ctx.now()));
      case detail::adaptive_limit_core::join_result::queued: {
        tell(adaptive_limit_event_kind::queued, ctx.priority());
        auto a = admission<adaptive_limit_permit>::queued(
            std::chrono::nanoseconds{block_->max_wait_ns.load(std::memory_order_relaxed)},
            detail::adaptive_permit_access::make_queued(block_.get(), ctx.now(), waiter, level),
            errc::concurrency_limited);
        a.retry_after = hint();  // for a wait that ends unserved after max_wait
        return a;
      }
      case detail::adaptive_limit_core::join_result::full: break;
    }
    return refusal(ctx.priority());
  }

  /// Records the verdict of a call it admitted; `ctx.now()` is when it ended.
  ARMOR_ALWAYS_INLINE void settle(context& ctx, adaptive_limit_permit&& permit, const verdict& v) noexcept {
    record(std::move(permit), v, ctx.now());
  }

  // ---------------------------------------------------------------- standalone use

  /// Asks to start a call now (the limit's clock).
  [[nodiscard]] decision<adaptive_limit_permit> try_acquire(armor::priority p = armor::priority::normal) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(read_clock(), p);
  }

  /// try_acquire() at `now`: granted with a permit to hand back to
  /// record(); or refused with concurrency_limited and retry_after() (the
  /// last window's mean latency / limit; nanoseconds::max() before any
  /// window closed).
  [[nodiscard]] ARMOR_ALWAYS_INLINE decision<adaptive_limit_permit> try_acquire(
      timestamp now, armor::priority p = armor::priority::normal) noexcept {
    if (const std::uint32_t n = block_->try_enter(level_of(p)); ARMOR_LIKELY(n != 0)) {
      return decision<adaptive_limit_permit>::granted(entered(n, now));
    }
    // Normal callers waiting set the queue bit, which refuses the lock-free
    // path above: a critical call keeps its reserve by entering under the
    // queue's mutex when no critical caller waits and there is room.
    if (level_of(p) == 0 && options_.max_queue != 0 && block_->queue_flagged()) {
      if (const std::uint32_t n = block_->try_enter_locked(0); n != 0) {
        return decision<adaptive_limit_permit>::granted(entered(n, now));
      }
    }
    return refuse(p);
  }

  /// Records the verdict of a call that ended at `end` and empties the
  /// permit. A permit that is empty, still queued, or from another limit is
  /// only released.
  ARMOR_ALWAYS_INLINE void record(adaptive_limit_permit&& permit, const verdict& v, timestamp end) noexcept {
    using access = detail::adaptive_permit_access;
    if (ARMOR_UNLIKELY(access::core(permit) != block_.get() || access::queued(permit))) {
      permit.release();
      return;
    }
    access::disarm(permit);
    switch (v.kind) {
      case outcome::success:
      case outcome::failure:
        block_->leave_with_sample(std::max<std::int64_t>((end - permit.started()).count(), 0));
        break;
      case outcome::timeout:
        block_->leave();
        block_->timeouts.fetch_add(1, std::memory_order_relaxed);
        break;
      case outcome::throttled:
        block_->leave();
        block_->throttled.fetch_add(1, std::memory_order_relaxed);
        break;
      case outcome::rejected:
      case outcome::cancelled: block_->leave(); break;
    }
    maybe_close(end.time_since_epoch().count());
  }

  /// Records the verdict of a call that ended now (the limit's clock).
  void record(adaptive_limit_permit&& permit, const verdict& v) noexcept(noexcept(std::declval<const Clock&>().now())) {
    record(std::move(permit), v, read_clock());
  }

  /// Closes the window if it is over at `now` (and has min_samples timed
  /// calls, or a drop). Settling a call does this already; call it from a
  /// timer when calls are rare, or to end windows at exact times in tests.
  void update(timestamp now) noexcept { maybe_close(now.time_since_epoch().count()); }

  // ---------------------------------------------------------------- reading

  /// The limit now (what critical calls may fill).
  [[nodiscard]] std::uint32_t limit() const noexcept {
    return block_->published.load(std::memory_order_relaxed);
  }
  /// The threshold for calls of priority `p` now (a value past sheddable counts as sheddable, as in try_acquire).
  [[nodiscard]] std::uint32_t limit(armor::priority p) const noexcept {
    return detail::threshold_of(block_->thresholds.load(std::memory_order_relaxed), level_of(p));
  }
  /// Calls in flight now.
  [[nodiscard]] std::uint32_t in_flight() const noexcept { return block_->in_flight(); }
  /// Callers waiting in the queue now.
  [[nodiscard]] std::uint32_t queued() const noexcept { return block_->queued(); }

  [[nodiscard]] adaptive_limit_stats stats() const noexcept {
    const auto& b = *block_;
    adaptive_limit_stats s;
    s.limit = b.published.load(std::memory_order_relaxed);
    s.in_flight = b.in_flight();
    s.mean_latency = std::chrono::nanoseconds{b.last_mean_ns.load(std::memory_order_relaxed)};
    s.windows = b.windows.load(std::memory_order_relaxed);
    s.samples = b.samples_total.load(std::memory_order_relaxed);
    s.timeouts = b.timeouts_total.load(std::memory_order_relaxed);
    s.throttled = b.throttled_total.load(std::memory_order_relaxed);
    s.counting = options_.count_calls;
    s.admitted = b.admitted.load(std::memory_order_relaxed);
    s.refused = b.refused.load(std::memory_order_relaxed);
    s.queueing = options_.max_queue != 0;
    s.queued = b.queued();
    s.max_queue = b.max_queue.load(std::memory_order_relaxed);
    s.abandoned = b.abandoned.load(std::memory_order_relaxed);
    return s;
  }

  /// For armor::keyed: a fresh instance would decide the same. Nothing in
  /// flight, nothing pending in the open window (no timed call, timeout or
  /// throttled answer), the limit back where it started, and the algorithm's
  /// state at rest: its `at_rest(state)` if it has one, else no window closed
  /// yet. A gradient or Vegas limit that learned a latency is never idle (a
  /// fresh one could learn an incident's latency as healthy); keyed evicts
  /// it only as least recently used.
  [[nodiscard]] bool idle(timestamp) const noexcept {
    const auto& b = *block_;
    if (b.pair.first.load(std::memory_order_relaxed) != 0) return false;  // in flight or samples pending
    if (b.timeouts.load(std::memory_order_relaxed) + b.throttled.load(std::memory_order_relaxed) != 0) return false;
    if (limit() != b.rest_limit.load(std::memory_order_relaxed)) return false;
    // The closer keeps the flag (the state itself is the closer's alone).
    return b.at_rest.load(std::memory_order_relaxed);
  }

  /// The options in force: those given at construction, or to the last
  /// reconfigure() (a copy, under a mutex no call takes).
  [[nodiscard]] options_type options() const {
    const std::lock_guard lock(block_->options_mutex);
    return *current_;
  }

  /// Changes the bounds and the rest at run time (docs/reconfiguration.md).
  /// `options` is validated as by the constructor; count_calls, and whether
  /// there is a queue (max_queue > 0), are fixed at construction and must
  /// equal the limit's. Everything else may change: min_limit, max_limit,
  /// window, min_samples, normal_share, sheddable_share, max_queue (its
  /// size), max_wait, the algorithm's parameters (its learned state is
  /// kept), and initial_limit (where a fresh limit starts: keyed's new
  /// entries, and idle()). The current limit is clamped into the new
  /// bounds at once and published with the new shares; the calls in flight
  /// are not evicted (a lowered limit admits nobody until fewer are in
  /// flight); room a raised limit makes goes to the queue at once. Throws
  /// armor::error(invalid_argument) naming the option; the old options then
  /// stay. Takes the window's claim, as a closing window does (waiting, by
  /// yielding, for a close under way to end): closes and reconfigurations
  /// never interleave, and the calls never wait for it. A window's close
  /// reads the bounds and shares whole, never part old, part new.
  void reconfigure(const options_type& options) {
    constexpr const char* who = "armor::adaptive_limit::reconfigure";
    (void)checked(options);
    if (options.count_calls != options_.count_calls) detail::fixed_at_construction(who, "count_calls");
    if ((options.max_queue != 0) != (options_.max_queue != 0)) {
      detail::fixed_at_construction(who, "max_queue (zero or not: whether there is a queue)");
    }
    auto& b = *block_;
    std::int64_t start = b.window_start.load(std::memory_order_relaxed);
    while (start == detail::window_closing || !b.claim(start)) {
      std::this_thread::yield();
      start = b.window_start.load(std::memory_order_relaxed);
    }
    const detail::adaptive_limit_config c = config_of(options);
    b.config.store(c);
    b.window_ns.store(c.window_ns, std::memory_order_relaxed);
    b.max_wait_ns.store(options.max_wait.count(), std::memory_order_relaxed);
    b.rest_limit.store(options.initial_limit, std::memory_order_relaxed);
    b.algorithm = options.algorithm;
    b.limit = std::clamp(b.limit, static_cast<double>(c.min_limit), static_cast<double>(c.max_limit));
    const std::uint32_t before = b.published.load(std::memory_order_relaxed);
    const auto rounded = static_cast<std::uint32_t>(b.limit);
    publish(c, rounded);
    if (options_.max_queue != 0) {
      b.max_queue.store(options.max_queue, std::memory_order_relaxed);  // read by joiners under the queue's mutex
      b.serve_waiters();
    }
    {
      const std::lock_guard lock(b.options_mutex);
      *current_ = options;
    }
    if (rounded != before) tell_limit(rounded, before);
    b.reopen(start);  // the window goes on from where it began
  }
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  [[nodiscard]] static constexpr unsigned level_of(armor::priority p) noexcept {
    return static_cast<unsigned>(p) < 3 ? static_cast<unsigned>(p) : 2U;
  }

  [[nodiscard]] timestamp read_clock() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return to_timestamp(clock_.now());
  }

  // A slot taken (the count after entering is n): noted, counted, a permit.
  ARMOR_ALWAYS_INLINE adaptive_limit_permit entered(std::uint32_t n, timestamp now) noexcept {
    block_->note_in_flight(n);
    if (options_.count_calls) block_->admitted.fetch_add(1, std::memory_order_relaxed);
    return detail::adaptive_permit_access::make(block_.get(), now);
  }

  // The time a slot takes to free on average (the last window's mean
  // latency / limit); none before a window closed.
  [[nodiscard]] std::optional<std::chrono::nanoseconds> hint() const noexcept {
    const std::int64_t mean = block_->last_mean_ns.load(std::memory_order_relaxed);
    if (mean <= 0) return std::nullopt;
    return std::chrono::nanoseconds{std::max<std::int64_t>(mean / std::max(limit(), 1U), 1)};
  }

  decision<adaptive_limit_permit> refuse(armor::priority p) noexcept {
    if (options_.count_calls) block_->refused.fetch_add(1, std::memory_order_relaxed);
    tell(adaptive_limit_event_kind::refused, p);
    return decision<adaptive_limit_permit>::refused(errc::concurrency_limited,
                                                    hint().value_or(std::chrono::nanoseconds::max()));
  }

  admission<adaptive_limit_permit> refusal(armor::priority p) noexcept {
    auto d = refuse(p);
    std::optional<std::chrono::nanoseconds> after;
    if (d.retry_after() != std::chrono::nanoseconds::max()) after = d.retry_after();
    return admission<adaptive_limit_permit>::reject(errc::concurrency_limited, after, true);
  }

  // Tells the listener (if any) about a call's event, with the counts read now.
  void tell(adaptive_limit_event_kind kind, armor::priority p) noexcept {
    detail::notify(listener_, [&] {
      adaptive_limit_event e;
      e.kind = kind;
      e.limit = limit();
      e.in_flight = in_flight();
      e.priority = p;
      e.key = key_;
      return e;
    });
  }

  // Points the core's hooks at this limit: the queue tells it of a waiter
  // that abandoned, and asks its clock when a granted waiter starts.
  void hook() noexcept {
    if (!block_) return;
    block_->hook_owner = this;
    block_->on_abandon = &on_abandon;
    block_->read_now = &read_now;
  }

  static void on_abandon(void* self, unsigned level) noexcept {
    static_cast<adaptive_limit*>(self)->tell(adaptive_limit_event_kind::abandoned, static_cast<armor::priority>(level));
  }

  static std::int64_t read_now(const void* self) noexcept {
    if constexpr (noexcept(std::declval<const Clock&>().now())) {
      return static_cast<const adaptive_limit*>(self)->read_clock().time_since_epoch().count();
    } else {
      try {
        return static_cast<const adaptive_limit*>(self)->read_clock().time_since_epoch().count();
      } catch (...) {
        return std::numeric_limits<std::int64_t>::min();
      }
    }
  }

  // Closes the window if it is over and has enough to say; exactly one
  // caller wins the claim.
  ARMOR_ALWAYS_INLINE void maybe_close(std::int64_t now) noexcept {
    auto& b = *block_;
    const std::int64_t start = b.window_start.load(std::memory_order_relaxed);
    if (ARMOR_LIKELY(start == detail::window_closing || now - start < b.window_ns.load(std::memory_order_relaxed))) {
      return;
    }
    close(start, now);
  }

  void close(std::int64_t start, std::int64_t now) noexcept {
    auto& b = *block_;
    const bool drops = b.timeouts.load(std::memory_order_relaxed) + b.throttled.load(std::memory_order_relaxed) != 0;
    if (!drops && b.samples() < b.config.load().min_samples) return;
    if (!b.claim(start)) return;
    // Read whole under the claim: reconfigure() takes the claim to change it.
    const detail::adaptive_limit_config c = b.config.load();
    if (now - start < c.window_ns) {  // lengthened meanwhile: not over after all
      b.reopen(start);
      return;
    }
    adaptive_limit_window w;
    w.limit = b.limit;
    // Count and sum in one step, then the minimum: a counted call lowered the
    // minimum before it counted, so only a call whose minimum an earlier
    // window took can leave this one without one.
    const auto totals = b.take_samples();
    const std::int64_t low = b.min_latency_ns.exchange(std::numeric_limits<std::int64_t>::max(), std::memory_order_relaxed);
    if (totals.samples != 0 && low == std::numeric_limits<std::int64_t>::max()) {
      b.return_samples(totals);  // no valid minimum: the window stays open
      b.reopen(start);
      return;
    }
    w.samples = totals.samples;
    if (w.samples != 0) {
      w.mean_latency = std::chrono::nanoseconds{static_cast<std::int64_t>(totals.sum_ns / w.samples)};
      w.min_latency = std::chrono::nanoseconds{low};
    }
    // The next window starts with what is in flight now.
    w.max_in_flight = b.max_in_flight.exchange(b.in_flight(), std::memory_order_relaxed);
    w.timeouts = b.timeouts.exchange(0, std::memory_order_relaxed);
    w.throttled = b.throttled.exchange(0, std::memory_order_relaxed);
    w.duration = std::chrono::nanoseconds{now - start};
    w.sheddable_limit = detail::threshold_of(b.thresholds.load(std::memory_order_relaxed), 2);

    double next = b.algorithm.next(w, b.state);
    if (!(next == next)) next = w.limit;  // NaN from a user's algorithm: keep the limit
    next = std::clamp(next, static_cast<double>(c.min_limit), static_cast<double>(c.max_limit));
    b.limit = next;
    if constexpr (requires(const typename Algorithm::state& st) {
                    { Algorithm::at_rest(st) } -> std::convertible_to<bool>;
                  }) {
      b.at_rest.store(static_cast<bool>(Algorithm::at_rest(b.state)), std::memory_order_relaxed);
    } else {
      b.at_rest.store(false, std::memory_order_relaxed);
    }
    const std::uint32_t before = b.published.load(std::memory_order_relaxed);
    const auto rounded = static_cast<std::uint32_t>(next);
    publish(c, rounded);
    // Room the new limit made goes to the queue (under its mutex: a caller
    // joining it either is seen here or reads the new thresholds).
    if (options_.max_queue != 0) b.serve_waiters();
    if (w.samples != 0) b.last_mean_ns.store(w.mean_latency.count(), std::memory_order_relaxed);
    b.windows.fetch_add(1, std::memory_order_relaxed);
    b.samples_total.fetch_add(w.samples, std::memory_order_relaxed);
    b.timeouts_total.fetch_add(w.timeouts, std::memory_order_relaxed);
    b.throttled_total.fetch_add(w.throttled, std::memory_order_relaxed);
    // The listener hears the change before the window reopens: the next
    // close waits for this one, so limit_changed events arrive in order.
    if (rounded != before) tell_limit(rounded, before);
    b.reopen(now);
  }

  void tell_limit(std::uint32_t rounded, std::uint32_t before) noexcept {
    detail::notify(listener_, [&] {
      adaptive_limit_event e;
      e.kind = adaptive_limit_event_kind::limit_changed;
      e.limit = rounded;
      e.previous_limit = before;
      e.in_flight = in_flight();
      e.key = key_;
      return e;
    });
  }

  [[nodiscard]] static detail::adaptive_limit_config config_of(const options_type& o) noexcept {
    detail::adaptive_limit_config c;
    c.window_ns = o.window.count();
    c.min_samples = o.min_samples;
    c.min_limit = o.min_limit;
    c.max_limit = o.max_limit;
    c.normal_share = o.normal_share;
    c.sheddable_share = o.sheddable_share;
    return c;
  }

  // The threshold for a share of limit l: floor(l * share), plus 1e-7 so
  // that a decimal share stored inexactly (0.7 is 0.6999...) does not lose a
  // call (floor(90 * 0.7) would be 62). Exact for shares of up to 6 decimals:
  // for l < 2^21 the product's rounding error is below 2^-32, and a product
  // that is not a whole number is at least 1e-6 away from one.
  [[nodiscard]] static std::uint32_t share_of(std::uint32_t l, double f) noexcept {
    return static_cast<std::uint32_t>(std::floor(static_cast<double>(l) * f + 1e-7));
  }

  // Publishes a limit and the thresholds derived from it. A lower priority
  // whose share is below the one above keeps at least one slot from it when
  // it can: normal <= l - 1 for l >= 2, sheddable <= normal - 1 for normal
  // >= 2; each is at least 1 (l = 1 reserves nothing: its one slot is everyone's).
  void publish(const detail::adaptive_limit_config& c, std::uint32_t l) noexcept {
    const auto below = [](std::uint32_t upper, std::uint32_t want, bool reserve) {
      if (reserve && upper >= 2) want = std::min(want, upper - 1);
      return std::clamp<std::uint32_t>(want, 1, upper);
    };
    const std::uint32_t normal = below(l, share_of(l, c.normal_share), c.normal_share < 1.0);
    const std::uint32_t sheddable =
        below(normal, share_of(l, c.sheddable_share), c.sheddable_share < c.normal_share);
    block_->published.store(l, std::memory_order_relaxed);
    // Relaxed: the thresholds are one word, read whole; nothing else is published with them.
    block_->thresholds.store(detail::pack_thresholds(l, normal, sheddable), std::memory_order_relaxed);
  }

  static const options_type& checked(const options_type& o) {
    constexpr std::string_view who = "armor::adaptive_limit";
    const auto fail = [&](const std::string& what) { detail::invalid_config(std::string(who) + ": " + what); };
    if (o.min_limit < 1) fail("min_limit must be at least 1 (got 0)");
    if (o.max_limit > detail::limit_mask) {
      fail("max_limit must be below 2^21 (got " + std::to_string(o.max_limit) + ")");
    }
    if (o.min_limit > o.max_limit) {
      fail("min_limit must not exceed max_limit (got " + std::to_string(o.min_limit) + " > " +
           std::to_string(o.max_limit) + ")");
    }
    if (o.initial_limit < o.min_limit || o.initial_limit > o.max_limit) {
      fail("initial_limit must be in [min_limit, max_limit] (got " + std::to_string(o.initial_limit) + ")");
    }
    if (o.window.count() <= 0) fail("window must be positive (got " + std::to_string(o.window.count()) + " ns)");
    if (o.min_samples < 1) fail("min_samples must be at least 1 (got 0)");
    if (!detail::in_half_unit(o.normal_share)) {
      fail("normal_share must be in (0, 1] (got " + std::to_string(o.normal_share) + ")");
    }
    if (!(o.sheddable_share > 0 && o.sheddable_share <= o.normal_share)) {
      fail("sheddable_share must be in (0, normal_share] (got " + std::to_string(o.sheddable_share) + ")");
    }
    if (o.max_queue >= (std::uint32_t{1} << 31)) fail("max_queue must be below 2^31 (got " + std::to_string(o.max_queue) + ")");
    if (o.max_wait.count() < 0) fail("max_wait must not be negative (got " + std::to_string(o.max_wait.count()) + " ns)");
    if (o.max_queue > 0 && o.max_wait.count() == 0) fail("max_wait must be positive when max_queue > 0 (got 0 ns)");
    o.algorithm.check();
    return o;
  }

  options_type options_;  // as constructed: only its fixed options are read (count_calls, max_queue != 0)
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
  std::string_view key_;
  std::unique_ptr<detail::adaptive_limit_block<Algorithm>> block_;
  std::unique_ptr<options_type> current_;  // the options in force, under block_->options_mutex
};

}  // namespace armor
