// armor/backoff.hpp: retries with exponential backoff and jitter, honouring
// Retry-After, bounded by the deadline and an optional retry budget. Defines
// armor::backoff<Rng, Listener>, its options, stats and event, and the
// random sources thread_rng and seeded_rng.
//
//     using namespace std::chrono_literals;
//     auto p = armor::pipeline{
//         armor::deadline{2s},                       // retries and delays included
//         armor::backoff{{.max_attempts = 4, .initial = 100ms, .max_delay = 5s}},
//     };
//     auto body = p.execute([&](const armor::context& ctx) { return http_get(url, ctx.remaining()); });
//
// What is retried, how long each wait is, the budget, the listener and the
// cost: docs/backoff.md; changing the options at run time (reconfigure()):
// docs/reconfiguration.md.
#pragma once

#include <armor/context.hpp>
#include <armor/detail/backoff_budget.hpp>
#include <armor/detail/backoff_schedule.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/random.hpp>
#include <armor/detail/time.hpp>
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
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
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

/// The enumerator's name: "constant", "linear", "exponential", "decorrelated".
[[nodiscard]] constexpr std::string_view to_string(backoff_schedule s) noexcept {
  switch (s) {
    case backoff_schedule::constant: return "constant";
    case backoff_schedule::linear: return "linear";
    case backoff_schedule::exponential: return "exponential";
    case backoff_schedule::decorrelated: return "decorrelated";
  }
  return "unknown";
}

/// How a schedule's delay d is randomised, so that clients that failed
/// together do not retry together.
enum class jitter_mode : std::uint8_t {
  none,          ///< exactly d
  full,          ///< uniform in [0, d)  (the default)
  equal,         ///< uniform in [d/2, d)
  proportional,  ///< uniform in [d * (1 - f), min(d * (1 + f), max_delay)), f = jitter_fraction
};

/// The enumerator's name: "none", "full", "equal", "proportional".
[[nodiscard]] constexpr std::string_view to_string(jitter_mode j) noexcept {
  switch (j) {
    case jitter_mode::none: return "none";
    case jitter_mode::full: return "full";
    case jitter_mode::equal: return "equal";
    case jitter_mode::proportional: return "proportional";
  }
  return "unknown";
}

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
  /// The longest refusal worth waiting for inside one call; >= 0. A refusal
  /// by an inner armor layer (verdict kind `rejected`: an open breaker, an
  /// empty token bucket, a full bulkhead, a spent quota) is retried only
  /// when it says when to come back (retry_after) and that is at most this
  /// long; otherwise the call ends at once with the refusal
  /// (backoff_stop::refused). The default waits for a token due in tens or
  /// hundreds of milliseconds and fails fast on a breaker open for seconds
  /// (see docs/backoff.md). Failures from the upstream itself (a 429 or 503
  /// with Retry-After) are not refusals: max_retry_after bounds those.
  std::chrono::nanoseconds max_refusal_wait = std::chrono::seconds{1};
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
  refused,        ///< an inner layer refused the attempt without a retry_after, or one above max_refusal_wait
};

/// The enumerator's name: "non_retryable", "exhausted", "budget", "deadline", "refused".
[[nodiscard]] constexpr std::string_view to_string(backoff_stop s) noexcept {
  switch (s) {
    case backoff_stop::non_retryable: return "non_retryable";
    case backoff_stop::exhausted: return "exhausted";
    case backoff_stop::budget: return "budget";
    case backoff_stop::deadline: return "deadline";
    case backoff_stop::refused: return "refused";
  }
  return "unknown";
}

/// What happened, for a backoff policy's listener.
enum class backoff_event_kind : std::uint8_t {
  retry,    ///< an attempt failed and the policy asked the driver to run another after `delay`
  give_up,  ///< an attempt failed and the policy ended the call (see `stop`)
};

/// The enumerator's name: "retry", "give_up".
[[nodiscard]] constexpr std::string_view to_string(backoff_event_kind k) noexcept {
  switch (k) {
    case backoff_event_kind::retry: return "retry";
    case backoff_event_kind::give_up: return "give_up";
  }
  return "unknown";
}

/// What a backoff policy's listener hears: once per retry, and once per
/// call the policy ends without success. A success is not an event.
struct backoff_event {
  backoff_event_kind kind = backoff_event_kind::retry;
  /// The attempt that failed, counted from 1; for give_up, also the number
  /// of attempts the call ran.
  unsigned attempt = 0;
  /// retry: how long the driver waits before the next attempt; give_up: zero.
  std::chrono::nanoseconds delay{};
  /// give_up: why the policy stopped; retry: not meaningful (exhausted).
  backoff_stop stop = backoff_stop::exhausted;
  /// The failed attempt's verdict: `last.code` says why it failed,
  /// `last.kind` how (failure, throttled, timeout, rejected, cancelled), and
  /// `last.retry_after` carries the server's (or an inner layer's) hint.
  verdict last{};

