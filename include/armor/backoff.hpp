// armor/backoff.hpp: retries with backoff and jitter, honouring Retry-After,
// under an optional retry budget.
//
//     using namespace std::chrono_literals;
//     auto p = armor::pipeline{
//         armor::deadline{2s},                       // retries and delays included
//         armor::backoff{{.max_attempts = 4, .initial = 100ms, .max_delay = 5s}},
//     };
//     auto body = p.execute([&](const armor::context& ctx) { return http_get(url, ctx.remaining()); });
//
// What is retried: a verdict that is retryable and not `cancelled` (by
// default every exception and every error value; a classifier decides for
// HTTP responses, see docs/backoff.md). A non-retryable failure ends the call
// after one attempt.
//
// How long to wait before retry n (n = the attempt that just failed):
//
//   1. the verdict's `retry_after` (a server's Retry-After, an inner rate
//      limiter's hint) when it has one, capped at `max_retry_after`; else
//   2. the schedule (`initial`, `multiplier`, capped at `max_delay`), with
//      jitter: by default exponential with full jitter, uniform in
//      [0, initial * multiplier^(n-1)), which is what AWS, Envoy and gRPC use.
//
// When the wait would end at or past the enclosing deadline, the policy stops
// at once with the last failure rather than sleeping in vain. The policy never
// sleeps itself: it tells the driver how long, and the driver sleeps through
// the pipeline's clock (so a manual_clock makes tests instant and exact).
//
// When the call ends, execute() rethrows the operation's last exception (or
// returns its last value); try_execute() returns a failure with code
// errc::retries_exhausted (more than one attempt) whose cause is that
// exception.
//
// Thread-safety: one backoff may serve any number of threads at once (its
// state is atomics). Cost: on the success path a few predictable branches
// and, with a retry budget, one relaxed load (about 2.5 ns over the bare
// driver); no shared write unless `count_calls`, no allocation, no lock, no
// virtual call.
#pragma once

#include <armor/context.hpp>
#include <armor/detail/backoff_budget.hpp>
#include <armor/detail/backoff_schedule.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/random.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace armor {

/// How the un-jittered delay grows with the attempt number n (n = 1 is the
/// delay after the first attempt failed).
enum class backoff_schedule : std::uint8_t {
  constant,     ///< initial, every time
  linear,       ///< initial * n
  exponential,  ///< initial * multiplier^(n-1)  (the default)
  decorrelated, ///< AWS "decorrelated jitter": uniform in [initial, min(3 * previous delay, max_delay));
                ///< ignores `multiplier` and `jitter`, which it replaces
};

/// How a schedule's delay d is randomised, so that clients that failed
/// together do not retry together.
enum class jitter_mode : std::uint8_t {
  none,          ///< exactly d
  full,          ///< uniform in [0, d)  (the default)
  equal,         ///< uniform in [d/2, d)
  proportional,  ///< uniform in [d * (1 - f), min(d * (1 + f), max_delay)), f = jitter_fraction
};

/// A retry budget shared by every call through one backoff policy, in the
/// style of gRPC's retry throttling: each retryably failed attempt takes one
/// token, each successful attempt gives back `token_ratio` tokens, and
/// retries are refused while half of `max_tokens` or fewer are left (first
/// attempts always run). The bucket starts full. With the defaults (10, 0.1,
/// as in gRPC's examples) retries stop once more than about 9 % of attempts
/// fail, and resume as successes refill the bucket.
struct retry_budget {
  std::uint32_t max_tokens = 10;  ///< bucket size; at least 1
  double token_ratio = 0.1;       ///< tokens back per success; in (0, max_tokens], multiples of 0.001
};

