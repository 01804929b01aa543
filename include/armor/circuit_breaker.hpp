// armor/circuit_breaker.hpp: armor::circuit_breaker, which stops calling an
// upstream that is failing, probes it, and recovers by itself; and its
// options, permit, event and stats.
//
//     using namespace std::chrono_literals;
//     armor::circuit_breaker upstream{{.failure_threshold = 5, .open_for = 30s}};
//     if (auto d = upstream.try_acquire()) {
//         upstream.record(std::move(d).permit(), call_upstream());   // the call's armor::verdict
//     } else {
//         reply_503(d.retry_after());            // errc::circuit_open, and when it half-opens
//     }
//     // Or as a pipeline layer:
//     auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream)};
//
// Thread-safety: every member may be called concurrently, except the move
// constructor. Lock-free; a rejection and a healthy call write no shared
// memory; nothing allocates per call. The states, the rules, what counts as a
// failure, generations, the listener, keyed breakers and measured costs:
// docs/circuit_breaker.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/breaker_core.hpp>
#include <armor/detail/breaker_window.hpp>
#include <armor/detail/breaker_word.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// What a breaker's sliding window counts: the last N calls, or the last T.
enum class breaker_window : std::uint8_t {
  count,  ///< the last `window_size` calls
  time,   ///< the calls that ended in the last `window_duration`, in `window_buckets` buckets
};

/// The options of armor::circuit_breaker. An aggregate: name what you change,
/// in this order, e.g. `{.failure_threshold = 5, .open_for = 30s}`. See
/// docs/circuit_breaker.md for the meaning and default of each.
struct circuit_breaker_options {
  // ---- what opens it (any rule that fires; at least one must be on)
  /// Consecutive failures that open the breaker; 0 turns the rule off. <= 65535.
  std::uint32_t failure_threshold = 5;
  /// Failure rate over the window that opens the breaker, in (0, 1]; none by default.
  std::optional<double> failure_rate{};
  /// A call that takes longer than this is slow; none by default (no slow-call rule). > 0.
  std::optional<std::chrono::nanoseconds> slow_call_threshold{};
  /// Slow-call rate over the window that opens the breaker, in (0, 1].
  double slow_call_rate = 1.0;
  // ---- the window the rates are measured over
  breaker_window window = breaker_window::count;
  /// Count window: the last N calls; in [1, 4096].
  std::uint32_t window_size = 100;
  /// Time window: its span; at least window_buckets nanoseconds.
  std::chrono::nanoseconds window_duration = std::chrono::seconds{60};
  /// Time window: its buckets (the window slides a bucket at a time); in [1, 4096].
  std::uint32_t window_buckets = 10;
  /// Rates are judged only once the window holds this many calls; >= 1, and
  /// <= window_size for a count window.
  std::uint32_t minimum_calls = 10;
  // ---- open
  /// How long the breaker stays open on its first trip; > 0.
  std::chrono::nanoseconds open_for = std::chrono::seconds{30};
  /// Each consecutive trip (reopening without closing in between) multiplies
  /// the open time by this; finite, >= 1 (1 = no growth).
  double open_for_multiplier = 1.0;
  /// Cap on the grown open time and on a verdict's retry_after; >= open_for.
  std::chrono::nanoseconds max_open_for = std::chrono::minutes{5};
  // ---- half-open
  /// Probes admitted at a time while half-open; in [1, 65535].
  std::uint32_t half_open_max_calls = 1;
  /// Successful probes that close the breaker; in [1, 65535].
  std::uint32_t success_threshold = 1;
  /// When every probe slot has been taken for this long since half-opening,
  /// the next call reopens the breaker (the probes count as failed); none by
  /// default (a hung probe holds its slot until it ends). > 0.
  std::optional<std::chrono::nanoseconds> half_open_timeout{};
  // ---- what counts
  /// Count a throttled outcome (a 429, an exhausted rate limit: see
  /// armor::outcome) as a failure. Off by default: a server that limits this
  /// client is working, and its Retry-After is the retry layer's business.
  /// Applies to the default rule only (not with `health`).
  bool count_throttled = false;
  /// The breaker's own rule for what an outcome says about the upstream
  /// (healthy = a success, unhealthy = a failure, neutral = neither); nullptr
  /// (the default) = armor::default_health, with count_throttled. A plain
  /// function: one indirect call per settled call, and one more clock read
  /// per successful call (the driver times every call for a breaker that has
  /// a rule, since the rule may call a success a failure).
  health_rule health = nullptr;
  // ---- observability
  /// Count every success and every rejection in stats() (one relaxed
  /// increment of a shared counter each). Off by default, so that a rejection
  /// writes no shared memory and the healthy path writes as little as it can.
  bool count_calls = false;
};

[[nodiscard]] constexpr std::string_view to_string(breaker_window w) noexcept {
  switch (w) {
    case breaker_window::count: return "count";
    case breaker_window::time: return "time";
  }
  return "unknown";
}