  /// How fmt prints it (armor/stats.hpp); `last` comes last, as it holds spaces.
  static constexpr auto fields() noexcept {
    using e = backoff_event;
    return std::tuple{armor::field("kind", &e::kind), armor::field("attempt", &e::attempt),
                      armor::field("delay", &e::delay), armor::field("stop", &e::stop), armor::field("last", &e::last)};
  }
};

/// A snapshot of a backoff policy's counters and retry budget. Each number
/// is read atomically, the set is not: under load the fields may be a few
/// events apart.
///
/// Every failed attempt ends in exactly one of: a retry, or a give-up
/// (exhausted, budget_refusals, deadline_stops, non_retryable,
/// refusal_stops). Only `calls` needs a write per call, so it is counted
/// only with `count_calls`.
struct backoff_stats {
  std::uint64_t calls = 0;                  ///< calls through the policy (counted only with count_calls)
  std::uint64_t retries = 0;                ///< retries granted (delays handed to the driver)
  std::uint64_t successes_after_retry = 0;  ///< calls that succeeded on a second or later attempt
  std::uint64_t exhausted = 0;              ///< calls that failed max_attempts times
  std::uint64_t budget_refusals = 0;        ///< retries the retry budget refused
  std::uint64_t deadline_stops = 0;         ///< retries given up because the delay would not fit the deadline
  std::uint64_t non_retryable = 0;          ///< calls ended by a non-retryable (or cancelled) verdict
  std::uint64_t refusal_stops = 0;          ///< calls ended by an inner layer's refusal not worth waiting for
  bool counting = false;                    ///< count_calls: `calls` is counted
  bool has_budget = false;                  ///< the policy has a retry budget
  double budget_tokens = 0;                 ///< the budget's level in tokens (0 without a budget)

  /// Attempts the policy ran: every call's first attempt plus every retry
  /// (needs count_calls; without it, this is the number of retries).
  [[nodiscard]] constexpr std::uint64_t attempts() const noexcept { return calls + retries; }
  /// Attempts that did not succeed (each one was retried or ended its call).
  [[nodiscard]] constexpr std::uint64_t failed_attempts() const noexcept { return retries + gave_up(); }
  /// Calls that ended without success because the policy stopped retrying.
  [[nodiscard]] constexpr std::uint64_t gave_up() const noexcept {
    return exhausted + budget_refusals + deadline_stops + non_retryable + refusal_stops;
  }

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = backoff_stats;
    return std::tuple{
        counter("calls", &s::calls, "armor_retry_calls_total",
                "Calls through the retry policy (only with count_calls).")
            .when_counting(),
        counter("retries", &s::retries, "armor_retry_attempts_total",
                "Retries granted: attempts after a call's first one."),
        counter("successes_after_retry", &s::successes_after_retry, "armor_retry_successes_after_retry_total",
                "Calls that succeeded on a second or later attempt."),
        counter("exhausted", &s::exhausted, "armor_retry_exhausted_total", "Calls that failed max_attempts times."),
        counter("budget_refusals", &s::budget_refusals, "armor_retry_budget_refused_total",
                "Retries the retry budget refused."),
        counter("deadline_stops", &s::deadline_stops, "armor_retry_deadline_stopped_total",
                "Retries given up because the delay would not fit the deadline."),
        counter("non_retryable", &s::non_retryable, "armor_retry_non_retryable_total",
                "Calls ended by a non-retryable or cancelled attempt."),
        counter("refusal_stops", &s::refusal_stops, "armor_retry_refusal_stopped_total",
                "Calls ended by an inner layer's refusal without a retry_after or one above max_refusal_wait."),
        gauge("budget_tokens", &s::budget_tokens, "armor_retry_budget_tokens",
              "Tokens left in the retry budget (retries stop at half).")
            .when(&s::has_budget),
    };
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

}  // namespace detail