/// The options of armor::backoff. An aggregate: name what you change,
/// `{.max_attempts = 4, .initial = 100ms}`, keeping this order.
struct backoff_options {
  /// Attempts in all, the first one included; at least 1 (1 = never retry).
  unsigned max_attempts = 3;
  /// How delays grow.
  backoff_schedule schedule = backoff_schedule::exponential;
  /// The first delay (schedule's base); >= 0 and <= max_delay.
  std::chrono::nanoseconds initial = std::chrono::milliseconds{100};
  /// Growth factor of the exponential schedule; finite and >= 1.
  double multiplier = 2.0;
  /// No computed delay exceeds this, jitter included; >= 0.
  std::chrono::nanoseconds max_delay = std::chrono::seconds{10};
  /// How delays are randomised (not used by the decorrelated schedule).
  jitter_mode jitter = jitter_mode::full;
  /// f of jitter_mode::proportional; in [0, 1].
  double jitter_fraction = 0.2;
  /// A verdict's retry_after (a server's Retry-After) replaces the computed
  /// delay, but waits at most this long; >= 0.
  std::chrono::nanoseconds max_retry_after = std::chrono::seconds{60};
  /// The retry budget; none by default (see docs/backoff.md for why).
  std::optional<retry_budget> budget{};
  /// Count every call in stats().calls (and so stats().attempts()). Off by
  /// default: it is one atomic increment of a shared cache line per call,
  /// which costs more than the rest of the layer (about 6 ns alone, 30 ns
  /// with two threads contending, see docs/backoff.md). Every other counter
  /// moves only when an attempt fails, so the success path writes nothing.
  bool count_calls = false;
};

/// Why a backoff policy ended a call that had not succeeded.
enum class backoff_stop : std::uint8_t {
  non_retryable,  ///< the verdict was not retryable (or the caller cancelled)
  exhausted,      ///< max_attempts attempts ran
  budget,         ///< the retry budget refused the retry
  deadline,       ///< the next delay would end at or past the deadline
};

/// A snapshot of a backoff policy's counters. Each number is read atomically,
/// the set is not: under load the fields may be a few events apart.
///
/// Every failed attempt ends in exactly one of: a retry, or a give-up
/// (exhausted, budget_refusals, deadline_stops, non_retryable). Only `calls`
/// needs a write per call, so it is counted only with `count_calls`.
struct backoff_stats {
  std::uint64_t calls = 0;                  ///< calls through the policy (counted only with count_calls)
  std::uint64_t retries = 0;                ///< retries granted (delays handed to the driver)
  std::uint64_t successes_after_retry = 0;  ///< calls that succeeded on a second or later attempt
  std::uint64_t exhausted = 0;              ///< calls that failed max_attempts times
  std::uint64_t budget_refusals = 0;        ///< retries the retry budget refused
  std::uint64_t deadline_stops = 0;         ///< retries given up because the delay would not fit the deadline
  std::uint64_t non_retryable = 0;          ///< calls ended by a non-retryable (or cancelled) verdict

  /// Attempts the policy ran: every call's first attempt plus every retry
  /// (needs count_calls; without it, this is the number of retries).
  [[nodiscard]] constexpr std::uint64_t attempts() const noexcept { return calls + retries; }
  /// Attempts that did not succeed (each one was retried or ended its call).
  [[nodiscard]] constexpr std::uint64_t failed_attempts() const noexcept {
    return retries + gave_up();
  }
  /// Calls that ended without success because the policy stopped retrying.
  [[nodiscard]] constexpr std::uint64_t gave_up() const noexcept {
    return exhausted + budget_refusals + deadline_stops + non_retryable;
  }
};

/// The default random source: one splitmix64 generator per thread, seeded
/// from std::random_device on the thread's first draw. Empty, lock-free,
/// allocation-free; every copy draws from the calling thread's generator.
struct thread_rng {
  using result_type = std::uint64_t;
  [[nodiscard]] static constexpr result_type min() noexcept { return 0; }
  [[nodiscard]] static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }
  [[nodiscard]] result_type operator()() const noexcept { return detail::thread_random(); }
};

/// A reproducible random source for tests and simulations: splitmix64 from a
/// given seed. Thread-safe and lock-free (each draw is one relaxed fetch_add,
/// so concurrent draws get distinct values); single-threaded, the sequence
/// depends only on the seed. Copies start where the original stood.
class seeded_rng {
 public:
  using result_type = std::uint64_t;

