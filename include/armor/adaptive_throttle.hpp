// armor/adaptive_throttle.hpp: armor::adaptive_throttle, Google SRE's
// client-side throttling: when the upstream refuses or fails this client's
// requests, refuse a share of new ones locally, with probability
// max(0, (requests - k * accepts) / (requests + 1)) over a sliding window.
// Defines its options, permit, event, stats and armor::throttle_health.
//
//     using namespace std::chrono_literals;
//     armor::adaptive_throttle<> throttle{{.k = 2.0, .window = 2min}};
//     auto p = armor::pipeline{armor::deadline{2s}, std::ref(throttle)};
//     auto r = p.try_execute([&](const armor::context& ctx) { return call_upstream(ctx.remaining()); });
//     if (!r && r.code() == armor::errc::client_throttled) serve_degraded();   // never sent
//
// A success is an accept; a failure, a timeout or a throttled answer (a 429)
// is a request that was not accepted; a call an inner layer refused or the
// caller cancelled counts as neither. Thread-safe and lock-free; no
// allocation per call. The rule, the choices, how it composes with the
// breaker and the pacer, and what it costs: docs/adaptive_throttle.md;
// changing k and the rest at run time: docs/reconfiguration.md.
#pragma once

#include <armor/backoff.hpp>
#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/random.hpp>
#include <armor/detail/throttle_window.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// The options of armor::adaptive_throttle. An aggregate:
/// `{.k = 2.0, .window = 2min}`, naming what you change, in this order.
struct adaptive_throttle_options {
  /// The multiplier: the throttle lets through about k times as many
  /// requests as the upstream accepts. Finite and >= 1 (below 1 it would
  /// refuse calls to a healthy upstream); 2 (SRE's default) by default.
  double k = 2.0;
  /// The span of the sliding window; at least `buckets` milliseconds.
  std::chrono::nanoseconds window = std::chrono::minutes{2};
  /// The window's buckets (it slides a bucket at a time); in [1, 1024].
  std::uint32_t buckets = 20;
  /// The throttle refuses nothing while the window holds fewer requests
  /// than this (too few to tell a refusing upstream from bad luck); >= 0.
  std::uint32_t min_requests = 10;
  /// The most the refusal probability can reach, in (0, 1]. Below 1 a share
  /// of calls always reaches the upstream, so recovery shows within a
  /// bucket instead of once the failures have left the window.
  double max_rejection_probability = 0.9;
  /// What a verdict says to the throttle: healthy = an accept, unhealthy =
  /// a request that was not accepted, neutral = not a request at all.
  /// nullptr (the default) = armor::throttle_health. A plain function: one
  /// indirect call per settled call when set.
  health_rule accept_rule = nullptr;
};

/// The throttle's default rule (see adaptive_throttle_options::accept_rule):
/// a success is an accept (healthy); a failure, a timeout and a throttled
/// answer (429, 503 with Retry-After...) are requests the upstream did not
/// accept (unhealthy); an attempt an inner layer refused, or the caller
/// cancelled, never reached the upstream (neutral: taken back).
[[nodiscard]] constexpr health throttle_health(const verdict& v) noexcept {
  switch (v.kind) {
    case outcome::success: return health::healthy;
    case outcome::failure:
    case outcome::timeout:
    case outcome::throttled: return health::unhealthy;
    case outcome::rejected:
    case outcome::cancelled: return health::neutral;
  }
  return health::neutral;
}

namespace detail {

/// What an adaptive throttle shares with its permits; allocated once, so
/// permits stay valid when the throttle is moved.
struct throttle_state {
  enum class counter : std::uint8_t { refused, count };

  throttle_state(std::uint32_t buckets, std::int64_t width) : window(buckets, width) {}

  throttle_window window;
  alignas(cache_line) counter_set<counter> counters;
};

}  // namespace detail

