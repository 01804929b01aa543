// armor/circuit_breaker.hpp: stop calling an upstream that is failing; probe
// it; recover by itself.
//
//     using namespace std::chrono_literals;
//     armor::circuit_breaker upstream{{.failure_threshold = 5, .open_for = 30s}};
//     auto p = armor::pipeline{armor::deadline{2s}, std::ref(upstream)};
//     auto r = p.try_execute([&](const armor::context& ctx) { return http_get(url, ctx.remaining()); });
//     if (!r && r.code() == armor::errc::circuit_open) return unavailable(r.retry_after());
//
// Closed, it lets calls through and watches their verdicts. It opens when any
// of its rules fires: `failure_threshold` consecutive failures; a failure rate
// of at least `failure_rate` over a sliding window (the last `window_size`
// calls, or the last `window_duration` in `window_buckets` buckets) once
// `minimum_calls` are in it; a slow-call rate of at least `slow_call_rate`,
// a call being slow when it takes longer than `slow_call_threshold`. Open, it
// refuses every call at once with errc::circuit_open and a `retry_after` until
// it half-opens, `open_for` later (longer on consecutive trips with
// `open_for_multiplier`, and at least a failure's own `retry_after`, e.g. a
// 503's Retry-After, up to `max_open_for`). Half-open, it admits up to
// `half_open_max_calls` probes at a time: `success_threshold` successful
// probes close it, one failed probe opens it again.
//
// What counts: only verdicts of kind `failure` and `timeout` are failures. A
// success is a success (a 404 a classifier calls a success does not hurt the
// upstream's health). `rejected` (armor refused the attempt, e.g. an inner
// rate limiter) and `cancelled` count as neither.
//
// Generations: every transition starts a new generation and every permit
// carries the one it was admitted in; the outcome of a call admitted in an
// earlier generation is ignored (a slow call started while closed that fails
// while half-open neither reopens nor closes the breaker). A probe whose
// permit is dropped without an outcome (an exception, a destroyed coroutine)
// gives its slot back, so half-open can never be wedged by lost probes.
//
// Manual control: isolate() holds it open until reset(); reset() closes it and
// clears its counters; disable() lets everything through and only records.
//
// Thread-safety: every member function may be called from any number of
// threads at once, except the move constructor. No mutex: the state is one
// packed std::atomic<uint64_t> (see detail/breaker_word.hpp) and the windows
// are atomics (detail/breaker_window.hpp). A rejection writes no shared
// memory. No heap allocation per call (the state is allocated once, at
// construction), no virtual call, no std::function.
//
// Cost (g++ 12 -O2, see docs/circuit_breaker.md): a closed admit + settle of
// a success about 2 ns (two relaxed loads, no write), a rejection about 4 ns
// (no write), against 32 and 14 ns for the same breaker under a std::mutex;
// a rate rule adds its window's write (10-13 ns).
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/breaker_core.hpp>
#include <armor/detail/breaker_window.hpp>
#include <armor/detail/breaker_word.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  // ---- observability
  /// Count every success and every rejection in stats() (one relaxed
  /// increment of a shared counter each). Off by default, so that a rejection
  /// writes no shared memory and the healthy path writes as little as it can.
  bool count_calls = false;
};

/// The state of a breaker.
enum class breaker_state : std::uint8_t {
  closed = 0,     ///< calls go through; outcomes are watched
  open = 1,       ///< calls are refused with errc::circuit_open until open_for has passed
  half_open = 2,  ///< a few probes go through; the rest are refused
  isolated = 3,   ///< held open by isolate() until reset()
  disabled = 4,   ///< every call goes through; outcomes are only recorded
};

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

static_assert(static_cast<int>(breaker_state::disabled) == static_cast<int>(detail::breaker_phase::disabled));
static_assert(static_cast<int>(breaker_reason::disabled) == static_cast<int>(detail::breaker_cause::disabled));

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

/// What the listener hears: one event per state transition.
struct circuit_breaker_event {
  breaker_state from;
  breaker_state to;
  breaker_reason reason;
  timestamp at;                       ///< the time of the call (or manual action) that made the change
  std::chrono::nanoseconds open_for;  ///< to == open: how long it stays open; zero otherwise
};