  explicit seeded_rng(std::uint64_t seed = 0) noexcept : state_(seed) {}
  seeded_rng(const seeded_rng& other) noexcept : state_(other.state_.load(std::memory_order_relaxed)) {}
  seeded_rng& operator=(const seeded_rng& other) noexcept {
    state_.store(other.state_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }

  [[nodiscard]] static constexpr result_type min() noexcept { return 0; }
  [[nodiscard]] static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

  [[nodiscard]] result_type operator()() noexcept {
    // Relaxed: the state is a counter that orders nothing else; the RMW alone
    // gives each draw its own step.
    return detail::splitmix64_mix(state_.fetch_add(detail::splitmix64_gamma, std::memory_order_relaxed) +
                                  detail::splitmix64_gamma);
  }

 private:
  std::atomic<std::uint64_t> state_;
};

/// What backoff accepts as a random source: a callable returning uniformly
/// distributed 64-bit words (thread_rng, seeded_rng, std::mt19937_64,
/// std::ref(generator)). A standard generator must cover the full 64-bit
/// range (std::mt19937 does not). It is called from every thread that uses
/// the policy, so it must be thread-safe unless the policy serves one thread.
template <class G>
concept random_source = std::invocable<G&> && std::convertible_to<std::invoke_result_t<G&>, std::uint64_t>;

/// What backoff accepts as a listener: no_listener, or a type (or
/// std::ref to one) with `on_retry(unsigned attempt, std::chrono::nanoseconds
/// delay, const armor::verdict& v)`, called before each retry with the number
/// of the attempt that failed, the delay the driver will sleep, and that
/// attempt's verdict. It may also have `on_give_up(unsigned attempts,
/// armor::backoff_stop why, const armor::verdict& last)`, called when the
/// policy ends a call that did not succeed. Listeners run on the calling
/// thread, concurrently from every thread that uses the policy.
template <class L>
concept backoff_listener =
    std::is_same_v<L, no_listener> ||
    requires(std::unwrap_reference_t<L>& l, unsigned n, std::chrono::nanoseconds d, const verdict& v) {
      l.on_retry(n, d, v);
    };

namespace detail {

template <class G>
[[nodiscard]] consteval bool full_range_generator() {
  using U = std::unwrap_reference_t<G>;
  if constexpr (requires {
                  U::min();
                  U::max();
                }) {
    return static_cast<std::uint64_t>(U::min()) == 0 &&
           static_cast<std::uint64_t>(U::max()) == std::numeric_limits<std::uint64_t>::max();
  } else {
    return true;
  }
}

template <class L>
[[nodiscard]] consteval bool has_give_up() {
  return requires(std::unwrap_reference_t<L>& l, unsigned n, const verdict& v) {
    l.on_give_up(n, backoff_stop::exhausted, v);
  };
}

template <class L>
[[nodiscard]] consteval bool quiet_listener() {
  if constexpr (std::is_same_v<L, no_listener>) {
    return true;
  } else {
    using U = std::unwrap_reference_t<L>;
    constexpr bool retry_quiet = noexcept(std::declval<U&>().on_retry(0U, std::chrono::nanoseconds{},
                                                                      std::declval<const verdict&>()));
    if constexpr (has_give_up<L>()) {
      return retry_quiet && noexcept(std::declval<U&>().on_give_up(0U, backoff_stop::exhausted,
                                                                  std::declval<const verdict&>()));
    } else {
      return retry_quiet;
    }
  }
}

}  // namespace detail

/// Retries retryable failures (see the top of this header). A looping
/// policy: admit() always admits (a first attempt runs even when the retry
/// budget is empty); next() decides after each attempt whether and when to
/// run the layers inside it again.
///
/// `Rng` draws the jitter (thread_rng by default; seeded_rng in tests).
/// `Listener` hears about retries and give-ups (no_listener by default:
/// nothing is called and nothing is paid).
///
/// Construction throws armor::error(errc::invalid_argument) for bad options.
/// Thread-safe. Move-constructible so that pipelines can hold it by value;
/// the move takes over the counters and budget with plain loads, so it must
/// not race with calls through the source. To share one policy (and its
/// budget and counters) between pipelines, give them std::ref(policy).
template <random_source Rng = thread_rng, backoff_listener Listener = no_listener>
class backoff {
  static_assert(detail::full_range_generator<Rng>(),
                "armor::backoff: the random source must produce the full 64-bit range "
                "(use std::mt19937_64, not std::mt19937)");