/// Retries retryable failures (see docs/backoff.md). A looping policy:
/// admit() always admits (a first attempt runs even when the retry budget
/// is empty); next() decides after each attempt whether and when to run the
/// layers inside it again.
///
/// `Rng` draws the jitter (thread_rng by default; seeded_rng in tests).
/// `Listener` (armor/listener.hpp) hears each retry and each give-up as a
/// backoff_event: no_listener (the default: nothing is called, nothing is
/// stored) or a callable `void(const backoff_event&) noexcept`, or std::ref
/// to one. It runs on the calling thread, concurrently from every thread
/// that uses the policy.
///
/// Construction throws armor::error(errc::invalid_argument) for bad options;
/// reconfigure() changes them at run time (docs/reconfiguration.md).
/// Thread-safe. Move-constructible so that pipelines can hold it by value;
/// the move takes over the counters and budget with plain loads, so it must
/// not race with calls through the source. To share one policy (and its
/// budget and counters) between pipelines, give them std::ref(policy).
template <random_source Rng = thread_rng, class Listener = no_listener>
class backoff {
  static_assert(detail::full_range_generator<Rng>(),
                "armor::backoff: the random source must produce the full 64-bit range "
                "(use std::mt19937_64, not std::mt19937)");
  static_assert(listener_for<Listener, backoff_event>,
                "armor::backoff: Listener must be no_listener or callable as "
                "listener(const armor::backoff_event&) noexcept (or std::ref to such a callable)");

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
      : config_(make_config(checked(options))),
        budget_(budget_config(options.budget)),
        count_calls_(options.count_calls),
        has_budget_(options.budget.has_value()),
        rng_(std::move(rng)),
        listener_(std::move(listener)) {
    shared_.tokens.store(budget_.load().max, std::memory_order_relaxed);  // the bucket starts full
  }

  /// Takes over `other`'s options, counters and budget level (plain loads:
  /// for building pipelines, not while `other` is in use).
  backoff(backoff&& other) noexcept(std::is_nothrow_move_constructible_v<Rng> &&
                                    std::is_nothrow_move_constructible_v<Listener>)
      : config_(other.config_),
        budget_(other.budget_),
        count_calls_(other.count_calls_),
        has_budget_(other.has_budget_),
        rng_(std::move(other.rng_)),
        listener_(std::move(other.listener_)),
        shared_(other.shared_) {}

  backoff(const backoff&) = delete;  // a copy would split the budget; share with std::ref
  backoff& operator=(const backoff&) = delete;
  backoff& operator=(backoff&&) = delete;
  ~backoff() = default;

  /// The options in force: those given at construction, or to the last
  /// reconfigure() (a copy, read whole).
  [[nodiscard]] backoff_options options() const noexcept { return config_.load().options; }

  /// Changes the options at run time (docs/reconfiguration.md). `options` is
  /// validated as by the constructor; count_calls and whether there is a
  /// budget are fixed at construction and must equal the policy's. Everything
  /// else may change: max_attempts, schedule, initial, multiplier,
  /// max_delay, jitter, jitter_fraction, max_retry_after, max_refusal_wait,
  /// budget->max_tokens and budget->token_ratio. Throws
  /// armor::error(invalid_argument) naming the option; the old options then
  /// stay. Each decision after an attempt reads the options once, whole: a
  /// call under way counts its attempts so far against the new max_attempts
  /// at its next failure. The budget's level is kept, lowered to a smaller
  /// max_tokens if above it (a raised max_tokens is not filled: successes
  /// refill it). Counters are kept. Thread-safe and lock-free for the calls;
  /// allocates nothing (beyond the message of a refusal).
  void reconfigure(const backoff_options& options) {
    constexpr const char* who = "armor::backoff::reconfigure";
    (void)checked(options);
    if (options.count_calls != count_calls_) detail::fixed_at_construction(who, "count_calls");
    if (options.budget.has_value() != has_budget_) detail::fixed_at_construction(who, "budget (set or not)");
    const detail::retry_budget_config b = budget_config(options.budget);
    // The main cell first: a failure that reads it decides with its budget
    // (threshold); a success reads budget_ alone for its refill.
    config_.store(make_config(options));
    budget_.store(b);
    if (has_budget_) {
      // Relaxed: a standalone number (see backoff_budget.hpp); the CAS keeps
      // concurrent drains and refills.
      std::int64_t cur = shared_.tokens.load(std::memory_order_relaxed);
      while (cur > b.max &&
             !shared_.tokens.compare_exchange_weak(cur, b.max, std::memory_order_relaxed, std::memory_order_relaxed)) {
      }
    }
  }