/// A snapshot of a breaker. Each number is read atomically, the set is not:
/// under load the fields may be a few events apart.
struct circuit_breaker_stats {
  breaker_state state = breaker_state::closed;
  // Lifetime counters (monotonic; reset() does not clear them).
  std::uint64_t successes = 0;   ///< successful outcomes (counted only with count_calls)
  std::uint64_t failures = 0;    ///< failure and timeout outcomes
  std::uint64_t slow_calls = 0;  ///< calls longer than slow_call_threshold (successes and failures)
  std::uint64_t ignored = 0;     ///< outcomes that counted as neither: rejected, cancelled, or of an earlier generation
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

  /// Outcomes recorded: successes + failures + ignored.
  [[nodiscard]] constexpr std::uint64_t calls() const noexcept { return successes + failures + ignored; }
};

/// What a breaker accepts as its listener: no_listener, or anything callable
/// (or std::ref to it) as `listener(const armor::circuit_breaker_event&)`.
/// It is called exactly once per transition, by the thread whose call made
/// it, after the change (never under a lock: there is none), concurrently
/// from every thread using the breaker. With no_listener nothing is called
/// and nothing is paid.
template <class L>
concept breaker_listener =
    std::is_same_v<L, no_listener> || std::invocable<std::unwrap_reference_t<L>&, const circuit_breaker_event&>;

namespace detail {
struct breaker_permit_access;
}

/// A breaker's receipt for one admitted call: which generation admitted it,
/// when, and whether it holds a half-open probe slot. Move-only; 24 bytes.
/// Settle it with the breaker (record(), or the pipeline's settle); dropping
/// an unsettled probe permit gives its slot back. A default-constructed or
/// moved-from permit holds nothing. A permit must not outlive its breaker.
class breaker_permit {
 public:
  breaker_permit() noexcept = default;
  breaker_permit(breaker_permit&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)), admitted_(other.admitted_), gen_(other.gen_), probe_(other.probe_) {}
  breaker_permit& operator=(breaker_permit&& other) noexcept {
    if (this != &other) {
      release();
      core_ = std::exchange(other.core_, nullptr);
      admitted_ = other.admitted_;
      gen_ = other.gen_;
      probe_ = other.probe_;
    }
    return *this;
  }
  breaker_permit(const breaker_permit&) = delete;
  breaker_permit& operator=(const breaker_permit&) = delete;
  ~breaker_permit() { release(); }

  /// True when the permit admits a call (not yet settled).
  [[nodiscard]] explicit operator bool() const noexcept { return core_ != nullptr; }
  /// True when it holds a half-open probe slot.
  [[nodiscard]] bool probe() const noexcept { return core_ != nullptr && probe_; }
  /// When the call was admitted.
  [[nodiscard]] timestamp admitted_at() const noexcept { return timestamp{std::chrono::nanoseconds{admitted_}}; }
  /// The generation that admitted it (changes with every transition).
  [[nodiscard]] std::uint32_t generation() const noexcept { return gen_; }

 private:
  friend struct detail::breaker_permit_access;

  breaker_permit(detail::breaker_core* core, std::uint32_t gen, bool probe, std::int64_t admitted) noexcept
      : core_(core), admitted_(admitted), gen_(gen), probe_(probe) {}

  void release() noexcept {
    if (core_ != nullptr && probe_) core_->release_probe(gen_);
    core_ = nullptr;
  }

  detail::breaker_core* core_ = nullptr;
  std::int64_t admitted_ = 0;
  std::uint32_t gen_ = 0;
  bool probe_ = false;
};

namespace detail {

struct breaker_permit_access {
  static breaker_permit make(breaker_core* core, std::uint32_t gen, bool probe, std::int64_t admitted) noexcept {
    return breaker_permit{core, gen, probe, admitted};
  }
  static breaker_core* core(const breaker_permit& p) noexcept { return p.core_; }
  /// Takes the permit's contents, leaving it empty (nothing to release).
  static void disarm(breaker_permit& p) noexcept { p.core_ = nullptr; }
  static std::uint32_t gen(const breaker_permit& p) noexcept { return p.gen_; }
  static bool probe(const breaker_permit& p) noexcept { return p.probe_; }
  static std::int64_t admitted(const breaker_permit& p) noexcept { return p.admitted_; }
};

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
  c.count_calls = o.count_calls;
  return c;
}

}  // namespace detail