/// The state of a breaker.
enum class breaker_state : std::uint8_t {
  closed = 0,     ///< calls go through; outcomes are watched
  open = 1,       ///< calls are refused with errc::circuit_open until open_for has passed
  half_open = 2,  ///< a few probes go through; the rest are refused
  isolated = 3,   ///< held open by isolate() until reset(), or by isolate_until() until a time
  disabled = 4,   ///< every call goes through; outcomes are only recorded
};

[[nodiscard]] constexpr std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
    case breaker_state::isolated: return "isolated";
    case breaker_state::disabled: return "disabled";
  }
  return "unknown";
}

/// Why a breaker changed state.
enum class breaker_reason : std::uint8_t {
  failure_threshold,  ///< failure_threshold consecutive failures
  failure_rate,       ///< the failure rate over the window reached failure_rate
  slow_call_rate,     ///< the slow-call rate over the window reached slow_call_rate
  open_elapsed,       ///< open_for has passed: a call became the first probe
  probes_succeeded,   ///< success_threshold probes succeeded
  probe_failed,       ///< a probe failed
  probe_slow,         ///< a probe was slow (slow_call_threshold)
  half_open_timeout,  ///< every probe slot was held longer than half_open_timeout
  isolated,           ///< isolate()
  reset,              ///< reset()
  disabled,           ///< disable()
};

[[nodiscard]] constexpr std::string_view to_string(breaker_reason r) noexcept {
  switch (r) {
    case breaker_reason::failure_threshold: return "failure_threshold";
    case breaker_reason::failure_rate: return "failure_rate";
    case breaker_reason::slow_call_rate: return "slow_call_rate";
    case breaker_reason::open_elapsed: return "open_elapsed";
    case breaker_reason::probes_succeeded: return "probes_succeeded";
    case breaker_reason::probe_failed: return "probe_failed";
    case breaker_reason::probe_slow: return "probe_slow";
    case breaker_reason::half_open_timeout: return "half_open_timeout";
    case breaker_reason::isolated: return "isolated";
    case breaker_reason::reset: return "reset";
    case breaker_reason::disabled: return "disabled";
  }
  return "unknown";
}

namespace detail {

// breaker_state and breaker_reason are the core's breaker_phase and
// breaker_cause under the names a user reads, converted by static_cast. These
// switches have no default, so a phase or cause added without its public
// counterpart fails to compile (-Wswitch); breaker_enums_agree checks that
// every enumerator, on either side, has its counterpart with the same value.
[[nodiscard]] constexpr std::optional<breaker_state> breaker_state_of(breaker_phase p) noexcept {
  switch (p) {
    case breaker_phase::closed: return breaker_state::closed;
    case breaker_phase::open: return breaker_state::open;
    case breaker_phase::half_open: return breaker_state::half_open;
    case breaker_phase::isolated: return breaker_state::isolated;
    case breaker_phase::disabled: return breaker_state::disabled;
  }
  return std::nullopt;
}

[[nodiscard]] constexpr std::optional<breaker_reason> breaker_reason_of(breaker_cause c) noexcept {
  switch (c) {
    case breaker_cause::failure_threshold: return breaker_reason::failure_threshold;
    case breaker_cause::failure_rate: return breaker_reason::failure_rate;
    case breaker_cause::slow_call_rate: return breaker_reason::slow_call_rate;
    case breaker_cause::open_elapsed: return breaker_reason::open_elapsed;
    case breaker_cause::probes_succeeded: return breaker_reason::probes_succeeded;
    case breaker_cause::probe_failed: return breaker_reason::probe_failed;
    case breaker_cause::probe_slow: return breaker_reason::probe_slow;
    case breaker_cause::half_open_timeout: return breaker_reason::half_open_timeout;
    case breaker_cause::isolated: return breaker_reason::isolated;
    case breaker_cause::reset: return breaker_reason::reset;
    case breaker_cause::disabled: return breaker_reason::disabled;
  }
  return std::nullopt;
}

/// True when each of the 256 values of the underlying type is named by both
/// enums or by neither, and a value the core names maps to the same value.
template <class Public, class Core, class Map>
[[nodiscard]] constexpr bool breaker_enums_agree(Map to_public) noexcept {
  for (unsigned v = 0; v <= 0xFF; ++v) {
    const auto pub = static_cast<Public>(v);
    const std::optional<Public> mapped = to_public(static_cast<Core>(v));
    if (mapped.has_value() != (armor::to_string(pub) != "unknown")) return false;
    if (mapped && *mapped != pub) return false;
  }
  return true;
}

}  // namespace detail

static_assert(detail::breaker_enums_agree<breaker_state, detail::breaker_phase>(detail::breaker_state_of),
              "armor::breaker_state and detail::breaker_phase must have the same enumerators and values");
static_assert(detail::breaker_enums_agree<breaker_reason, detail::breaker_cause>(detail::breaker_reason_of),
              "armor::breaker_reason and detail::breaker_cause must have the same enumerators and values");

/// What the listener hears: one event per state transition.
struct circuit_breaker_event {
  breaker_state from = breaker_state::closed;
  breaker_state to = breaker_state::closed;
  breaker_reason reason = breaker_reason::reset;
  timestamp at{};                       ///< the time of the call (or manual action) that made the change
  std::chrono::nanoseconds open_for{};  ///< to == open, or isolate_until(): how long it stays so; zero otherwise
  /// The breaker's key: in armor::keyed, the key it serves; otherwise the one
  /// given to its constructor (empty by default). Valid during the call only.
  std::string_view key{};