 public:
  using permit_type = no_permit;
  using rng_type = Rng;
  using listener_type = Listener;

  /// Per-call state, kept by the driver.
  struct loop_state {
    unsigned rounds = 0;          ///< attempts this layer has run in this call
    std::int64_t previous_ns = 0; ///< the last delay handed out (decorrelated jitter grows from it)
  };

  /// Throws armor::error(errc::invalid_argument) naming the bad option.
  explicit backoff(const backoff_options& options = {}, Rng rng = Rng{}, Listener listener = Listener{})
      : options_(checked(options)),
        initial_(options.initial.count()),
        max_delay_(options.max_delay.count()),
        max_retry_after_(options.max_retry_after.count()),
        budget_(budget_config(options.budget)),
        draws_(options.schedule == backoff_schedule::decorrelated || options.jitter != jitter_mode::none),
        rng_(std::move(rng)),
        listener_(std::move(listener)) {
    counters_.tokens.store(budget_.max, std::memory_order_relaxed);  // the bucket starts full
  }

  /// Takes over `other`'s options, counters and budget level (plain loads:
  /// for building pipelines, not while `other` is in use).
  backoff(backoff&& other) noexcept(std::is_nothrow_move_constructible_v<Rng> &&
                                    std::is_nothrow_move_constructible_v<Listener>)
      : options_(other.options_),
        initial_(other.initial_),
        max_delay_(other.max_delay_),
        max_retry_after_(other.max_retry_after_),
        budget_(other.budget_),
        draws_(other.draws_),
        rng_(std::move(other.rng_)),
        listener_(std::move(other.listener_)) {
    counters_.copy_from(other.counters_);
  }

  backoff(const backoff&) = delete;  // a copy would split the budget; share with std::ref
  backoff& operator=(const backoff&) = delete;
  backoff& operator=(backoff&&) = delete;
  ~backoff() = default;

  /// The options given at construction.
  [[nodiscard]] const backoff_options& options() const noexcept { return options_; }

  /// The delay before the retry that follows failed attempt `attempt` (1 for
  /// the first attempt), computed from the schedule and jitter, given the
  /// random word `random` and, for the decorrelated schedule, the previous
  /// delay (zero or less for none). Pure: the same arguments give the same
  /// delay. Never negative, never above max_delay, for any attempt number.
  /// A verdict's retry_after is not considered here.
  [[nodiscard]] std::chrono::nanoseconds delay(unsigned attempt, std::uint64_t random,
                                               std::chrono::nanoseconds previous = {}) const noexcept {
    return std::chrono::nanoseconds{compute(attempt, random, previous.count())};
  }

  /// The delay of the schedule before jitter (for the decorrelated schedule,
  /// the lower bound `initial`). Pure; never above max_delay.
  [[nodiscard]] std::chrono::nanoseconds base_delay(unsigned attempt) const noexcept {
    return std::chrono::nanoseconds{base(attempt)};
  }

  /// The counters (see backoff_stats). Relaxed reads.
  [[nodiscard]] backoff_stats stats() const noexcept {
    constexpr auto r = std::memory_order_relaxed;  // a snapshot of standalone numbers
    backoff_stats s;
    s.calls = counters_.calls.load(r);
    s.retries = counters_.retries.load(r);
    s.successes_after_retry = counters_.successes_after_retry.load(r);
    s.exhausted = counters_.exhausted.load(r);
    s.budget_refusals = counters_.budget_refusals.load(r);
    s.deadline_stops = counters_.deadline_stops.load(r);
    s.non_retryable = counters_.non_retryable.load(r);
    return s;
  }

  /// The retry budget's level in tokens, or nothing when there is no budget.
  [[nodiscard]] std::optional<double> budget_tokens() const noexcept {
    if (!budget_.enabled()) return std::nullopt;
    // Relaxed: a reading of a standalone number.
    return static_cast<double>(counters_.tokens.load(std::memory_order_relaxed)) /
           static_cast<double>(detail::milli_tokens);
  }

  /// Always admits: the retry budget limits retries, never first attempts.
  [[nodiscard]] admission<> admit(context&) const noexcept { return admission<>::admit(); }

