// armor/shadow.hpp: armor::shadow<P>, a limit tried on real traffic without
// enforcing it: the policy decides and records as usual, every call goes
// through, and what it would have refused is counted apart (shadow_stats,
// shadow_event, armor_shadow_* in Prometheus). Also shadow_options and
// shadow_decision.
//
//     using namespace std::chrono_literals;
//     // A new per-IP limit, tried for a week before it answers 429:
//     armor::keyed<armor::token_bucket<>> per_ip{{.rate = {20, 1s}, .burst = 40}};
//     armor::shadow trial{std::ref(per_ip)};
//     auto p = armor::pipeline{std::ref(trial)};
//     auto r = p.try_execute(handler, {.key = client_ip});   // never refused by per_ip
//     std::uint64_t over = trial.stats().would_refuse();     // what it would have answered 429
//
// An admitted call is settled in P as usual; a call P refuses is let
// through unrecorded in P (a refused call would not have consumed tokens,
// units or a slot), so P's state stays what enforcing it would make it. A
// wait P asks for is not waited: the call goes at once, keeping its
// reservation. P may be a policy or std::ref to one. Thread-safe as P is;
// no allocation, no lock. The rules per policy, rolling a limit out:
// docs/shadow.md.
#pragma once

#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// What the shadowed policy answered, for a shadow's listener and stats.
enum class shadow_outcome : std::uint8_t {
  admitted,      ///< the policy admitted the call
  would_refuse,  ///< the policy refused it; the call went through
  would_wait,    ///< the policy reserved for later (a token bucket's max_wait); the call went at once
  would_queue,   ///< the policy had no slot and offered its queue (a bulkhead's max_queue); the call went through
};

/// The enumerator's name: "admitted", "would_refuse", "would_wait", "would_queue".
[[nodiscard]] constexpr std::string_view to_string(shadow_outcome o) noexcept {
  switch (o) {
    case shadow_outcome::admitted: return "admitted";
    case shadow_outcome::would_refuse: return "would_refuse";
    case shadow_outcome::would_wait: return "would_wait";
    case shadow_outcome::would_queue: return "would_queue";
  }
  return "unknown";
}

/// The options of armor::shadow.
struct shadow_options {
  /// Count the calls the policy admitted (shadow_stats::admitted): one
  /// relaxed atomic add per admitted call. Off by default, so that a
  /// shadow adds no write to an admitted call; the calls it would not
  /// admit are always counted.
  bool count_calls = false;
};

/// What a shadow's listener hears: a call the policy would not have let
/// through at once (never an admitted one).
struct shadow_event {
  shadow_outcome outcome = shadow_outcome::would_refuse;
  /// Why it would have been refused (rate_limited, quota_exhausted,
  /// bulkhead_full, ...); for would_queue, the code a full queue answers.
  std::error_code code{};
  /// For would_refuse, the refusal's retry_after (zero when it gave none);
  /// for would_wait, how long the call would have waited.
  std::chrono::nanoseconds retry_after{0};
  /// The call's key (call_options::key), empty when it has none. Valid
  /// only during the listener's call.
  std::string_view key{};

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = shadow_event;
    return std::tuple{armor::field("outcome", &e::outcome), armor::field("code", &e::code),
                      armor::field("retry_after", &e::retry_after), armor::field("key", &e::key)};
  }
};

/// A snapshot of a shadow's counters, each read with a relaxed load.
struct shadow_stats {
  bool counting = false;              ///< whether `admitted` is kept (shadow_options::count_calls)
  std::uint64_t admitted = 0;         ///< calls the policy admitted
  std::uint64_t would_wait = 0;       ///< calls the policy would have made wait (they went at once)
  std::uint64_t would_queue = 0;      ///< calls the policy would have queued (they went through)
  std::uint64_t rate_limited = 0;     ///< would_refuse with rate_limited (buckets, windows)
  std::uint64_t quota_exhausted = 0;  ///< ... with quota_exhausted
  std::uint64_t bulkhead_full = 0;    ///< ... with bulkhead_full
  std::uint64_t concurrency_limited = 0;  ///< ... with concurrency_limited (adaptive_limit)
  std::uint64_t client_throttled = 0;     ///< ... with client_throttled (adaptive_throttle)
  std::uint64_t circuit_open = 0;         ///< ... with circuit_open
  std::uint64_t too_large = 0;            ///< ... with request_too_large (more than the limit can ever grant)
  std::uint64_t deadline = 0;             ///< ... with wait_exceeds_deadline or deadline_exceeded
  std::uint64_t other = 0;                ///< ... with any other code