  /// The delay before the retry that follows failed attempt `attempt` (1 for
  /// the first attempt), computed from the schedule and jitter, given the
  /// random word `random` and, for the decorrelated schedule, the previous
  /// delay (zero or less for none). Pure: the same arguments give the same
  /// delay. Never negative, never above max_delay, for any attempt number.
  /// A verdict's retry_after is not considered here.
  [[nodiscard]] std::chrono::nanoseconds delay(unsigned attempt, std::uint64_t random,
                                               std::chrono::nanoseconds previous = {}) const noexcept {
    return std::chrono::nanoseconds{compute(config_.load(), attempt, random, previous.count())};
  }

  /// The delay of the schedule before jitter (for the decorrelated schedule,
  /// the lower bound `initial`). Pure; never above max_delay.
  [[nodiscard]] std::chrono::nanoseconds base_delay(unsigned attempt) const noexcept {
    return std::chrono::nanoseconds{base(config_.load(), attempt)};
  }

  /// The counters and the budget's level (see backoff_stats). Relaxed reads.
  [[nodiscard]] backoff_stats stats() const noexcept {
    const auto& c = shared_.counters;
    backoff_stats s;
    s.calls = c.load(counter::calls);
    s.retries = c.load(counter::retries);
    s.successes_after_retry = c.load(counter::successes_after_retry);
    s.exhausted = c.load(counter::exhausted);
    s.budget_refusals = c.load(counter::budget_refusals);
    s.deadline_stops = c.load(counter::deadline_stops);
    s.non_retryable = c.load(counter::non_retryable);
    s.refusal_stops = c.load(counter::refusal_stops);
    s.counting = count_calls_;
    s.has_budget = has_budget_;
    if (s.has_budget) {
      // Relaxed: a reading of a standalone number.
      s.budget_tokens = static_cast<double>(shared_.tokens.load(std::memory_order_relaxed)) /
                        static_cast<double>(detail::milli_tokens);
    }
    return s;
  }

  /// The listener.
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

  /// Always admits: the retry budget limits retries, never first attempts.
  [[nodiscard]] admission<> admit(context&) const noexcept { return admission<>::admit(); }

  void settle(context&, no_permit, const verdict&) const noexcept {}

  /// After each attempt: done, or run the inner layers again after a delay.
  [[nodiscard]] step next(const context& ctx, const verdict& v, loop_state& s) noexcept(quiet) {
    const unsigned attempt = ++s.rounds;
    if (attempt == 1 && count_calls_) shared_.counters.add(counter::calls);

    if (ARMOR_LIKELY(v.ok())) {
      if (has_budget_) detail::budget_refill(shared_.tokens, budget_.load());
      if (attempt > 1) shared_.counters.add(counter::successes_after_retry);
      return step::done();
    }
    return after_failure(ctx, v, s, attempt);
  }

 private:
  using counter = detail::backoff_counter;

  // Listeners are noexcept (listener_for), so only the random source may throw.
  static constexpr bool quiet = std::is_nothrow_invocable_v<Rng&>;

  // Everything but the success path, in a function of its own so that the
  // success path stays small enough to inline into the driver.
  step after_failure(const context& ctx, const verdict& v, loop_state& s, unsigned attempt) noexcept(quiet) {
    const config c = config_.load();  // one reading per decision (reconfigure())
    const backoff_options& o = c.options;
    if (!v.retryable || v.kind == outcome::cancelled) {
      shared_.counters.add(counter::non_retryable);
      return give_up(attempt, backoff_stop::non_retryable, v);
    }

    // Only the upstream's own answers drain the budget (a failure, a timeout,
    // a throttled answer: each put load on it); a refusal by an inner armor
    // layer (open breaker, empty bucket) did not.
    const bool upstream_answered =
        v.kind == outcome::failure || v.kind == outcome::timeout || v.kind == outcome::throttled;
    std::int64_t level = c.budget.max;
    if (has_budget_ && upstream_answered) level = detail::budget_drain(shared_.tokens);

    if (attempt >= o.max_attempts) {
      shared_.counters.add(counter::exhausted);
      return give_up(attempt, backoff_stop::exhausted, v);
    }

    // A refusal is waited for only when the layer said when to come back
    // and that is soon: a token due in 20 ms, yes; a breaker open for 30 s,
    // or a full bulkhead that cannot know when a slot frees, no (fail fast).
    if (v.kind == outcome::rejected && (!v.retry_after || v.retry_after->count() > o.max_refusal_wait.count())) {
      shared_.counters.add(counter::refusal_stops);
      return give_up(attempt, backoff_stop::refused, v);
    }

    if (has_budget_) {
      // Decided on the level this failure left, or (for a rejection, which
      // drained nothing) on the current level.
      if (!upstream_answered) level = shared_.tokens.load(std::memory_order_relaxed);  // relaxed: a standalone number
      if (level <= c.budget.threshold) {
        shared_.counters.add(counter::budget_refusals);
        return give_up(attempt, backoff_stop::budget, v);
      }
    }

    std::int64_t d = 0;
    if (v.retry_after) {
      // The server's hint wins over the schedule, within max_retry_after.
      d = std::clamp<std::int64_t>(v.retry_after->count(), 0, o.max_retry_after.count());
    } else {
      d = compute(c, attempt, c.draws ? static_cast<std::uint64_t>(std::invoke(rng_)) : 0, s.previous_ns);
    }

    // A delay that ends at or past the deadline leaves no time for the next
    // attempt: stop now with the last failure instead of sleeping in vain.
    // (The driver checks this too; deciding here keeps the stats right.)
    if (ctx.has_deadline() &&
        detail::saturating_add(ctx.now().time_since_epoch().count(), d) >= ctx.deadline().time_since_epoch().count()) {
      shared_.counters.add(counter::deadline_stops);
      return give_up(attempt, backoff_stop::deadline, v);
    }

    s.previous_ns = d;
    shared_.counters.add(counter::retries);
    const std::chrono::nanoseconds delay{d};
    detail::notify(listener_, [&] {
      return backoff_event{.kind = backoff_event_kind::retry, .attempt = attempt, .delay = delay, .last = v};
    });
    return step::retry_after(delay);
  }