  /// How fmt prints it (armor/stats.hpp); `at`, on the breaker's clock, is left out.
  static constexpr auto fields() noexcept {
    using e = circuit_breaker_event;
    return std::tuple{armor::field("from", &e::from), armor::field("to", &e::to), armor::field("reason", &e::reason),
                      armor::field("open_for", &e::open_for), armor::field("key", &e::key)};
  }
};

/// A snapshot of a breaker. Each number is read atomically, the set is not:
/// under load the fields may be a few events apart.
struct circuit_breaker_stats {
  breaker_state state = breaker_state::closed;
  // Lifetime counters (monotonic; reset() does not clear them).
  std::uint64_t successes = 0;   ///< successful outcomes (counted only with count_calls)
  std::uint64_t failures = 0;    ///< outcomes counted as failures (failure and timeout by default)
  std::uint64_t slow_calls = 0;  ///< calls longer than slow_call_threshold (successes and failures)
  std::uint64_t throttled = 0;   ///< throttled outcomes that counted as neither (a 429 by default; see count_throttled)
  std::uint64_t ignored = 0;     ///< other outcomes that counted as neither: rejected, cancelled, or of an earlier generation
  std::uint64_t rejections = 0;  ///< calls the breaker refused (counted only with count_calls)
  std::uint64_t times_opened = 0;
  // The present.
  std::uint32_t consecutive_failures = 0;  ///< the current run (closed or disabled)
  std::uint32_t probes_in_flight = 0;      ///< half-open: probe slots taken
  std::uint64_t window_calls = 0;          ///< calls in the window now (0 without a rate rule)
  std::uint64_t window_failures = 0;
  std::uint64_t window_slow_calls = 0;
  double failure_rate = 0;    ///< window_failures / window_calls (0 when empty)
  double slow_call_rate = 0;  ///< window_slow_calls / window_calls (0 when empty)
  /// The breaker's count_calls option: successes and rejections are counted
  /// (and exported) only when it is on.
  bool counting = false;

  /// Outcomes recorded: successes + failures + throttled + ignored.
  [[nodiscard]] constexpr std::uint64_t calls() const noexcept { return successes + failures + throttled + ignored; }

  /// How fmt prints and Prometheus exports it (see armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = circuit_breaker_stats;
    constexpr std::string_view calls_help =
        "Outcomes the circuit breaker recorded, by kind (success only with count_calls).";
    return std::tuple{
        gauge("state", &s::state, "armor_circuit_breaker_state",
              "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 isolated (held open), 4 disabled (only "
              "recording)."),
        counter("opened", &s::times_opened, "armor_circuit_breaker_opened_total", "Times the circuit breaker opened."),
        counter("successes", &s::successes, "armor_circuit_breaker_calls_total", calls_help)
            .labelled("outcome", "success")
            .when_counting(),
        counter("failures", &s::failures, "armor_circuit_breaker_calls_total", calls_help)
            .labelled("outcome", "failure"),
        counter("throttled", &s::throttled, "armor_circuit_breaker_calls_total", calls_help)
            .labelled("outcome", "throttled"),
        counter("ignored", &s::ignored, "armor_circuit_breaker_calls_total", calls_help)
            .labelled("outcome", "ignored"),
        counter("slow_calls", &s::slow_calls, "armor_circuit_breaker_slow_calls_total",
                "Calls slower than slow_call_threshold."),
        counter("rejections", &s::rejections, "armor_circuit_breaker_rejected_total",
                "Calls the circuit breaker refused (only with count_calls).")
            .when_counting(),
        gauge("consecutive_failures", &s::consecutive_failures, "armor_circuit_breaker_consecutive_failures",
              "The current run of failures (closed or disabled)."),
        gauge("probes_in_flight", &s::probes_in_flight, "armor_circuit_breaker_probes_in_flight",
              "Half-open probe slots taken."),
        gauge("window_calls", &s::window_calls, "armor_circuit_breaker_window_calls",
              "Calls in the sliding window (0 without a rate rule)."),
        field("window_failures", &s::window_failures),
        field("window_slow_calls", &s::window_slow_calls),
        gauge("failure_rate", &s::failure_rate, "armor_circuit_breaker_failure_rate",
              "Failures over calls in the sliding window, 0 to 1."),
        gauge("slow_call_rate", &s::slow_call_rate, "armor_circuit_breaker_slow_call_rate",
              "Slow calls over calls in the sliding window, 0 to 1."),
    };
  }
};

namespace detail {
struct breaker_permit_access;
}