  /// Calls the policy would have refused, for any reason.
  [[nodiscard]] constexpr std::uint64_t would_refuse() const noexcept {
    return rate_limited + quota_exhausted + bulkhead_full + concurrency_limited + client_throttled + circuit_open +
           too_large + deadline + other;
  }

  /// How fmt prints and Prometheus exports it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using s = shadow_stats;
    constexpr std::string_view refuse = "armor_shadow_would_refuse_total";
    constexpr std::string_view refuse_help =
        "Calls a policy in shadow mode would have refused, by reason; they went through.";
    return std::tuple{
        armor::counter("admitted", &s::admitted, "armor_shadow_admitted_total",
                       "Calls a policy in shadow mode admitted (count_calls only).")
            .when_counting(),
        armor::counter("would_wait", &s::would_wait, "armor_shadow_would_wait_total",
                       "Calls a policy in shadow mode would have made wait; they went at once."),
        armor::counter("would_queue", &s::would_queue, "armor_shadow_would_queue_total",
                       "Calls a policy in shadow mode would have queued; they went through."),
        armor::counter("rate_limited", &s::rate_limited, refuse, refuse_help).labelled("reason", "rate_limited"),
        armor::counter("quota_exhausted", &s::quota_exhausted, refuse, refuse_help)
            .labelled("reason", "quota_exhausted"),
        armor::counter("bulkhead_full", &s::bulkhead_full, refuse, refuse_help).labelled("reason", "bulkhead_full"),
        armor::counter("concurrency_limited", &s::concurrency_limited, refuse, refuse_help)
            .labelled("reason", "concurrency_limited"),
        armor::counter("client_throttled", &s::client_throttled, refuse, refuse_help)
            .labelled("reason", "client_throttled"),
        armor::counter("circuit_open", &s::circuit_open, refuse, refuse_help).labelled("reason", "circuit_open"),
        armor::counter("too_large", &s::too_large, refuse, refuse_help).labelled("reason", "too_large"),
        armor::counter("deadline", &s::deadline, refuse, refuse_help).labelled("reason", "deadline"),
        armor::counter("other", &s::other, refuse, refuse_help).labelled("reason", "other"),
    };
  }
};

/// A shadow's standalone answer (shadow::try_acquire): always granted, so
/// the caller goes ahead; the policy's own decision is inside.
template <decision_like D>
class shadow_decision {
 public:
  explicit shadow_decision(D d) noexcept(std::is_nothrow_move_constructible_v<D>) : d_(std::move(d)) {}

  /// Always true: a shadow lets every call through.
  [[nodiscard]] explicit operator bool() const noexcept { return true; }
  [[nodiscard]] std::error_code code() const noexcept { return {}; }
  [[nodiscard]] std::chrono::nanoseconds retry_after() const noexcept { return std::chrono::nanoseconds::zero(); }

  /// Whether the policy refused (what enforcing it would have answered).
  [[nodiscard]] bool would_refuse() const noexcept { return !static_cast<bool>(d_); }
  /// The policy's own decision.
  [[nodiscard]] const D& shadowed() const& noexcept { return d_; }
  [[nodiscard]] D shadowed() && noexcept(std::is_nothrow_move_constructible_v<D>) { return std::move(d_); }

  /// The policy's permit (empty when it refused), for policies that hand one out.
  [[nodiscard]] decltype(auto) permit() & noexcept
    requires requires(D& d) { d.permit(); }
  {
    return d_.permit();
  }
  [[nodiscard]] auto permit() && noexcept(noexcept(std::move(std::declval<D&>()).permit()))
    requires requires(D&& d) { std::move(d).permit(); }
  {
    return std::move(d_).permit();
  }

 private:
  D d_;
};