/// The circuit breaker policy (see the top of this header).
///
/// `Clock` is the clock it reads when used on its own (try_acquire(),
/// record(), stats() without a time) and must be the pipeline's clock inside
/// a pipeline; `Listener` hears about every transition.
///
/// Construction throws armor::error(errc::invalid_argument) naming a bad
/// option, and allocates the breaker's state once. Thread-safe, except the
/// move constructor. Move-constructible so that pipelines can hold it by
/// value: the move takes over the state (a pointer), so permits issued before
/// the move stay valid; a moved-from breaker may only be destroyed. Not
/// copyable: to share one breaker between pipelines, give each
/// std::ref(breaker).
template <clock Clock = steady_clock, breaker_listener Listener = no_listener>
class circuit_breaker {
 public:
  using clock_type = Clock;
  using permit_type = breaker_permit;
  using listener_type = Listener;
  using options_type = circuit_breaker_options;  ///< for armor::keyed<circuit_breaker<...>>

  /// The driver reads the clock again after the operation, so settle() sees
  /// when the call ended (slow calls, the time window, the open time).
  static constexpr bool needs_completion_time = true;

  /// Only a slow-call rule needs the end of a successful call; without one
  /// the driver skips that clock read (failures are always re-timed).
  [[nodiscard]] bool wants_completion_time() const noexcept { return core_->config().slow_ns != 0; }

  explicit circuit_breaker(const circuit_breaker_options& options = {}, Clock clock = Clock{},
                           Listener listener = Listener{})
      : options_(options),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        core_(std::make_unique<detail::breaker_core>(detail::breaker_checked(options), read_clock())) {}