/// An adaptive throttle's receipt for one admitted request: the bucket it
/// was counted in. Move-only. Dropping it unsettled (an exception escaping
/// an outer layer, a destroyed coroutine) takes the request back, as for a
/// cancelled call. Must not outlive its throttle.
class adaptive_throttle_permit {
 public:
  adaptive_throttle_permit() noexcept = default;
  adaptive_throttle_permit(adaptive_throttle_permit&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), slot_(other.slot_) {}
  adaptive_throttle_permit& operator=(adaptive_throttle_permit&& other) noexcept {
    if (this != &other) {
      cancel();
      state_ = std::exchange(other.state_, nullptr);
      slot_ = other.slot_;
    }
    return *this;
  }
  adaptive_throttle_permit(const adaptive_throttle_permit&) = delete;
  adaptive_throttle_permit& operator=(const adaptive_throttle_permit&) = delete;
  ~adaptive_throttle_permit() { cancel(); }

  /// True while it holds a counted request (false once settled, and for a
  /// request the window did not sample).
  [[nodiscard]] explicit operator bool() const noexcept { return state_ != nullptr; }

  /// Takes the request back (counts it as neither); the permit is empty afterwards.
  void cancel() noexcept {
    if (detail::throttle_state* s = std::exchange(state_, nullptr)) s->window.remove_request(slot_);
  }

 private:
  template <class, class, class>
  friend class adaptive_throttle;
  adaptive_throttle_permit(detail::throttle_state* s, detail::throttle_slot slot) noexcept : state_(s), slot_(slot) {}

  detail::throttle_state* state_ = nullptr;
  detail::throttle_slot slot_{};  // the bucket its request was counted in
};

/// What happened, for an adaptive throttle's listener.
enum class adaptive_throttle_event_kind : std::uint8_t {
  refused,  ///< a request refused locally (errc::client_throttled)
};

/// The enumerator's name: "refused".
[[nodiscard]] constexpr std::string_view to_string(adaptive_throttle_event_kind k) noexcept {
  switch (k) {
    case adaptive_throttle_event_kind::refused: return "refused";
  }
  return "unknown";
}

/// What an adaptive throttle's listener hears: each local refusal, with the
/// window it was decided on.
struct adaptive_throttle_event {
  adaptive_throttle_event_kind kind = adaptive_throttle_event_kind::refused;
  double probability = 0;         ///< the refusal probability the request met
  std::uint64_t requests = 0;     ///< requests in the window (before this one)
  std::uint64_t accepts = 0;      ///< accepts in the window
  std::chrono::nanoseconds retry_after{};  ///< what the caller is told (zero: no estimate)
  /// The throttle's key: in armor::keyed, the key it serves; otherwise the
  /// one given to its constructor (empty by default). Valid during the call only.
  std::string_view key{};

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = adaptive_throttle_event;
    return std::tuple{armor::field("kind", &e::kind),         armor::field("probability", &e::probability),
                      armor::field("requests", &e::requests), armor::field("accepts", &e::accepts),
                      armor::field("retry_after", &e::retry_after), armor::field("key", &e::key)};
  }
};

/// A snapshot of an adaptive throttle: its window as of a time, the
/// probability a request would be refused then, and its refusals so far.
/// The window's two counts are read bucket by bucket, each bucket's pair
/// together.
struct adaptive_throttle_stats {
  std::uint64_t requests = 0;  ///< requests in the window (local refusals included)
  std::uint64_t accepts = 0;   ///< of those, accepted by the upstream
  double rejection_probability = 0;  ///< the probability a request is refused now
  std::uint64_t refused = 0;   ///< requests refused locally since construction

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = adaptive_throttle_stats;
    return std::tuple{
        gauge("requests", &s::requests, "armor_adaptive_throttle_window_requests",
              "Requests in the adaptive throttle's window, local refusals included."),
        gauge("accepts", &s::accepts, "armor_adaptive_throttle_window_accepts",
              "Requests in the adaptive throttle's window that the upstream accepted."),
        gauge("rejection_probability", &s::rejection_probability, "armor_adaptive_throttle_rejection_probability",
              "The probability that the adaptive throttle refuses a request now, 0 to 1."),
        counter("refused", &s::refused, "armor_adaptive_throttle_refused_total",
                "Requests the adaptive throttle refused locally."),
    };
  }
};

