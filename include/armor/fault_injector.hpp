// armor/fault_injector.hpp: armor::fault_injector, a layer that makes a
// share of calls fail or run late on purpose (chaos drills): it throws an
// exception, fails with an error code, returns a chosen value (a 503
// response) or adds latency, each with its own probability, behind a switch
// that can change at run time. Defines its options, permit, event and stats.
//
//     using namespace std::chrono_literals;
//     armor::fault_injector<> chaos{{.enabled = false, .error_rate = 0.05, .latency_rate = 0.1, .latency = 300ms}};
//     auto p = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(breaker), std::ref(chaos)};
//     chaos.set_enabled(drill_running());  // from any thread, at any time
//     auto r = p.try_execute([&](const armor::context& ctx) { return call_upstream(ctx.remaining()); });
//
// The injector only decides; the driver acts. An injected failure replaces
// the layers inside and the operation and is judged like a real attempt, so
// the layers outside (retry, breaker) see it. Injected latency is a wait the
// driver sleeps (an Asio timer on Asio) before the inner layers; one that
// would outlast the deadline ends the attempt there, as a timeout.
// Thread-safe; no lock, allocation or virtual call per call; disabled, it
// reads one atomic and draws nothing. Options, placement in a pipeline,
// cost: docs/fault_injection.md.
#pragma once

#include <armor/backoff.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/random.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// The options of armor::fault_injector. An aggregate: `{.error_rate =
/// 0.01, .latency_rate = 0.05, .latency = 200ms}`, naming what you change,
/// in this order. A rate is a probability per call in [0, 1]; a rate outside
/// it (1.5, a negative number, NaN) is refused at construction, never clamped.
struct fault_injector_options {
  /// The switch's position at construction; set_enabled() moves it later.
  bool enabled = true;
  /// The share of calls that fail with `exception` thrown in place of the operation.
  double exception_rate = 0;
  /// What those calls throw; empty (the default): a std::system_error with
  /// armor::errc::operation_failed, which the default classifier judges a
  /// retryable failure. Made once, at construction.
  std::exception_ptr exception{};
  /// The share of calls that fail with `error` (the verdict a failure with
  /// that code, no value: the call's failure carries the code).
  double error_rate = 0;
  /// The code of those failures; must be an error (not value 0).
  std::error_code error = errc::operation_failed;
  /// The share of calls that return the injector's chosen value (an HTTP 503
  /// response), judged by the pipeline's classifier like a real answer.
  /// Needs fault_injector<Result> built with that value. The three failure
  /// rates together must not exceed 1: one draw picks at most one failure.
  double result_rate = 0;
  /// The share of calls delayed by `latency` (drawn apart from the failures:
  /// a call can be both slow and failed).
  double latency_rate = 0;
  /// How long an injected delay lasts; positive when latency_rate > 0.
  std::chrono::nanoseconds latency{};
  /// The most calls that may carry a fault at once (from admission until the
  /// layer settles); a call that draws a fault beyond it runs untouched and
  /// counts as `capped`. At least 1; unlimited by default.
  std::uint32_t max_active = std::numeric_limits<std::uint32_t>::max();
};

/// What a fault_injector injected.
enum class fault_kind : std::uint8_t {
  exception,  ///< the operation was replaced by a thrown exception
  error,      ///< the attempt failed with the options' error code
  result,     ///< the operation was replaced by the injector's chosen value
  latency,    ///< the call was delayed before the inner layers ran
};

/// The enumerator's name: "exception", "error", "result", "latency".
[[nodiscard]] constexpr std::string_view to_string(fault_kind k) noexcept {
  switch (k) {
    case fault_kind::exception: return "exception";
    case fault_kind::error: return "error";
    case fault_kind::result: return "result";
    case fault_kind::latency: return "latency";
  }
  return "unknown";
}

/// What a fault injector's listener hears: each fault injected, once (a
/// call both delayed and failed is two events, latency first).
struct fault_injector_event {
  fault_kind kind = fault_kind::error;
  std::chrono::nanoseconds latency{};  ///< the delay (latency only; zero otherwise)

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = fault_injector_event;
    return std::tuple{armor::field("kind", &e::kind), armor::field("latency", &e::latency)};
  }
};