  void settle(context&, no_permit, const verdict&) const noexcept {}

  /// After each attempt: done, or run the inner layers again after a delay.
  [[nodiscard]] step next(const context& ctx, const verdict& v, loop_state& s) noexcept(quiet) {
    const unsigned attempt = ++s.rounds;
    if (attempt == 1 && options_.count_calls) detail::backoff_counters::bump(counters_.calls);

    if (ARMOR_LIKELY(v.ok())) {
      if (budget_.enabled()) detail::budget_refill(counters_.tokens, budget_);
      if (attempt > 1) detail::backoff_counters::bump(counters_.successes_after_retry);
      return step::done();
    }
    return after_failure(ctx, v, s, attempt);
  }

 private:
  static constexpr bool quiet =
      std::is_nothrow_invocable_v<Rng&> && detail::quiet_listener<Listener>();

  // Everything but the success path, in a function of its own so that the
  // success path stays small enough to inline into the driver.
  step after_failure(const context& ctx, const verdict& v, loop_state& s, unsigned attempt) noexcept(quiet) {
    if (!v.retryable || v.kind == outcome::cancelled) {
      detail::backoff_counters::bump(counters_.non_retryable);
      return give_up(attempt, backoff_stop::non_retryable, v);
    }

    // Only the upstream's own failures drain the budget; a refusal by an
    // inner armor layer (open breaker, empty bucket) put no load on it.
    std::int64_t level = budget_.max;
    if (budget_.enabled() && (v.kind == outcome::failure || v.kind == outcome::timeout)) {
      level = detail::budget_drain(counters_.tokens);
    }

    if (attempt >= options_.max_attempts) {
      detail::backoff_counters::bump(counters_.exhausted);
      return give_up(attempt, backoff_stop::exhausted, v);
    }

    if (budget_.enabled()) {
      // Decided on the level this failure left, or (for a rejection, which
      // drained nothing) on the current level.
      if (v.kind != outcome::failure && v.kind != outcome::timeout) {
        level = counters_.tokens.load(std::memory_order_relaxed);  // relaxed: a standalone number
      }
      if (level <= budget_.threshold) {
        detail::backoff_counters::bump(counters_.budget_refusals);
        return give_up(attempt, backoff_stop::budget, v);
      }
    }

    std::int64_t d = 0;
    if (v.retry_after) {
      // The server's hint wins over the schedule, within max_retry_after.
      d = std::clamp<std::int64_t>(v.retry_after->count(), 0, max_retry_after_);
    } else {
      d = compute(attempt, draws_ ? static_cast<std::uint64_t>(std::invoke(rng_)) : 0, s.previous_ns);
    }

    // A delay that ends at or past the deadline leaves no time for the next
    // attempt: stop now with the last failure instead of sleeping in vain.
    // (The driver checks this too; deciding here keeps the stats right.)
    if (ctx.has_deadline() &&
        detail::saturating_add(ctx.now().time_since_epoch().count(), d) >= ctx.deadline().time_since_epoch().count()) {
      detail::backoff_counters::bump(counters_.deadline_stops);
      return give_up(attempt, backoff_stop::deadline, v);
    }

    s.previous_ns = d;
    detail::backoff_counters::bump(counters_.retries);
    const std::chrono::nanoseconds delay{d};
    if constexpr (!std::is_same_v<Listener, no_listener>) listener().on_retry(attempt, delay, v);
    return step::retry_after(delay);
  }

  step give_up([[maybe_unused]] unsigned attempts, [[maybe_unused]] backoff_stop why,
               [[maybe_unused]] const verdict& v) noexcept(quiet) {
    if constexpr (!std::is_same_v<Listener, no_listener>) {
      if constexpr (detail::has_give_up<Listener>()) listener().on_give_up(attempts, why, v);
    }
    return step::done();
  }

  auto& listener() noexcept { return static_cast<std::unwrap_reference_t<Listener>&>(listener_); }