/// A breaker's receipt for one admitted call: which generation admitted it,
/// when, and whether it holds a half-open probe slot. Move-only; 24 bytes.
/// Hand it back with the call's outcome (circuit_breaker::record, or the
/// pipeline's settle); cancel() or dropping it without an outcome gives a
/// probe slot back. A default-constructed or moved-from permit holds
/// nothing. A permit must not outlive its breaker.
class circuit_breaker_permit {
 public:
  circuit_breaker_permit() noexcept = default;
  circuit_breaker_permit(circuit_breaker_permit&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)),
        admitted_(other.admitted_),
        gen_(other.gen_),
        probe_(other.probe_) {}
  circuit_breaker_permit& operator=(circuit_breaker_permit&& other) noexcept {
    if (this != &other) {
      cancel();
      core_ = std::exchange(other.core_, nullptr);
      admitted_ = other.admitted_;
      gen_ = other.gen_;
      probe_ = other.probe_;
    }
    return *this;
  }
  circuit_breaker_permit(const circuit_breaker_permit&) = delete;
  circuit_breaker_permit& operator=(const circuit_breaker_permit&) = delete;
  ~circuit_breaker_permit() { cancel(); }

  /// True when the permit admits a call (no outcome recorded yet).
  [[nodiscard]] explicit operator bool() const noexcept { return core_ != nullptr; }
  /// True when it holds a half-open probe slot.
  [[nodiscard]] bool probe() const noexcept { return core_ != nullptr && probe_; }
  /// When the call was admitted.
  [[nodiscard]] timestamp admitted_at() const noexcept { return timestamp{std::chrono::nanoseconds{admitted_}}; }
  /// The generation that admitted it (changes with every transition).
  [[nodiscard]] std::uint32_t generation() const noexcept { return gen_; }

  /// Gives the permit back without an outcome, as dropping it does: a probe
  /// slot is freed, nothing is counted. The permit becomes empty.
  void cancel() noexcept {
    if (core_ != nullptr && probe_) core_->release_probe(gen_);
    core_ = nullptr;
  }

 private:
  friend struct detail::breaker_permit_access;

  circuit_breaker_permit(detail::breaker_core* core, std::uint32_t gen, bool probe, std::int64_t admitted) noexcept
      : core_(core), admitted_(admitted), gen_(gen), probe_(probe) {}

  detail::breaker_core* core_ = nullptr;
  std::int64_t admitted_ = 0;
  std::uint32_t gen_ = 0;
  bool probe_ = false;
};

static_assert(decision_like<decision<circuit_breaker_permit>>);