  circuit_breaker(circuit_breaker&& other) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                                    std::is_nothrow_move_constructible_v<Listener>) = default;
  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;
  circuit_breaker& operator=(circuit_breaker&&) = delete;
  ~circuit_breaker() = default;

  // ---------------------------------------------------------------- policy protocol

  /// Admits the call (a permit), or refuses it with errc::circuit_open and,
  /// when open, retry_after = the time until it half-opens.
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<breaker_permit> admit(context& ctx) noexcept(quiet) {
    return try_acquire(ctx.now());
  }

  /// Records the verdict of a call this breaker admitted; `ctx.now()` is when it ended.
  ARMOR_ALWAYS_INLINE void settle(context& ctx, breaker_permit&& permit, const verdict& v) noexcept(quiet) {
    record(std::move(permit), v, ctx.now());
  }

  // ---------------------------------------------------------------- standalone use

  /// admit() outside a pipeline, reading the breaker's clock:
  ///
  ///     auto a = breaker.try_acquire();
  ///     if (!a.permit) return reply_503(a.retry_after);
  ///     auto response = call_upstream();
  ///     breaker.record(std::move(a.permit), judge(response));
  [[nodiscard]] admission<breaker_permit> try_acquire() noexcept(quiet && noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(now());
  }

  /// admit() at the given time (on the breaker's clock).
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<breaker_permit> try_acquire(timestamp now) noexcept(quiet) {
    const std::int64_t t = now.time_since_epoch().count();
    const detail::breaker_grant g = core_->acquire(t);
    if (g.kind == detail::breaker_grant_kind::rejected) {
      auto a = admission<breaker_permit>::reject(
          errc::circuit_open,
          g.retry_after_ns >= 0 ? std::optional<std::chrono::nanoseconds>{std::chrono::nanoseconds{g.retry_after_ns}}
                                : std::nullopt,
          g.retryable);
      notify(g.change);
      return a;
    }
    // The permit exists before the listener runs: if the listener throws, the
    // permit's destructor gives the probe slot back.
    auto a = admission<breaker_permit>::admit(detail::breaker_permit_access::make(
        core_.get(), g.gen, g.kind == detail::breaker_grant_kind::probe, t));
    notify(g.change);
    return a;
  }

  /// Records the verdict of a call, ended now (the breaker's clock).
  void record(breaker_permit&& permit, const verdict& v) noexcept(quiet && noexcept(std::declval<const Clock&>().now())) {
    record(std::move(permit), v, now());
  }

  /// Records the verdict of a call that ended at `now`, and empties the
  /// permit. A permit that is empty, or comes from another breaker, is
  /// ignored here (another breaker's is released, in that breaker).
  ARMOR_ALWAYS_INLINE void record(breaker_permit&& permit, const verdict& v, timestamp now) noexcept(quiet) {
    using access = detail::breaker_permit_access;
    if (core_ == nullptr || access::core(permit) != core_.get()) {
      breaker_permit dropped = std::move(permit);
      return;
    }
    access::disarm(permit);  // the outcome settles the probe slot, if any
    const detail::breaker_change c =
        core_->record(access::gen(permit), access::probe(permit), access::admitted(permit),
                      now.time_since_epoch().count(), v);
    notify(c);
  }

  // ---------------------------------------------------------------- manual control

  /// Holds the breaker open (state isolated) until reset(): every call is
  /// refused with errc::circuit_open, not retryable, without retry_after.
  void isolate() { force(detail::breaker_phase::isolated); }

  /// Closes the breaker and clears what its decisions rest on (the windows,
  /// the run of failures, the count of consecutive trips). Calls admitted
  /// before are of an earlier generation: their outcomes are ignored. The
  /// lifetime counters of stats() are kept.
  void reset() { force(detail::breaker_phase::closed); }

  /// Lets every call through and only records outcomes (stats, windows)
  /// until reset() or isolate().
  void disable() { force(detail::breaker_phase::disabled); }

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
    const detail::breaker_word w = core_->word();
    const detail::breaker_totals t = core_->totals();
    const detail::breaker_window_counts c = core_->window(now.time_since_epoch().count());
    circuit_breaker_stats s;
    s.state = static_cast<breaker_state>(w.phase);
    s.successes = t.successes;
    s.failures = t.failures;
    s.slow_calls = t.slow;
    s.ignored = t.ignored;
    s.rejections = t.rejections;
    s.times_opened = t.opened;
    const bool counting = w.phase == detail::breaker_phase::closed || w.phase == detail::breaker_phase::disabled;
    s.consecutive_failures = counting ? w.a : 0;
    s.probes_in_flight = w.phase == detail::breaker_phase::half_open ? w.a : 0;
    s.window_calls = static_cast<std::uint64_t>(c.calls);
    s.window_failures = static_cast<std::uint64_t>(c.failures);
    s.window_slow_calls = static_cast<std::uint64_t>(c.slow);
    if (c.calls > 0) {
      s.failure_rate = static_cast<double>(c.failures) / static_cast<double>(c.calls);
      s.slow_call_rate = static_cast<double>(c.slow) / static_cast<double>(c.calls);
    }
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

  /// The options given at construction.
  [[nodiscard]] const circuit_breaker_options& options() const noexcept { return options_; }

  /// The clock the breaker reads when not given a time.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  static constexpr bool quiet = []() {
    if constexpr (std::is_same_v<Listener, no_listener>) {
      return true;
    } else {
      return std::is_nothrow_invocable_v<std::unwrap_reference_t<Listener>&, const circuit_breaker_event&>;
    }
  }();

  [[nodiscard]] timestamp now() const noexcept(noexcept(std::declval<const Clock&>().now())) {
    return to_timestamp(clock_.now());
  }

  [[nodiscard]] std::int64_t read_clock() const { return now().time_since_epoch().count(); }

  void force(detail::breaker_phase to) { notify(core_->force(to, read_clock())); }

  void notify(const detail::breaker_change& c) noexcept(quiet) {
    if constexpr (std::is_same_v<Listener, no_listener>) {
      (void)c;
    } else {
      if (!c.happened) return;
      const circuit_breaker_event e{static_cast<breaker_state>(c.from), static_cast<breaker_state>(c.to),
                                    static_cast<breaker_reason>(c.cause),
                                    timestamp{std::chrono::nanoseconds{c.at}}, std::chrono::nanoseconds{c.open_ns}};
      std::unwrap_reference_t<Listener>& l = listener_;
      std::invoke(l, e);
    }
  }

  circuit_breaker_options options_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
  std::unique_ptr<detail::breaker_core> core_;
};

}  // namespace armor