  step give_up(unsigned attempts, backoff_stop why, const verdict& v) noexcept {
    detail::notify(listener_, [&] {
      return backoff_event{.kind = backoff_event_kind::give_up, .attempt = attempts, .stop = why, .last = v};
    });
    return step::done();
  }

  // The options in force and what is derived from them, read whole by each
  // decision (detail::config_cell).
  struct config {
    backoff_options options;
    detail::retry_budget_config budget;  // budget's threshold, for the retry decision
    bool draws = false;                  // whether a delay needs a random word
  };

  static config make_config(const backoff_options& o) noexcept {
    return config{o, budget_config(o.budget),
                  o.schedule == backoff_schedule::decorrelated || o.jitter != jitter_mode::none};
  }

  [[nodiscard]] static std::int64_t base(const config& c, unsigned attempt) noexcept {
    const std::int64_t initial = c.options.initial.count();
    const std::int64_t max_delay = c.options.max_delay.count();
    switch (c.options.schedule) {
      case backoff_schedule::constant:
      case backoff_schedule::decorrelated:
        return initial;
      case backoff_schedule::linear:
        return detail::linear_delay(initial, max_delay, attempt > 0 ? attempt : 1);
      case backoff_schedule::exponential:
        break;
    }
    return detail::exponential_delay(initial, c.options.multiplier, max_delay, attempt);
  }

  [[nodiscard]] static std::int64_t compute(const config& c, unsigned attempt, std::uint64_t random,
                                            std::int64_t previous) noexcept {
    const double u = detail::unit_interval(random);
    const std::int64_t max_delay = c.options.max_delay.count();
    if (c.options.schedule == backoff_schedule::decorrelated) {
      return detail::decorrelated_jitter(c.options.initial.count(), previous, max_delay, u);
    }
    const std::int64_t d = base(c, attempt);
    switch (c.options.jitter) {
      case jitter_mode::none:
        return d;
      case jitter_mode::full:
        return detail::full_jitter(d, u);
      case jitter_mode::equal:
        return detail::equal_jitter(d, u);
      case jitter_mode::proportional:
        break;
    }
    return detail::proportional_jitter(d, c.options.jitter_fraction, max_delay, u);
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
    if (o.max_refusal_wait.count() < 0) {
      fail("max_refusal_wait must not be negative (got " + std::to_string(o.max_refusal_wait.count()) + " ns)");
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

  // Written only by reconfigure() (kept off the line that calls write).
  detail::config_cell<config> config_;
  detail::config_cell<detail::retry_budget_config> budget_;  // the refill's, read alone by a success
  bool count_calls_;  // fixed at construction
  bool has_budget_;   // fixed at construction
  [[no_unique_address]] Rng rng_;
  [[no_unique_address]] Listener listener_;
  // Written by calls: on a cache line of its own.
  detail::backoff_shared shared_;
};

backoff() -> backoff<>;
backoff(const backoff_options&) -> backoff<>;
template <class Rng>
backoff(const backoff_options&, Rng) -> backoff<Rng>;
template <class Rng, class Listener>
backoff(const backoff_options&, Rng, Listener) -> backoff<Rng, Listener>;

}  // namespace armor