/// A snapshot of a fault injector: its switch, the calls carrying a fault
/// now, and the faults injected so far by kind.
struct fault_injector_stats {
  bool enabled = false;           ///< the switch
  std::uint64_t active = 0;       ///< calls carrying a fault now
  std::uint64_t exceptions = 0;   ///< exceptions injected
  std::uint64_t errors = 0;       ///< error codes injected
  std::uint64_t results = 0;      ///< chosen values injected
  std::uint64_t latencies = 0;    ///< delays injected
  std::uint64_t capped = 0;       ///< faults drawn but not injected: max_active calls already carried one

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = fault_injector_stats;
    constexpr std::string_view injected_help = "Faults the fault injector injected, by kind.";
    return std::tuple{
        armor::gauge("enabled", &s::enabled, "armor_fault_injector_enabled",
                     "1 while the fault injector injects faults, else 0."),
        armor::gauge("active", &s::active, "armor_fault_injector_active", "Calls carrying an injected fault now."),
        armor::counter("exceptions", &s::exceptions, "armor_fault_injector_injected_total", injected_help)
            .labelled("kind", "exception"),
        armor::counter("errors", &s::errors, "armor_fault_injector_injected_total", injected_help)
            .labelled("kind", "error"),
        armor::counter("results", &s::results, "armor_fault_injector_injected_total", injected_help)
            .labelled("kind", "result"),
        armor::counter("latencies", &s::latencies, "armor_fault_injector_injected_total", injected_help)
            .labelled("kind", "latency"),
        armor::counter("capped", &s::capped, "armor_fault_injector_capped_total",
                       "Faults the fault injector drew but did not inject because max_active calls carried one."),
    };
  }
};

template <class Result = void, random_source Rng = thread_rng, class Listener = no_listener>
class fault_injector;

/// A fault injector's receipt for one call: the faults drawn for it, and its
/// place among the calls carrying one (max_active), given back when the
/// layer settles or the permit is dropped. Empty (and free to drop) for a
/// call that carries no fault. Move-only; must not outlive its injector.
class fault_injector_permit {
 public:
  fault_injector_permit() noexcept = default;
  fault_injector_permit(fault_injector_permit&& other) noexcept
      : active_(std::exchange(other.active_, nullptr)), latency_(other.latency_), failure_(other.failure_) {}
  fault_injector_permit& operator=(fault_injector_permit&& other) noexcept {
    if (this != &other) {
      release();
      active_ = std::exchange(other.active_, nullptr);
      latency_ = other.latency_;
      failure_ = other.failure_;
    }
    return *this;
  }
  fault_injector_permit(const fault_injector_permit&) = delete;
  fault_injector_permit& operator=(const fault_injector_permit&) = delete;
  ~fault_injector_permit() { release(); }

  /// True when the call carries a fault (a failure, a delay or both).
  [[nodiscard]] bool injects() const noexcept { return active_ != nullptr; }
  /// The delay to sleep before the inner layers; zero for none.
  [[nodiscard]] std::chrono::nanoseconds latency() const noexcept { return latency_; }
  /// True when the attempt is replaced by a failure (see failure()).
  [[nodiscard]] bool fails() const noexcept { return active_ != nullptr && failure_ != fault_kind::latency; }
  /// Which failure: exception, error or result (latency when none).
  [[nodiscard]] fault_kind failure() const noexcept { return failure_; }
  /// For the drivers: the failure is a thrown exception; a returned value.
  [[nodiscard]] bool throws() const noexcept { return fails() && failure_ == fault_kind::exception; }
  [[nodiscard]] bool returns_value() const noexcept { return fails() && failure_ == fault_kind::result; }

  /// Gives back the place among active faults; the permit is empty afterwards.
  void release() noexcept {
    // Relaxed: the count only bounds how many faults run at once; it
    // publishes no other data.
    if (std::atomic<std::uint32_t>* a = std::exchange(active_, nullptr)) a->fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  template <class, random_source, class>
  friend class fault_injector;
  fault_injector_permit(std::atomic<std::uint32_t>* active, std::chrono::nanoseconds latency, fault_kind failure) noexcept
      : active_(active), latency_(latency), failure_(failure) {}

  std::atomic<std::uint32_t>* active_ = nullptr;
  std::chrono::nanoseconds latency_{};
  fault_kind failure_ = fault_kind::latency;  // latency: no failure
};

namespace detail {

enum class fault_counter : std::uint8_t { exception, error, result, latency, capped, count };

[[noreturn]] inline void fault_refuse(const std::string& what) { invalid_config("armor::fault_injector: " + what); }

inline void fault_check_rate(const char* name, double rate) {
  if (!(rate >= 0.0 && rate <= 1.0)) {
    fault_refuse(std::string(name) + " must be a probability within [0, 1] (got " + std::to_string(rate) + ")");
  }
}

/// The default exception of an exception fault.
[[nodiscard]] inline std::exception_ptr default_injected_exception() {
  return std::make_exception_ptr(
      std::system_error(make_error_code(errc::operation_failed), "armor::fault_injector: injected exception"));
}

/// Stands in for a value type when the injector has none (Result = void).
struct no_injected_result {};

}  // namespace detail

/// Injects faults into the calls that pass through it (see the top of this
/// header and docs/fault_injection.md). An armor::policy that the drivers
/// recognise (`injects_faults`): a driver that did not would run every call
/// untouched.
///
/// `Result` is the type of the value a result fault returns (void: none);
/// the pipeline's operation must return a type constructible from it.
/// `Rng` draws the random numbers (armor::random_source: thread_rng by
/// default, seeded_rng or a scripted stub in tests); it is called from every
/// thread that uses the injector, only while it is enabled, and only for the
/// draws whose rate is above zero: one for the failures, one for latency.
/// `Listener` (armor::listener_for fault_injector_event) hears every fault
/// injected.
///
/// Construction throws armor::error(errc::invalid_argument) naming a bad
/// option; it allocates only the default exception. Every member may be
/// called concurrently, except the move constructor.
template <class Result, random_source Rng, class Listener>
class fault_injector {
  static_assert(detail::full_range_generator<Rng>(),
                "armor::fault_injector: Rng must be a random source producing the full 64-bit range "
                "(armor::thread_rng, armor::seeded_rng, std::mt19937_64)");
  static_assert(listener_for<Listener, fault_injector_event>,
                "armor::fault_injector: Listener must be no_listener or callable as "
                "listener(const armor::fault_injector_event&) noexcept (or std::ref to such a callable)");