  [[nodiscard]] std::int64_t base(unsigned attempt) const noexcept {
    switch (options_.schedule) {
      case backoff_schedule::constant:
      case backoff_schedule::decorrelated:
        return initial_;
      case backoff_schedule::linear:
        return detail::linear_delay(initial_, max_delay_, attempt > 0 ? attempt : 1);
      case backoff_schedule::exponential:
        break;
    }
    return detail::exponential_delay(initial_, options_.multiplier, max_delay_, attempt);
  }

  [[nodiscard]] std::int64_t compute(unsigned attempt, std::uint64_t random, std::int64_t previous) const noexcept {
    const double u = detail::unit_interval(random);
    if (options_.schedule == backoff_schedule::decorrelated) {
      return detail::decorrelated_jitter(initial_, previous, max_delay_, u);
    }
    const std::int64_t d = base(attempt);
    switch (options_.jitter) {
      case jitter_mode::none:
        return d;
      case jitter_mode::full:
        return detail::full_jitter(d, u);
      case jitter_mode::equal:
        return detail::equal_jitter(d, u);
      case jitter_mode::proportional:
        break;
    }
    return detail::proportional_jitter(d, options_.jitter_fraction, max_delay_, u);
  }

  static const backoff_options& checked(const backoff_options& o) {
    const auto fail = [](const std::string& what) { detail::invalid_config("armor::backoff: " + what); };
    if (o.max_attempts == 0) fail("max_attempts must be at least 1 (it counts the first attempt)");
    if (o.schedule > backoff_schedule::decorrelated) fail("schedule is not a backoff_schedule value");
    if (o.initial.count() < 0) fail("initial must not be negative (got " + std::to_string(o.initial.count()) + " ns)");
    if (o.max_delay.count() < 0) {
      fail("max_delay must not be negative (got " + std::to_string(o.max_delay.count()) + " ns)");
    }
    if (o.initial > o.max_delay) {
      fail("initial must not exceed max_delay (got " + std::to_string(o.initial.count()) + " ns > " +
           std::to_string(o.max_delay.count()) + " ns)");
    }
    if (!std::isfinite(o.multiplier) || o.multiplier < 1.0) {
      fail("multiplier must be a finite number >= 1 (got " + std::to_string(o.multiplier) + ")");
    }
    if (o.jitter > jitter_mode::proportional) fail("jitter is not a jitter_mode value");
    if (!(o.jitter_fraction >= 0.0 && o.jitter_fraction <= 1.0)) {
      fail("jitter_fraction must be within [0, 1] (got " + std::to_string(o.jitter_fraction) + ")");
    }
    if (o.max_retry_after.count() < 0) {
      fail("max_retry_after must not be negative (got " + std::to_string(o.max_retry_after.count()) + " ns)");
    }
    if (o.budget) {
      if (o.budget->max_tokens == 0) fail("budget.max_tokens must be at least 1");
      const double ratio = o.budget->token_ratio;
      if (!(ratio >= 0.001 && ratio <= static_cast<double>(o.budget->max_tokens))) {
        fail("budget.token_ratio must be within [0.001, max_tokens] (got " + std::to_string(ratio) + ")");
      }
    }
    return o;
  }

  static detail::retry_budget_config budget_config(const std::optional<retry_budget>& b) noexcept {
    detail::retry_budget_config c;
    if (!b) return c;
    c.max = static_cast<std::int64_t>(b->max_tokens) * detail::milli_tokens;
    c.refill = static_cast<std::int64_t>(std::llround(b->token_ratio * static_cast<double>(detail::milli_tokens)));
    c.threshold = c.max / 2;
    return c;
  }

  // Read-only after construction (shared freely between threads' caches).
  backoff_options options_;
  std::int64_t initial_;
  std::int64_t max_delay_;
  std::int64_t max_retry_after_;
  detail::retry_budget_config budget_;
  bool draws_;  // whether a delay needs a random word
  [[no_unique_address]] Rng rng_;
  [[no_unique_address]] Listener listener_;
  // Written by calls: on a cache line of its own.
  detail::backoff_counters counters_;
};

backoff() -> backoff<>;
backoff(const backoff_options&) -> backoff<>;
template <class Rng>
backoff(const backoff_options&, Rng) -> backoff<Rng>;
template <class Rng, class Listener>
backoff(const backoff_options&, Rng, Listener) -> backoff<Rng, Listener>;

}  // namespace armor