namespace detail {

struct breaker_permit_access {
  static circuit_breaker_permit make(breaker_core* core, std::uint32_t gen, bool probe,
                                     std::int64_t admitted) noexcept {
    return circuit_breaker_permit{core, gen, probe, admitted};
  }
  static breaker_core* core(const circuit_breaker_permit& p) noexcept { return p.core_; }
  /// Takes the permit's contents, leaving it empty (nothing to release).
  static void disarm(circuit_breaker_permit& p) noexcept { p.core_ = nullptr; }
  static std::uint32_t gen(const circuit_breaker_permit& p) noexcept { return p.gen_; }
  static bool probe(const circuit_breaker_permit& p) noexcept { return p.probe_; }
  static std::int64_t admitted(const circuit_breaker_permit& p) noexcept { return p.admitted_; }
};

/// No key stored: a breaker without a listener has nobody to tell it to.
struct breaker_no_key {};

[[noreturn]] inline void breaker_refuse(const std::string& what) {
  invalid_config("armor::circuit_breaker: " + what);
}

inline std::uint32_t breaker_rate_ppm(double rate, const char* name) {
  if (!std::isfinite(rate) || rate <= 0.0 || rate > 1.0) {
    breaker_refuse(std::string(name) + " must be within (0, 1] (got " + std::to_string(rate) + ")");
  }
  const auto ppm = static_cast<std::uint32_t>(std::llround(rate * 1e6));
  return ppm == 0 ? 1 : ppm;
}

/// Validates the options; throws armor::error(invalid_argument) naming the
/// first bad one.
inline breaker_config breaker_checked(const circuit_breaker_options& o) {
  breaker_config c;
  if (o.failure_threshold > breaker_field_max) {
    breaker_refuse("failure_threshold must be at most 65535 (0 turns the rule off); got " +
                   std::to_string(o.failure_threshold));
  }
  c.failure_threshold = o.failure_threshold;
  if (o.failure_rate) c.failure_rate_ppm = breaker_rate_ppm(*o.failure_rate, "failure_rate");
  if (o.slow_call_threshold) {
    if (o.slow_call_threshold->count() <= 0) breaker_refuse("slow_call_threshold must be positive");
    c.slow_ns = o.slow_call_threshold->count();
  }
  c.slow_rate_ppm = breaker_rate_ppm(o.slow_call_rate, "slow_call_rate");
  if (c.failure_threshold == 0 && c.failure_rate_ppm == 0 && c.slow_ns == 0) {
    breaker_refuse("no rule could ever open the breaker: failure_threshold is 0 and neither failure_rate "
                   "nor slow_call_threshold is set (use disable() for a breaker that only records)");
  }

  c.time_window = o.window == breaker_window::time;
  if (o.window_size < 1 || o.window_size > breaker_count_window_max) {
    breaker_refuse("window_size must be within [1, 4096] (got " + std::to_string(o.window_size) + ")");
  }
  c.window_size = o.window_size;
  if (o.window_buckets < 1 || o.window_buckets > breaker_time_buckets_max) {
    breaker_refuse("window_buckets must be within [1, 4096] (got " + std::to_string(o.window_buckets) + ")");
  }
  c.buckets = o.window_buckets;
  if (o.window_duration.count() <= 0) breaker_refuse("window_duration must be positive");
  if (o.window_duration.count() < static_cast<std::int64_t>(o.window_buckets)) {
    breaker_refuse("window_duration must be at least window_buckets nanoseconds (a bucket cannot be empty)");
  }
  c.bucket_ns = o.window_duration.count() / static_cast<std::int64_t>(o.window_buckets);
  if (o.minimum_calls < 1) breaker_refuse("minimum_calls must be at least 1");
  if (!c.time_window && o.minimum_calls > o.window_size) {
    breaker_refuse("minimum_calls (" + std::to_string(o.minimum_calls) + ") must not exceed window_size (" +
                   std::to_string(o.window_size) + "): a count window never holds more than window_size calls");
  }
  c.minimum_calls = o.minimum_calls;

  if (o.open_for.count() <= 0) breaker_refuse("open_for must be positive");
  c.open_ns = o.open_for.count();
  if (!std::isfinite(o.open_for_multiplier) || o.open_for_multiplier < 1.0) {
    breaker_refuse("open_for_multiplier must be a finite number >= 1 (got " + std::to_string(o.open_for_multiplier) +
                   ")");
  }
  c.multiplier = o.open_for_multiplier;
  if (o.max_open_for < o.open_for) breaker_refuse("max_open_for must not be less than open_for");
  c.max_open_ns = o.max_open_for.count();

  if (o.half_open_max_calls < 1 || o.half_open_max_calls > breaker_field_max) {
    breaker_refuse("half_open_max_calls must be within [1, 65535] (got " + std::to_string(o.half_open_max_calls) +
                   ")");
  }
  c.half_open_max = o.half_open_max_calls;
  if (o.success_threshold < 1 || o.success_threshold > breaker_field_max) {
    breaker_refuse("success_threshold must be within [1, 65535] (got " + std::to_string(o.success_threshold) + ")");
  }
  c.success_threshold = o.success_threshold;
  if (o.half_open_timeout) {
    if (o.half_open_timeout->count() <= 0) breaker_refuse("half_open_timeout must be positive");
    c.half_open_timeout_ns = o.half_open_timeout->count();
  }
  if (o.health != nullptr && o.count_throttled) {
    breaker_refuse("count_throttled applies to the default health rule only: with a health rule, count throttled "
                   "outcomes in the rule");
  }
  c.count_throttled = o.count_throttled;
  c.health = o.health;
  c.count_calls = o.count_calls;
  return c;
}

/// The core and the options in force (for options()), on the heap together
/// so that a breaker object stays small (armor::keyed stores many).
struct breaker_block : breaker_core {
  breaker_block(const circuit_breaker_options& o, std::int64_t base_ns)
      : breaker_core(breaker_checked(o), base_ns), options(o) {}
  config_cell<circuit_breaker_options> options;
};

}  // namespace detail

/// The circuit breaker policy (see the top of this header and
/// docs/circuit_breaker.md).
///
/// `Clock` is the clock it reads when used on its own (try_acquire(),
/// record(), stats() without a time) and must be the pipeline's clock inside
/// a pipeline; `Listener` (armor::listener_for circuit_breaker_event) hears
/// every transition, once, on the thread whose call made it.
///
/// Construction throws armor::error(errc::invalid_argument) naming a bad
/// option, and allocates the breaker's state once. Move-constructible, so a
/// pipeline can hold it by value (permits issued before the move stay valid;
/// a moved-from breaker may only be destroyed); not copyable: share one
/// breaker with std::ref(breaker).
template <class Clock = steady_clock, class Listener = no_listener>
class circuit_breaker {
  static_assert(armor::clock<Clock>, "armor::circuit_breaker: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, circuit_breaker_event>,
                "armor::circuit_breaker: Listener must be no_listener or callable as "
                "listener(const armor::circuit_breaker_event&) noexcept");

 public:
  using clock_type = Clock;
  using permit_type = circuit_breaker_permit;
  using listener_type = Listener;
  using options_type = circuit_breaker_options;  ///< for armor::keyed<circuit_breaker<...>>

  /// The driver reads the clock again after the operation, so settle() sees
  /// when the call ended (slow calls, the time window, the open time).
  static constexpr bool needs_completion_time = true;

  /// Only a slow-call rule, or a health rule (which may call a success a
  /// failure), needs the end of a successful call; without one the driver
  /// skips that clock read (failures are always re-timed).
  [[nodiscard]] bool wants_completion_time() const noexcept {
    return core_->timed();
  }

  explicit circuit_breaker(const circuit_breaker_options& options = {}, Clock clock = Clock{},
                           Listener listener = Listener{})
      : circuit_breaker(options, std::move(clock), std::move(listener), std::string_view{}) {}