  using stored_result = std::conditional_t<std::is_void_v<Result>, detail::no_injected_result, Result>;

 public:
  using permit_type = fault_injector_permit;
  using result_type = Result;
  using rng_type = Rng;
  /// Tells the drivers to act on the faults in this layer's permits.
  static constexpr bool injects_faults = true;

  /// An injector with no result fault (Result = void).
  explicit fault_injector(const fault_injector_options& options = {}, Rng rng = Rng{}, Listener listener = Listener{})
    requires std::is_void_v<Result>
      : fault_injector(options, stored_result{}, std::move(rng), std::move(listener), 0) {}

  /// An injector whose result faults return a copy of `injected`.
  template <class R = Result>
    requires(!std::is_void_v<R>)
  fault_injector(const fault_injector_options& options, R injected, Rng rng = Rng{}, Listener listener = Listener{})
      : fault_injector(options, stored_result(std::move(injected)), std::move(rng), std::move(listener), 0) {}

  fault_injector(const fault_injector&) = delete;
  fault_injector& operator=(const fault_injector&) = delete;
  /// Moves the options, the switch and the counters; not while in use.
  fault_injector(fault_injector&& other) noexcept(std::is_nothrow_move_constructible_v<stored_result> &&
                                                 std::is_nothrow_move_constructible_v<Rng> &&
                                                 std::is_nothrow_move_constructible_v<Listener>)
      : options_(std::move(other.options_)),
        result_(std::move(other.result_)),
        rng_(std::move(other.rng_)),
        listener_(std::move(other.listener_)),
        failure_rate_(other.failure_rate_),
        enabled_(other.enabled_.load(std::memory_order_relaxed)),
        counters_(other.counters_) {}
  fault_injector& operator=(fault_injector&&) = delete;
  ~fault_injector() = default;

  /// Turns injection on or off for the calls admitted from now on (calls
  /// already carrying a fault keep it). Any thread, any time.
  void set_enabled(bool on) noexcept {
    // Relaxed: an independent switch; no data is published with it.
    enabled_.store(on, std::memory_order_relaxed);
  }
  [[nodiscard]] bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }

  /// The options the injector was built with (with the default exception filled in).
  [[nodiscard]] const fault_injector_options& options() const noexcept { return options_; }

  /// What an exception fault throws, an error fault's code, a result fault's value.
  [[nodiscard]] const std::exception_ptr& injected_exception() const noexcept { return options_.exception; }
  [[nodiscard]] std::error_code injected_error() const noexcept { return options_.error; }
  template <class R = Result>
    requires(!std::is_void_v<R>)
  [[nodiscard]] const R& injected_result() const noexcept {
    return result_;
  }

  /// The protocol: draws this call's faults. Always admits; the permit
  /// carries what to inject, which the driver carries out. Reads one atomic
  /// and returns an empty permit when disabled or when nothing is drawn.
  [[nodiscard]] admission<fault_injector_permit> admit(context&) noexcept(std::is_nothrow_invocable_v<Rng&>) {
    if (!enabled_.load(std::memory_order_relaxed)) return admission<fault_injector_permit>::admit();
    fault_kind failure = fault_kind::latency;  // none
    if (failure_rate_ > 0.0) {
      const double u = draw();
      if (u < options_.exception_rate) {
        failure = fault_kind::exception;
      } else if (u < options_.exception_rate + options_.error_rate) {
        failure = fault_kind::error;
      } else if (u < failure_rate_) {
        failure = fault_kind::result;
      }
    }
    const bool slow = options_.latency_rate > 0.0 && draw() < options_.latency_rate;
    if (ARMOR_LIKELY(failure == fault_kind::latency && !slow)) return admission<fault_injector_permit>::admit();
    if (!take_place()) {
      counters_.add(detail::fault_counter::capped);
      return admission<fault_injector_permit>::admit();
    }
    const std::chrono::nanoseconds delay = slow ? options_.latency : std::chrono::nanoseconds::zero();
    if (slow) {
      counters_.add(detail::fault_counter::latency);
      detail::notify(listener_, [&] { return fault_injector_event{fault_kind::latency, delay}; });
    }
    if (failure != fault_kind::latency) {
      counters_.add(static_cast<detail::fault_counter>(failure));
      detail::notify(listener_, [&] { return fault_injector_event{failure, {}}; });
    }
    return admission<fault_injector_permit>::admit(fault_injector_permit{&active_, delay, failure});
  }