// adaptive_throttle::try_acquire answers armor::decision<adaptive_throttle_permit>.
static_assert(decision_like<decision<adaptive_throttle_permit>>);

namespace detail {

struct throttle_config {
  double k = 2.0;
  double cap = 0.9;
  std::int64_t min_requests = 10;
  std::int64_t width = 0;
};

[[noreturn]] inline void throttle_refuse(const std::string& what) {
  invalid_config("armor::adaptive_throttle: " + what);
}

[[nodiscard]] inline throttle_config throttle_checked(const adaptive_throttle_options& o) {
  if (!std::isfinite(o.k) || o.k < 1.0) {
    throttle_refuse("k must be a finite number >= 1 (got " + std::to_string(o.k) + ")");
  }
  if (o.buckets < 1 || o.buckets > throttle_buckets_max) {
    throttle_refuse("buckets must be within [1, 1024] (got " + std::to_string(o.buckets) + ")");
  }
  constexpr std::int64_t ms = 1'000'000;
  if (o.window.count() / static_cast<std::int64_t>(o.buckets) < ms) {
    throttle_refuse("window must be at least buckets milliseconds (got " + std::to_string(o.window.count()) +
                    " ns for " + std::to_string(o.buckets) + " buckets)");
  }
  if (!(o.max_rejection_probability > 0.0 && o.max_rejection_probability <= 1.0)) {
    throttle_refuse("max_rejection_probability must be within (0, 1] (got " +
                    std::to_string(o.max_rejection_probability) + ")");
  }
  throttle_config c;
  c.k = o.k;
  c.cap = o.max_rejection_probability;
  c.min_requests = o.min_requests;
  c.width = o.window.count() / static_cast<std::int64_t>(o.buckets);
  return c;
}

}  // namespace detail

/// Client-side adaptive throttling (see the top of this header and
/// docs/adaptive_throttle.md). An armor::policy.
///
/// `Clock` is read only by the standalone calls without a time
/// (try_acquire(), stats()); inside a pipeline it must be the pipeline's.
/// `Rng` draws the random number each decision compares with the refusal
/// probability (armor::random_source: thread_rng by default, seeded_rng or a
/// stub in tests); it is called from every thread that uses the throttle,
/// and only while the probability is above zero. `Listener`
/// (armor::listener_for adaptive_throttle_event) hears every local refusal.
///
/// Construction throws armor::error(errc::invalid_argument) naming a bad
/// option, and allocates the window once; reconfigure() changes k,
/// min_requests, max_rejection_probability and accept_rule at run time. Every member may be called
/// concurrently, except the move constructor (move before sharing; share
/// with std::ref; permits stay valid; a moved-from throttle may only be
/// destroyed). Cost: a decision reads the window's B words and counts
/// its request with one compare-exchange; an accept (a success) is one more;
/// nothing allocates, nothing locks.
template <class Clock = steady_clock, class Rng = thread_rng, class Listener = no_listener>
class adaptive_throttle {
  static_assert(armor::clock<Clock>, "armor::adaptive_throttle: Clock must have now() returning its time_point");
  static_assert(random_source<Rng> && detail::full_range_generator<Rng>(),
                "armor::adaptive_throttle: Rng must be a random source producing the full 64-bit range "
                "(armor::thread_rng, armor::seeded_rng, std::mt19937_64)");
  static_assert(listener_for<Listener, adaptive_throttle_event>,
                "armor::adaptive_throttle: Listener must be no_listener or callable as "
                "listener(const armor::adaptive_throttle_event&) noexcept (or std::ref to such a callable)");

  static constexpr bool quiet = std::is_nothrow_invocable_v<Rng&>;

 public:
  using clock_type = Clock;
  using rng_type = Rng;
  using listener_type = Listener;
  using permit_type = adaptive_throttle_permit;
  using options_type = adaptive_throttle_options;  ///< for armor::keyed<adaptive_throttle<...>>