  /// A breaker whose events carry `key` (circuit_breaker_event::key): what
  /// armor::keyed builds for each key. `key` must outlive the breaker.
  circuit_breaker(const circuit_breaker_options& options, Clock clock, Listener listener, std::string_view key)
      : clock_(std::move(clock)),
        listener_(std::move(listener)),
        key_(key_of(key)),
        core_(std::make_unique<detail::breaker_block>(options, read_clock())) {}

  circuit_breaker(circuit_breaker&& other) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                                    std::is_nothrow_move_constructible_v<Listener>) = default;
  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;
  circuit_breaker& operator=(circuit_breaker&&) = delete;
  ~circuit_breaker() = default;

  // ---------------------------------------------------------------- policy protocol

  /// Admits the call (a permit), or refuses it with errc::circuit_open:
  /// retryable with retry_after = the time until it half-opens when open;
  /// retryable without retry_after when half-open with every probe slot
  /// taken; not retryable when isolated (with retry_after = the time left
  /// after isolate_until(), without after isolate()).
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<circuit_breaker_permit> admit(context& ctx) noexcept {
    const std::int64_t t = ctx.now().time_since_epoch().count();
    const detail::breaker_grant g = core_->acquire(t);
    report(g.change);
    if (g.kind == detail::breaker_grant_kind::rejected) {
      return admission<circuit_breaker_permit>::reject(
          errc::circuit_open,
          g.retry_after_ns >= 0 ? std::optional<std::chrono::nanoseconds>{std::chrono::nanoseconds{g.retry_after_ns}}
                                : std::nullopt,
          g.retryable);
    }
    return admission<circuit_breaker_permit>::admit(permit_of(g, t));
  }

  /// Records the verdict of a call this breaker admitted; `ctx.now()` is when it ended.
  ARMOR_ALWAYS_INLINE void settle(context& ctx, circuit_breaker_permit&& permit, const verdict& v) noexcept {
    record(std::move(permit), v, ctx.now());
  }

  // ---------------------------------------------------------------- standalone use

  /// Asks to make a call now (the breaker's clock): granted with a permit,
  /// to be handed back with the call's outcome by record(); or refused with
  /// errc::circuit_open and retry_after() = the time until the breaker
  /// half-opens, or an isolate_until() ends (nanoseconds::max() when no
  /// time is known: half-open with every probe slot taken, or isolate()).
  [[nodiscard]] decision<circuit_breaker_permit> try_acquire() noexcept(noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(now());
  }

  /// try_acquire() at the given time (on the breaker's clock).
  [[nodiscard]] ARMOR_ALWAYS_INLINE decision<circuit_breaker_permit> try_acquire(timestamp now) noexcept {
    const std::int64_t t = now.time_since_epoch().count();
    const detail::breaker_grant g = core_->acquire(t);
    report(g.change);
    if (g.kind == detail::breaker_grant_kind::rejected) {
      return decision<circuit_breaker_permit>::refused(
          errc::circuit_open, g.retry_after_ns >= 0 ? std::chrono::nanoseconds{g.retry_after_ns}
                                                    : std::chrono::nanoseconds::max());
    }
    return decision<circuit_breaker_permit>::granted(permit_of(g, t));
  }

  /// Records the verdict of a call, ended now (the breaker's clock).
  void record(circuit_breaker_permit&& permit,
              const verdict& v) noexcept(noexcept(std::declval<const Clock&>().now())) {
    record(std::move(permit), v, now());
  }

  /// Records the verdict of a call that ended at `now`, and empties the
  /// permit. A permit that is empty, or comes from another breaker, is
  /// ignored here (another breaker's is cancelled, in that breaker).
  ARMOR_ALWAYS_INLINE void record(circuit_breaker_permit&& permit, const verdict& v, timestamp now) noexcept {
    using access = detail::breaker_permit_access;
    if (core_ == nullptr || access::core(permit) != core_.get()) {
      permit.cancel();
      return;
    }
    access::disarm(permit);  // the outcome settles the probe slot, if any
    report(core_->record(access::gen(permit), access::probe(permit), access::admitted(permit),
                         now.time_since_epoch().count(), v));
  }

  // ---------------------------------------------------------------- manual control

  /// Holds the breaker open (state isolated) until reset(): every call is
  /// refused with errc::circuit_open, not retryable, without retry_after.
  void isolate() noexcept(noexcept(std::declval<const Clock&>().now())) {
    report(core_->isolate(std::numeric_limits<std::int64_t>::max(), read_clock()));
  }

  /// Holds the breaker open (state isolated) until `until` on its clock, or
  /// reset(): calls are refused with errc::circuit_open, not retryable, with
  /// retry_after = the time left; the first call at or after `until` is a
  /// probe, as when open_for has passed (half-open, reason open_elapsed). An
  /// isolated breaker keeps the later end (isolate() without a time: never
  /// ends). For "quota exhausted -> isolate until it resets":
  /// isolate_on_exhaustion below, docs/quota_tracker.md.
  void isolate_until(timestamp until) noexcept(noexcept(std::declval<const Clock&>().now())) {
    isolate_until(until, now());
  }
  /// isolate_until(), at `now` (on the breaker's clock; the time of the event).
  void isolate_until(timestamp until, timestamp now) noexcept {
    report(core_->isolate(until.time_since_epoch().count(), now.time_since_epoch().count()));
  }
  /// isolate_until(now + d); `d` saturates (nanoseconds::max(): until reset()).
  void isolate_for(std::chrono::nanoseconds d) noexcept(noexcept(std::declval<const Clock&>().now())) {
    const timestamp t = now();
    isolate_until(timestamp{std::chrono::nanoseconds{detail::saturating_add(t.time_since_epoch().count(), d.count())}},
                  t);
  }

  /// Closes the breaker and clears what its decisions rest on (the windows,
  /// the run of failures, the count of consecutive trips). Calls admitted
  /// before are of an earlier generation: their outcomes are ignored. The
  /// lifetime counters of stats() are kept.
  void reset() noexcept(noexcept(std::declval<const Clock&>().now())) { force(detail::breaker_phase::closed); }

  /// Lets every call through and only records outcomes (stats, windows)
  /// until reset() or isolate().
  void disable() noexcept(noexcept(std::declval<const Clock&>().now())) { force(detail::breaker_phase::disabled); }

  // ---------------------------------------------------------------- observation

  /// The state now. An open breaker whose open time has passed reports open
  /// until a call arrives and becomes the first probe.
  [[nodiscard]] breaker_state state() const noexcept { return static_cast<breaker_state>(core_->word().phase); }

  /// A snapshot of the counters, with the window as of now (the breaker's clock).
  [[nodiscard]] circuit_breaker_stats stats() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return stats(now());
  }

  /// A snapshot of the counters, with the window as of `now`.
  [[nodiscard]] circuit_breaker_stats stats(timestamp now) const noexcept {
    using count = detail::breaker_count;
    const detail::breaker_word w = core_->word();
    const detail::breaker_totals t = core_->totals();
    const detail::breaker_window_counts c = core_->window(now.time_since_epoch().count());
    circuit_breaker_stats s;
    s.state = static_cast<breaker_state>(w.phase);
    s.successes = t.load(count::successes);
    s.failures = t.load(count::failures);
    s.slow_calls = t.load(count::slow);
    s.throttled = t.load(count::throttled);
    s.ignored = t.load(count::ignored);
    s.rejections = t.load(count::rejections);
    s.times_opened = t.load(count::opened);
    const bool runs = w.phase == detail::breaker_phase::closed || w.phase == detail::breaker_phase::disabled;
    s.consecutive_failures = runs ? w.a : 0;
    s.probes_in_flight = w.phase == detail::breaker_phase::half_open ? w.a : 0;
    s.window_calls = static_cast<std::uint64_t>(c.calls);
    s.window_failures = static_cast<std::uint64_t>(c.failures);
    s.window_slow_calls = static_cast<std::uint64_t>(c.slow);
    if (c.calls > 0) {
      s.failure_rate = static_cast<double>(c.failures) / static_cast<double>(c.calls);
      s.slow_call_rate = static_cast<double>(c.slow) / static_cast<double>(c.calls);
    }
    s.counting = core_->counting();
    return s;
  }

  /// True when the breaker is closed with no run of failures and no failure
  /// or slow call in its window as of `now`: a fresh breaker would decide
  /// nothing differently, except that it has forgotten the window's
  /// successes (so it could only open sooner, never later). For keyed
  /// registries, to evict. Permits still in flight are not considered.
  [[nodiscard]] bool idle(timestamp now) const noexcept { return core_->idle(now.time_since_epoch().count()); }

  /// How long the breaker would stay open on its n-th consecutive trip
  /// (n >= 1), given a failure's retry_after hint.
  [[nodiscard]] std::chrono::nanoseconds open_time(unsigned n, std::optional<std::chrono::nanoseconds> retry_after =
                                                                   std::nullopt) const noexcept {
    const std::uint32_t trips = n < 1 ? 1U : (n > detail::breaker_trips_max ? detail::breaker_trips_max : n);
    return std::chrono::nanoseconds{core_->open_duration(trips, retry_after)};
  }

  /// The options in force: those given at construction, or to the last reconfigure().
  [[nodiscard]] circuit_breaker_options options() const noexcept { return core_->options.load(); }

  /// Changes the thresholds at run time (docs/reconfiguration.md). `options`
  /// is validated as by the constructor. What shapes the breaker's state is
  /// fixed at construction and must equal the breaker's: window,
  /// window_size (count window), window_duration and window_buckets (time
  /// window), whether slow_call_threshold is set, whether any rate rule
  /// (failure_rate, slow-call) is on, health and count_calls. Everything
  /// else may change: failure_threshold, failure_rate, slow_call_threshold,
  /// slow_call_rate, minimum_calls, open_for, open_for_multiplier,
  /// max_open_for, half_open_max_calls, success_threshold, half_open_timeout,
  /// count_throttled. Throws armor::error(invalid_argument) naming the
  /// option; the old configuration then stays. The state, the window and
  /// the time an open breaker was given are kept: each decision from the
  /// next one on reads the new configuration whole (never part old, part
  /// new). Thread-safe and lock-free for the calls; reconfigure() calls
  /// should not race each other (options() may then show the loser's).
  void reconfigure(const circuit_breaker_options& options) {
    const detail::breaker_config next = detail::breaker_checked(options);
    const circuit_breaker_options now = core_->options.load();
    constexpr const char* who = "armor::circuit_breaker::reconfigure";
    if (options.window != now.window) detail::fixed_at_construction(who, "window");
    if (next.windowed() != core_->config().windowed()) {
      detail::invalid_config(std::string(who) +
                             ": failure_rate and slow_call_threshold cannot turn every rate rule on or off at run "
                             "time (the breaker keeps a window only when one is on); build a new one to change it");
    }
    if (next.windowed() && now.window == breaker_window::count && options.window_size != now.window_size) {
      detail::fixed_at_construction(who, "window_size");
    }
    if (next.windowed() && now.window == breaker_window::time) {
      if (options.window_duration != now.window_duration) detail::fixed_at_construction(who, "window_duration");
      if (options.window_buckets != now.window_buckets) detail::fixed_at_construction(who, "window_buckets");
    }
    if (options.slow_call_threshold.has_value() != now.slow_call_threshold.has_value()) {
      detail::fixed_at_construction(who, "slow_call_threshold (set or not)");
    }
    if (options.health != now.health) detail::fixed_at_construction(who, "health");
    if (options.count_calls != now.count_calls) detail::fixed_at_construction(who, "count_calls");
    core_->reconfigure(next);
    core_->options.store(options);
  }

  /// The clock the breaker reads when not given a time.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  // The key is kept only when there is a listener to tell it to.
  using key_type = std::conditional_t<detail::listens<Listener>, std::string_view, detail::breaker_no_key>;

  static key_type key_of(std::string_view key) noexcept {
    if constexpr (detail::listens<Listener>) {
      return key;
    } else {
      (void)key;
      return {};
    }
  }

  [[nodiscard]] timestamp now() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return to_timestamp(clock_.now());
  }

  [[nodiscard]] std::int64_t read_clock() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return now().time_since_epoch().count();
  }

  circuit_breaker_permit permit_of(const detail::breaker_grant& g, std::int64_t t) noexcept {
    return detail::breaker_permit_access::make(core_.get(), g.gen, g.kind == detail::breaker_grant_kind::probe, t);
  }

  void force(detail::breaker_phase to) noexcept(noexcept(std::declval<const Clock&>().now())) {
    report(core_->force(to, read_clock()));
  }

  [[nodiscard]] std::string_view key() const noexcept {
    if constexpr (detail::listens<Listener>) {
      return key_;
    } else {
      return {};
    }
  }

  // Tells the listener about a transition, if the call made one.
  void report(const detail::breaker_change& c) noexcept {
    if (!c.happened) return;
    detail::notify(listener_, [&] {
      return circuit_breaker_event{static_cast<breaker_state>(c.from), static_cast<breaker_state>(c.to),
                                   static_cast<breaker_reason>(c.cause), timestamp{std::chrono::nanoseconds{c.at}},
                                   std::chrono::nanoseconds{c.open_ns}, key()};
    });
  }

  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
  [[no_unique_address]] key_type key_;
  std::unique_ptr<detail::breaker_block> core_;
};