  /// The protocol: gives back the call's place among active faults.
  void settle(context&, fault_injector_permit permit, const verdict&) noexcept { permit.release(); }

  /// A snapshot (relaxed loads, consistent field by field).
  [[nodiscard]] fault_injector_stats stats() const noexcept {
    fault_injector_stats s;
    s.enabled = enabled();
    s.active = active_.load(std::memory_order_relaxed);
    s.exceptions = counters_.load(detail::fault_counter::exception);
    s.errors = counters_.load(detail::fault_counter::error);
    s.results = counters_.load(detail::fault_counter::result);
    s.latencies = counters_.load(detail::fault_counter::latency);
    s.capped = counters_.load(detail::fault_counter::capped);
    return s;
  }

 private:
  fault_injector(const fault_injector_options& options, stored_result result, Rng rng, Listener listener, int)
      : options_(checked(options)),
        result_(std::move(result)),
        rng_(std::move(rng)),
        listener_(std::move(listener)),
        failure_rate_(options.exception_rate + options.error_rate + options.result_rate),
        enabled_(options.enabled) {}

  static fault_injector_options checked(const fault_injector_options& o) {
    detail::fault_check_rate("exception_rate", o.exception_rate);
    detail::fault_check_rate("error_rate", o.error_rate);
    detail::fault_check_rate("result_rate", o.result_rate);
    detail::fault_check_rate("latency_rate", o.latency_rate);
    if (o.exception_rate + o.error_rate + o.result_rate > 1.0) {
      detail::fault_refuse("exception_rate + error_rate + result_rate must not exceed 1 (got " +
                           std::to_string(o.exception_rate + o.error_rate + o.result_rate) + ")");
    }
    if (std::is_void_v<Result> && o.result_rate > 0.0) {
      detail::fault_refuse("result_rate needs a value to return: build fault_injector<R> with one");
    }
    if (o.error_rate > 0.0 && !o.error) detail::fault_refuse("error must be an error code (value 0 means success)");
    if (o.latency < std::chrono::nanoseconds::zero() || (o.latency_rate > 0.0 && o.latency.count() == 0)) {
      detail::fault_refuse("latency must be positive when latency_rate is above 0 (got " +
                           std::to_string(o.latency.count()) + " ns)");
    }
    if (o.max_active < 1) detail::fault_refuse("max_active must be at least 1 (got 0)");
    fault_injector_options c = o;
    if (!c.exception) c.exception = detail::default_injected_exception();
    return c;
  }

  [[nodiscard]] double draw() noexcept(std::is_nothrow_invocable_v<Rng&>) {
    return detail::unit_interval(static_cast<std::uint64_t>(std::invoke(rng_)));
  }

  // A place among the calls carrying a fault, unless max_active have one.
  [[nodiscard]] bool take_place() noexcept {
    // Relaxed: the count bounds concurrency only; nothing else is published.
    std::uint32_t n = active_.load(std::memory_order_relaxed);
    do {
      if (n >= options_.max_active) return false;
    } while (!active_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }

  fault_injector_options options_;
  [[no_unique_address]] stored_result result_;
  [[no_unique_address]] Rng rng_;
  [[no_unique_address]] Listener listener_;
  double failure_rate_ = 0;  // exception_rate + error_rate + result_rate
  std::atomic<bool> enabled_;
  alignas(detail::cache_line) std::atomic<std::uint32_t> active_{0};
  detail::counter_set<detail::fault_counter> counters_;
};

fault_injector() -> fault_injector<>;
fault_injector(const fault_injector_options&) -> fault_injector<>;
template <class R>
fault_injector(const fault_injector_options&, R) -> fault_injector<R>;
template <class R, class G>
fault_injector(const fault_injector_options&, R, G) -> fault_injector<R, G>;
template <class R, class G, class L>
fault_injector(const fault_injector_options&, R, G, L) -> fault_injector<R, G, L>;

}  // namespace armor