  explicit adaptive_throttle(const adaptive_throttle_options& options = {}, Clock clock = Clock{}, Rng rng = Rng{},
                             Listener listener = Listener{})
      : adaptive_throttle(options, std::move(clock), std::move(rng), std::move(listener), std::string_view{}) {}

  /// What armor::keyed builds for each key when there is a listener: events
  /// carry `key`, which must outlive the throttle; the random source is a
  /// default-constructed Rng.
  adaptive_throttle(const adaptive_throttle_options& options, Clock clock, Listener listener, std::string_view key)
      : adaptive_throttle(options, std::move(clock), Rng{}, std::move(listener), key) {}

  adaptive_throttle(adaptive_throttle&& other) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                                        std::is_nothrow_move_constructible_v<Rng> &&
                                                        std::is_nothrow_move_constructible_v<Listener>)
      : options_(other.options_),
        config_(other.config_),
        accept_rule_(other.accept_rule_.load(std::memory_order_relaxed)),
        clock_(std::move(other.clock_)),
        rng_(std::move(other.rng_)),
        listener_(std::move(other.listener_)),
        key_(other.key_),
        state_(std::move(other.state_)) {}
  adaptive_throttle(const adaptive_throttle&) = delete;
  adaptive_throttle& operator=(const adaptive_throttle&) = delete;
  adaptive_throttle& operator=(adaptive_throttle&&) = delete;
  ~adaptive_throttle() = default;

  // ---------------------------------------------------------------- policy protocol

  /// Counts the request and admits it, or refuses it with
  /// errc::client_throttled (retryable; retry_after: the time until the
  /// window's oldest request leaves it, when the window holds one).
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<adaptive_throttle_permit> admit(context& ctx) noexcept(quiet) {
    answer a = decide(ctx.now());
    if (ARMOR_LIKELY(a.admitted)) return admission<adaptive_throttle_permit>::admit(std::move(a.permit));
    return admission<adaptive_throttle_permit>::reject(
        errc::client_throttled,
        a.retry_after > 0 ? std::optional<std::chrono::nanoseconds>{std::chrono::nanoseconds{a.retry_after}}
                          : std::nullopt,
        true);
  }

  /// Records the verdict of a request this throttle admitted.
  ARMOR_ALWAYS_INLINE void settle(context&, adaptive_throttle_permit&& permit, const verdict& v) noexcept {
    record(std::move(permit), v);
  }

  // ---------------------------------------------------------------- standalone use

  /// Asks to send a request now (the throttle's clock): granted with a
  /// permit, to be handed back with the request's verdict by record(); or
  /// refused with errc::client_throttled and retry_after() the time until
  /// the window's oldest request leaves it (nanoseconds::max() without one).
  [[nodiscard]] decision<adaptive_throttle_permit> try_acquire() noexcept(quiet && noexcept(
      std::declval<const Clock&>().now())) {
    return try_acquire(now());
  }

  /// try_acquire() at the given time (on the throttle's clock).
  [[nodiscard]] decision<adaptive_throttle_permit> try_acquire(timestamp now) noexcept(quiet) {
    answer a = decide(now);
    if (a.admitted) return decision<adaptive_throttle_permit>::granted(std::move(a.permit));
    return decision<adaptive_throttle_permit>::refused(
        errc::client_throttled,
        a.retry_after > 0 ? std::chrono::nanoseconds{a.retry_after} : std::chrono::nanoseconds::max());
  }

  /// Records the verdict of a request and empties the permit: an accept,
  /// a request not accepted, or (neutral) the request taken back, by the
  /// accept rule. A permit that is empty, or from another throttle, is
  /// cancelled (in its own throttle).
  ARMOR_ALWAYS_INLINE void record(adaptive_throttle_permit&& permit, const verdict& v) noexcept {
    if (permit.state_ != state_.get()) {
      permit.cancel();
      return;
    }
    detail::throttle_state* s = std::exchange(permit.state_, nullptr);
    switch (judge(v)) {
      case health::healthy: s->window.add_accept(permit.slot_); break;
      case health::unhealthy: break;  // a request the upstream did not accept: it stays counted
      case health::neutral: s->window.remove_request(permit.slot_); break;
    }
  }

  // ---------------------------------------------------------------- observation

  /// The refusal probability for a window holding `requests` requests of
  /// which `accepts` were accepted: 0 below min_requests, else
  /// min(max_rejection_probability, max(0, (requests - k * accepts) /
  /// (requests + 1))). Pure.
  [[nodiscard]] double rejection_probability(std::uint64_t requests, std::uint64_t accepts) const noexcept {
    return probability(static_cast<std::int64_t>(requests), static_cast<std::int64_t>(accepts));
  }

  /// The probability that a request is refused at `now`.
  [[nodiscard]] double rejection_probability(timestamp now) const noexcept {
    const detail::throttle_counts c = state_->window.read(bucket(now));
    return probability(c.requests, c.accepts);
  }

  /// A snapshot as of now (the throttle's clock).
  [[nodiscard]] adaptive_throttle_stats stats() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return stats(now());
  }

  /// A snapshot with the window as of `now`.
  [[nodiscard]] adaptive_throttle_stats stats(timestamp now) const noexcept {
    const detail::throttle_counts c = state_->window.read(bucket(now));
    adaptive_throttle_stats s;
    s.requests = static_cast<std::uint64_t>(c.requests);
    s.accepts = static_cast<std::uint64_t>(c.accepts);
    s.rejection_probability = probability(c.requests, c.accepts);
    s.refused = state_->counters.load(counter::refused);
    return s;
  }

  /// For armor::keyed: true when the window as of `now` holds no request,
  /// so a fresh throttle would decide exactly the same.
  [[nodiscard]] bool idle(timestamp now) const noexcept { return state_->window.empty(bucket(now)); }

  /// The options in force: those given at construction, or to the last reconfigure().
  [[nodiscard]] adaptive_throttle_options options() const noexcept {
    adaptive_throttle_options o = options_;
    const detail::throttle_config c = config_.load();
    o.k = c.k;
    o.max_rejection_probability = c.cap;
    o.min_requests = static_cast<std::uint32_t>(c.min_requests);
    o.accept_rule = accept_rule_.load(std::memory_order_relaxed);
    return o;
  }

  /// Changes the throttle's response at run time (docs/reconfiguration.md).
  /// `options` is validated as by the constructor; window and buckets shape
  /// the window's state and must equal the throttle's. k, min_requests and
  /// max_rejection_probability may change: each decision from the next one
  /// on reads the three whole (never part old, part new) and weighs the
  /// requests and accepts already in the window with them. A new
  /// accept_rule judges the verdicts recorded from then on (stored apart: a
  /// record made during reconfigure() may use the old rule). Throws
  /// armor::error(invalid_argument) naming the option; the old ones then
  /// stay. Thread-safe and lock-free; allocates nothing.
  void reconfigure(const adaptive_throttle_options& options) {
    constexpr const char* who = "armor::adaptive_throttle::reconfigure";
    const detail::throttle_config next = detail::throttle_checked(options);
    if (options.window != options_.window) detail::fixed_at_construction(who, "window");
    if (options.buckets != options_.buckets) detail::fixed_at_construction(who, "buckets");
    config_.store(next);
    accept_rule_.store(options.accept_rule, std::memory_order_relaxed);
  }
  /// The clock read when no time is given.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }
  /// The listener.
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  using counter = detail::throttle_state::counter;
  using key_type = std::conditional_t<detail::listens<Listener>, std::string_view, no_listener>;

  adaptive_throttle(const adaptive_throttle_options& options, Clock clock, Rng rng, Listener listener,
                    std::string_view key)
      : options_(options),
        config_(detail::throttle_checked(options)),
        accept_rule_(options.accept_rule),
        clock_(std::move(clock)),
        rng_(std::move(rng)),
        listener_(std::move(listener)),
        key_(key_of(key)),
        state_(std::make_unique<detail::throttle_state>(options.buckets, config_.load().width)) {}

  struct answer {
    bool admitted = true;
    adaptive_throttle_permit permit{};
    std::int64_t retry_after = 0;  // refused: ns, 0 = no estimate
  };

  static key_type key_of(std::string_view key) noexcept {
    if constexpr (detail::listens<Listener>) {
      return key;
    } else {
      (void)key;
      return {};
    }
  }

  [[nodiscard]] std::string_view key() const noexcept {
    if constexpr (detail::listens<Listener>) {
      return key_;
    } else {
      return {};
    }
  }

  [[nodiscard]] timestamp now() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return to_timestamp(clock_.now());
  }

  [[nodiscard]] std::int64_t bucket(timestamp t) const noexcept {
    return state_->window.bucket_of(t.time_since_epoch().count());
  }

  [[nodiscard]] double probability(std::int64_t requests, std::int64_t accepts) const noexcept {
    return probability(config_.load(), requests, accepts);
  }

  [[nodiscard]] static double probability(const detail::throttle_config& c, std::int64_t requests,
                                          std::int64_t accepts) noexcept {
    if (requests < c.min_requests || requests <= 0) return 0.0;
    const double r = static_cast<double>(requests);
    const double p = (r - c.k * static_cast<double>(accepts)) / (r + 1.0);
    if (!(p > 0.0)) return 0.0;
    return std::min(p, c.cap);
  }

  [[nodiscard]] health judge(const verdict& v) const noexcept {
    // Relaxed: a value of its own (reconfigure()).
    if (const health_rule rule = accept_rule_.load(std::memory_order_relaxed); rule != nullptr) return rule(v);
    return throttle_health(v);
  }

  // Reads the window, decides, and counts the request either way (SRE counts
  // local refusals as requests: see docs/adaptive_throttle.md).
  [[nodiscard]] ARMOR_ALWAYS_INLINE answer decide(timestamp now) noexcept(quiet) {
    detail::throttle_state& s = *state_;
    const std::int64_t t = now.time_since_epoch().count();
    const std::int64_t n = s.window.bucket_of(t);
    const detail::throttle_slot slot = s.window.slot_of(n);
    const detail::throttle_counts c = s.window.read(n, slot.index);
    const double p = probability(c.requests, c.accepts);
    const bool counted = s.window.add_request(slot);
    answer a;
    if (ARMOR_LIKELY(p <= 0.0) || detail::unit_interval(static_cast<std::uint64_t>(std::invoke(rng_))) >= p) {
      if (counted) a.permit = adaptive_throttle_permit(&s, slot);
      return a;
    }
    a.admitted = false;
    // p > 0 needs a request in the window: its oldest one's bucket leaves it first.
    a.retry_after = s.window.leaves_at(c.oldest) - t;
    s.counters.add(counter::refused);
    detail::notify(listener_, [&] {
      return adaptive_throttle_event{adaptive_throttle_event_kind::refused,
                                     p,
                                     static_cast<std::uint64_t>(c.requests),
                                     static_cast<std::uint64_t>(c.accepts),
                                     std::chrono::nanoseconds{a.retry_after},
                                     key()};
    });
    return a;
  }

  adaptive_throttle_options options_;  // as constructed: its window and buckets (fixed) are read
  detail::config_cell<detail::throttle_config> config_;  // k, cap, min_requests (and the fixed width)
  std::atomic<health_rule> accept_rule_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Rng rng_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] key_type key_;
  std::unique_ptr<detail::throttle_state> state_;
};

adaptive_throttle() -> adaptive_throttle<>;
adaptive_throttle(const adaptive_throttle_options&) -> adaptive_throttle<>;
template <class C>
  requires clock<C>
adaptive_throttle(const adaptive_throttle_options&, C) -> adaptive_throttle<C>;
template <class C, class R>
adaptive_throttle(const adaptive_throttle_options&, C, R) -> adaptive_throttle<C, R>;
template <class C, class R, class L>
adaptive_throttle(const adaptive_throttle_options&, C, R, L) -> adaptive_throttle<C, R, L>;

}  // namespace armor