/// A pipeline layer that isolates `breaker` when a layer inside it refuses
/// the call with errc::quota_exhausted, for the refusal's retry_after (the
/// time until the quota's window has room: for a fixed window, its reset;
/// for a lifetime window, never: until reset()). Place it just inside the
/// breaker, outside the quota tracker:
/// `pipeline{std::ref(breaker), isolate_on_exhaustion{breaker}, std::ref(quota)}`.
/// The breaker then refuses every call (circuit_open, with the time left)
/// without asking the quota, and probes when the window resets
/// (docs/quota_tracker.md, "Quota exhausted: isolate the breaker"). Holds a
/// pointer: the breaker must outlive it. Costs nothing but a branch on calls
/// the quota does not refuse; uses the pipeline's time (no clock read).
/// A disabled breaker (an operator's disable()) is left disabled: the state
/// is read just before isolating, so only a disable() racing the refusal
/// can be overtaken by it.
template <class Breaker>
class isolate_on_exhaustion {
 public:
  using permit_type = no_permit;

  explicit isolate_on_exhaustion(Breaker& breaker) noexcept : breaker_(&breaker) {}

  [[nodiscard]] admission<> admit(context&) const noexcept { return admission<>::admit(); }

  void settle(context& ctx, no_permit, const verdict& v) const noexcept {
    if (v.kind == outcome::rejected && v.retry_after && v.code == errc::quota_exhausted) [[unlikely]] {
      if (breaker_->state() == breaker_state::disabled) return;  // the operator's choice stands
      const timestamp now = ctx.now();
      breaker_->isolate_until(
          timestamp{std::chrono::nanoseconds{detail::saturating_add(now.time_since_epoch().count(),
                                                                     std::max(v.retry_after->count(), std::int64_t{0}))}},
          now);
    }
  }

 private:
  Breaker* breaker_;
};

}  // namespace armor