namespace detail {

/// The shadow's counters, by what the policy answered.
enum class shadow_counter : std::uint8_t {
  admitted,
  would_wait,
  would_queue,
  rate_limited,
  quota_exhausted,
  bulkhead_full,
  concurrency_limited,
  client_throttled,
  circuit_open,
  too_large,
  deadline,
  other,
  count
};

/// The counter of a refusal with `code`.
[[nodiscard]] inline shadow_counter shadow_reason(const std::error_code& code) noexcept {
  if (code.category() != error_category()) return shadow_counter::other;
  switch (static_cast<errc>(code.value())) {
    case errc::rate_limited: return shadow_counter::rate_limited;
    case errc::quota_exhausted: return shadow_counter::quota_exhausted;
    case errc::bulkhead_full: return shadow_counter::bulkhead_full;
    case errc::concurrency_limited: return shadow_counter::concurrency_limited;
    case errc::client_throttled: return shadow_counter::client_throttled;
    case errc::circuit_open: return shadow_counter::circuit_open;
    case errc::request_too_large: return shadow_counter::too_large;
    case errc::wait_exceeds_deadline:
    case errc::deadline_exceeded: return shadow_counter::deadline;
    default: return shadow_counter::other;
  }
}

/// Forwards the shadowed policy's clock_type, when it has one, so that a
/// pipeline checks it against its own.
template <class P>
struct shadow_clock_base {};
template <class P>
  requires requires { typename P::clock_type; }
struct shadow_clock_base<P> {
  using clock_type = typename P::clock_type;
};

}  // namespace detail

template <class P, class Listener = no_listener>
class shadow;

namespace detail {

template <class P>
concept shadow_has_options = requires { typename P::options_type; };
template <class P, class O>
concept shadow_options_of = shadow_has_options<P> && std::same_as<O, typename P::options_type>;
template <class P>
concept shadow_has_keyed_instance = shadow_has_options<P> && requires { typename P::keyed_instance; };

/// Forwards options_type and keyed_instance, so that keyed<shadow<P>>
/// builds one shadowed P per key (P's own per-key instance) from P's options.
template <class P, class Listener>
struct shadow_keyed_base {};
template <shadow_has_options P, class Listener>
struct shadow_keyed_base<P, Listener> {
  using options_type = typename P::options_type;
};
template <shadow_has_keyed_instance P, class Listener>
struct shadow_keyed_base<P, Listener> {
  using options_type = typename P::options_type;
  using keyed_instance = shadow<typename P::keyed_instance, Listener>;
};

}  // namespace detail

/// A policy in shadow mode (see the top of this header and docs/shadow.md).
/// `P` is the policy, held by value, or std::reference_wrapper to one (the
/// policy then may also serve elsewhere: its stats, a Prometheus registry).
/// `Listener` hears every call the policy would not have let through at
/// once, as a shadow_event: no_listener (the default) or a callable
/// `void(const shadow_event&) noexcept`, or std::ref to one.
///
/// Policy protocol: admit() asks P. Admitted: the call runs holding P's
/// permit, settled in P. Wait: the call runs at once, holding P's
/// reservation (settled in P as if it had waited), unless the wait would
/// not fit before the deadline, which the driver would refuse: then it is
/// a would-refuse (the reservation goes back). Rejected, or an offer to
/// queue: the call runs with no permit of P, so P records nothing for it.
///
/// Cost: P's, plus one relaxed add for a call P does not admit (and for one
/// it admits with count_calls). Thread-safety: as P's; the counters are
/// relaxed atomics. Moving: as P (before sharing it).
template <class P, class Listener>
class shadow : public detail::shadow_clock_base<detail::policy_of<P>>,
               public detail::shadow_keyed_base<detail::policy_of<P>, Listener> {
 public:
  /// The shadowed policy.
  using policy_type = detail::policy_of<P>;
  using listener_type = Listener;

  static_assert(policy<policy_type>, "armor::shadow<P>: P must be an armor::policy (or std::reference_wrapper to one)");
  static_assert(!looping_policy<policy_type>,
                "armor::shadow<P>: P must not loop (a retry layer refuses nothing to shadow)");
  static_assert(listener_for<Listener, shadow_event>,
                "armor::shadow: Listener must be no_listener or callable as "
                "listener(const armor::shadow_event&) noexcept (or std::ref to such a callable)");

  /// What a call holds: P's permit when P admitted it (or reserved for it).
  class permit {
   public:
    permit() noexcept = default;
    permit(permit&&) noexcept = default;
    permit& operator=(permit&&) noexcept = default;
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;
    ~permit() = default;

    /// True when P admitted the call (its permit is inside).
    [[nodiscard]] bool admitted() const noexcept { return admitted_; }

   private:
    friend class shadow;
    explicit permit(typename policy_type::permit_type inner) noexcept : inner_(std::move(inner)), admitted_(true) {}
    typename policy_type::permit_type inner_{};
    bool admitted_ = false;
  };
  using permit_type = permit;

  /// Forwarded from P: a shadowed adaptive limit still times its calls.
  static constexpr bool needs_completion_time = detail::needs_completion_time<policy_type>();

  /// Shadows `policy` (a policy, or std::ref to one).
  explicit shadow(P policy, const shadow_options& options = {}, Listener listener = Listener{})
      : policy_(std::move(policy)), counting_(options.count_calls), listener_(std::move(listener)) {}

  /// For armor::keyed<shadow<P>>: a P built from P's options and a clock.
  template <class O, class C>
    requires(!detail::is_reference_wrapper_v<P> && detail::shadow_options_of<policy_type, O> &&
             std::constructible_from<P, const O&, C>)
  shadow(const O& options, C clock) : policy_(options, std::move(clock)) {}

  /// For armor::keyed<shadow<P, Listener>>: each key's shadow gets a copy of
  /// the listener; the key is in each event (from the call) anyway.
  template <class O, class C>
    requires(!detail::is_reference_wrapper_v<P> && detail::shadow_options_of<policy_type, O> &&
             std::constructible_from<P, const O&, C> && detail::listens<Listener>)
  shadow(const O& options, C clock, const Listener& listener, std::string_view key)
      : policy_(options, std::move(clock)), listener_(listener), key_(key) {}

  shadow(shadow&&) = default;
  shadow(const shadow&) = delete;
  shadow& operator=(const shadow&) = delete;
  shadow& operator=(shadow&&) = delete;
  ~shadow() = default;

  /// Policy protocol: asks P, and lets the call through whatever it says.
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<permit> admit(context& ctx) noexcept(
      noexcept(std::declval<policy_type&>().admit(ctx))) {
    auto a = policy().admit(ctx);
    switch (a.kind) {
      case admission_kind::admitted:
        if (counting_) [[unlikely]] counters_.add(detail::shadow_counter::admitted);
        return admission<permit>::admit(permit(std::move(a.permit)));
      case admission_kind::wait: {
        // The driver refuses a wait that ends at or past the deadline; so
        // would enforcing P. Then P's reservation goes back (a.permit is
        // dropped here) and the call counts as refused.
        const std::int64_t wake = detail::saturating_add(ctx.now().time_since_epoch().count(), a.delay.count());
        if (a.delay.count() > 0 && wake >= ctx.deadline().time_since_epoch().count()) {
          refused(ctx, ctx.expired() ? errc::deadline_exceeded : errc::wait_exceeds_deadline, a.delay);
          return admission<permit>::admit();
        }
        counters_.add(detail::shadow_counter::would_wait);
        tell(shadow_outcome::would_wait, std::error_code{}, a.delay, ctx.key());
        return admission<permit>::admit(permit(std::move(a.permit)));
      }
      case admission_kind::queue:
      case admission_kind::queued:
        counters_.add(detail::shadow_counter::would_queue);
        tell(shadow_outcome::would_queue, a.code, a.retry_after.value_or(std::chrono::nanoseconds::zero()), ctx.key());
        return admission<permit>::admit();
      case admission_kind::rejected: break;
    }
    refused(ctx, a.code, a.retry_after.value_or(std::chrono::nanoseconds::zero()));
    return admission<permit>::admit();
  }

  /// Policy protocol: a call P admitted is settled in P; any other is not
  /// P's to record.
  ARMOR_ALWAYS_INLINE void settle(context& ctx, permit&& p, const verdict& v) noexcept(
      noexcept(std::declval<policy_type&>().settle(ctx, std::declval<typename policy_type::permit_type&&>(), v))) {
    if (p.admitted_) policy().settle(ctx, std::move(p.inner_), v);
  }

  /// Forwarded from P (see armor::policy): whether this instance times calls.
  [[nodiscard]] bool wants_completion_time() const noexcept { return detail::wants_completion_time(policy()); }

  /// Standalone use: asks P's try_acquire(args...) and counts its answer;
  /// the answer is always granted, with P's decision inside (see
  /// shadow_decision). Go ahead with the call either way.
  template <class... A>
    requires requires(policy_type& p, A&&... a) {
      { p.try_acquire(std::forward<A>(a)...) } -> decision_like;
    }
  [[nodiscard]] auto try_acquire(A&&... args) {
    auto d = policy().try_acquire(std::forward<A>(args)...);
    observe(d);
    return shadow_decision<decltype(d)>(std::move(d));
  }

  /// Standalone use with any decision of P (quota_tracker::try_consume,
  /// token_bucket::reserve, ...): counts it as the pipeline would, tells
  /// the listener about a refusal (with `key`, or the key this shadow was
  /// built for), and returns whether P granted it.
  template <decision_like D>
  bool observe(const D& d, std::string_view key = {}) noexcept {
    if (d) {
      if (counting_) [[unlikely]] counters_.add(detail::shadow_counter::admitted);
      return true;
    }
    counters_.add(detail::shadow_reason(d.code()));
    if constexpr (detail::listens<Listener>) {
      if (key.empty()) key = key_;
    }
    tell(shadow_outcome::would_refuse, d.code(), d.retry_after(), key);
    return false;
  }

  /// The counters now.
  [[nodiscard]] shadow_stats stats() const noexcept {
    using c = detail::shadow_counter;
    shadow_stats s;
    s.counting = counting_;
    s.admitted = counters_.load(c::admitted);
    s.would_wait = counters_.load(c::would_wait);
    s.would_queue = counters_.load(c::would_queue);
    s.rate_limited = counters_.load(c::rate_limited);
    s.quota_exhausted = counters_.load(c::quota_exhausted);
    s.bulkhead_full = counters_.load(c::bulkhead_full);
    s.concurrency_limited = counters_.load(c::concurrency_limited);
    s.client_throttled = counters_.load(c::client_throttled);
    s.circuit_open = counters_.load(c::circuit_open);
    s.too_large = counters_.load(c::too_large);
    s.deadline = counters_.load(c::deadline);
    s.other = counters_.load(c::other);
    return s;
  }

  /// Sets every counter to zero (not atomic as a whole): to start a new
  /// observation period.
  void reset_stats() noexcept { counters_.clear(); }

  /// Changes the shadowed policy's limits (its own reconfigure(),
  /// docs/reconfiguration.md), so that keyed<shadow<P>> reconfigures every
  /// key's shadowed P as keyed<P> does. Throws what P's reconfigure throws.
  template <class O>
    requires requires(policy_type& p, const O& o) { p.reconfigure(o); }
  void reconfigure(const O& options) {
    policy().reconfigure(options);
  }

  /// The shadowed policy (its own stats, options, runtime changes).
  [[nodiscard]] policy_type& policy() noexcept { return detail::unwrap(policy_); }
  [[nodiscard]] const policy_type& policy() const noexcept { return detail::unwrap(policy_); }

  /// For armor::keyed: idle when P is (a fresh shadow would decide the same;
  /// its counters go with it).
  [[nodiscard]] bool idle(timestamp now) const noexcept
    requires requires(const policy_type& p) {
      { p.idle(now) } noexcept -> std::same_as<bool>;
    }
  {
    return policy().idle(now);
  }

  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  void refused(const context& ctx, std::error_code code, std::chrono::nanoseconds retry_after) noexcept {
    counters_.add(detail::shadow_reason(code));
    tell(shadow_outcome::would_refuse, code, retry_after, ctx.key());
  }

  void tell(shadow_outcome o, std::error_code code, std::chrono::nanoseconds retry_after,
            std::string_view key) noexcept {
    detail::notify(listener_, [&] { return shadow_event{o, code, retry_after, key}; });
  }

  P policy_;
  bool counting_ = false;
  detail::counter_set<detail::shadow_counter> counters_{};
  [[no_unique_address]] Listener listener_{};
  [[no_unique_address]] std::conditional_t<detail::listens<Listener>, std::string_view, no_listener> key_{};
};

template <class P>
shadow(P) -> shadow<P>;
template <class P>
shadow(P, const shadow_options&) -> shadow<P>;
template <class P, class L>
shadow(P, const shadow_options&, L) -> shadow<P, L>;

}  // namespace armor
