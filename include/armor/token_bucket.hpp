// armor/token_bucket.hpp: armor::token_bucket, an exact, lock-free rate
// limiter (rate + burst), and its options, decision, permit, event and stats.
//
//     using namespace std::chrono_literals;
//     armor::token_bucket bucket{{.rate = {100, 1s}, .burst = 20}};
//     if (armor::token_bucket_decision<> d = bucket.try_acquire(); !d) {
//         reject(d.code(), d.retry_after());  // rate_limited, and exactly when a token is there
//     }
//     // Or as a pipeline layer that waits up to 2 s for its token:
//     auto p = armor::pipeline{armor::token_bucket{{.rate = {50, 1s}, .burst = 10, .max_wait = 2s}}};
//
// Semantics are golang.org/x/time/rate's AllowN(t, n), in exact integer
// arithmetic: the bucket starts full, refills continuously up to `burst`, a
// request is all or nothing, and n > burst fails at once (request_too_large).
// armor/http/rate_limit.hpp turns a decision into 429 response headers.
//
// Thread-safety: every member may be called concurrently, except moving the
// bucket (move it before sharing it; share it with std::ref). Cost: a
// grant reads the config and the TAT and does one 8-byte CAS (a 16-byte CAS
// of {TAT, generation} once the rate was changed or re-based); a denial
// reads the same and writes nothing. Nothing allocates, nothing locks, no
// floating point. The representation, its limits, the proofs and measured costs:
// docs/token_bucket.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/bucket_parse.hpp>
#include <armor/detail/bucket_state.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/rate.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// The options of armor::token_bucket. An aggregate:
/// `{.rate = {100, 1s}, .burst = 20, .max_wait = 500ms}`.
struct token_bucket_options {
  /// Tokens added per unit of time; required (count > 0, per > 0, at most
  /// one token per nanosecond).
  armor::rate rate{};
  /// Bucket size: tokens available at once, and at the start; >= 1. The
  /// default 1 means strict pacing, one call every rate.per / rate.count.
  std::int64_t burst = 1;
  /// In a pipeline, how long a call may wait for its tokens; 0 (the
  /// default) rejects at once with rate_limited and retry_after. >= 0.
  std::chrono::nanoseconds max_wait{0};
  /// Count granted, rejected and too-large calls in stats() (one relaxed
  /// atomic add per call, on the bucket's own cache line). Off by default:
  /// it turns a denial, which otherwise writes nothing, into a write.
  /// Buckets inside armor::keyed never count (they are unpadded, and per
  /// key counts would cost memory per key).
  bool count_calls = false;
  /// In a pipeline, which of the call's costs this bucket takes as tokens:
  /// the call's cost (the default), cost_source::slot(i) for
  /// call_options::costs[i], or cost_source::per_call() for one token per
  /// call whatever the call costs elsewhere (a request rate beside a token
  /// or dollar quota). Kept in the state's padding: no extra memory per key.
  cost_source cost{};

  /// Parses a rate and options: "100/s", "10r/s burst=20",
  /// "5000/h, burst=100, max_wait=2s" (burst defaults to 1, max_wait to 0).
  /// Throws armor::error(invalid_argument) quoting the text when it is malformed.
  [[nodiscard]] static token_bucket_options parse(std::string_view text) {
    const detail::parsed_limit p = detail::limit_parser(text, "armor::token_bucket_options::parse").limit();
    return {{p.count, std::chrono::nanoseconds{p.per_ns}},
            p.burst.value_or(1),
            std::chrono::nanoseconds{p.max_wait_ns.value_or(0)}};
  }
};

/// How a token bucket answered.
enum class token_bucket_status : std::uint8_t {
  granted,    ///< the tokens were taken (for a reservation: reserved; see wait())
  denied,     ///< too few tokens now (or within the allowed wait); see retry_after()
  too_large,  ///< more tokens than the burst: can never be granted
  invalid,    ///< a negative number of tokens
};

/// The enumerator's name: "granted", "denied", "too_large", "invalid".
[[nodiscard]] constexpr std::string_view to_string(token_bucket_status s) noexcept {
  switch (s) {
    case token_bucket_status::granted: return "granted";
    case token_bucket_status::denied: return "denied";
    case token_bucket_status::too_large: return "too_large";
    case token_bucket_status::invalid: return "invalid";
  }
  return "unknown";
}

template <class Clock, bool Padded, class Listener>
class token_bucket;

namespace detail {
/// Builds token_bucket_decision<>s for other bucket implementations (the
/// Redis bucket); defined after token_bucket_decision.
struct bucket_decision_access;
}  // namespace detail

/// A snapshot of a token bucket: its limit, its level now, and (with
/// token_bucket_options::count_calls) what it has decided. Each field is
/// read with a relaxed load: consistent one by one, not as a whole.
struct token_bucket_stats {
  armor::rate rate{};                        ///< the current rate, in lowest terms
  std::int64_t burst = 0;                    ///< the current burst
  std::int64_t available = 0;                ///< whole tokens available now (< 0: owed to reservations)
  std::chrono::nanoseconds until_full{0};    ///< time until the bucket is full again
  bool counting = false;                     ///< whether the counters below are kept
  std::uint64_t granted = 0;                 ///< calls granted, waits included
  std::uint64_t rejected = 0;                ///< calls refused: too few tokens within the wait allowed
  std::uint64_t too_large = 0;               ///< calls refused for asking more than the burst

  /// The fields as armor/fmt.hpp prints them and armor/prometheus.hpp
  /// exports them (armor_rate_limit_*; the counters only while counting).
  static constexpr auto fields() noexcept {
    using s = token_bucket_stats;
    return std::tuple{
        armor::gauge("rate", &s::rate, "armor_rate_limit_tokens_per_second", "The token bucket's refill rate."),
        armor::gauge("burst", &s::burst, "armor_rate_limit_burst",
                     "The token bucket's size: tokens available at once."),
        armor::gauge("available", &s::available, "armor_rate_limit_available_tokens",
                     "Whole tokens in the bucket now (below zero: owed to reservations)."),
        armor::gauge("until_full", &s::until_full, "armor_rate_limit_full_in_seconds",
                     "Seconds until the token bucket is full again."),
        armor::counter("granted", &s::granted, "armor_rate_limit_granted_total",
                       "Calls the token bucket granted, waits included (count_calls only).")
            .when_counting(),
        armor::counter("rejected", &s::rejected, "armor_rate_limit_rejected_total",
                       "Calls the token bucket refused for too few tokens (count_calls only).")
            .when_counting(),
        armor::counter("too_large", &s::too_large, "armor_rate_limit_too_large_total",
                       "Calls the token bucket refused for asking more than the burst (count_calls only).")
            .when_counting(),
    };
  }
};

/// What a token bucket's listener hears: a call it refused. A listener is
/// armor::no_listener (the default: nothing stored, nothing called) or
/// anything callable as `listener(const token_bucket_event&) noexcept` (or
/// std::ref to it); it runs on the refused caller's thread, once per refusal.
struct token_bucket_event {
  token_bucket_status status = token_bucket_status::denied;  ///< denied, or too_large
  std::int64_t tokens = 0;                                   ///< tokens the call asked for
  /// For `denied`: when the tokens will be there (what the caller is told
  /// to wait); zero for `too_large`, which no wait can grant.
  std::chrono::nanoseconds retry_after{0};

  /// How fmt prints it (armor/stats.hpp).
  static constexpr auto fields() noexcept {
    using e = token_bucket_event;
    return std::tuple{armor::field("status", &e::status), armor::field("tokens", &e::tokens),
                      armor::field("retry_after", &e::retry_after)};
  }
};

namespace detail {
/// The counters of a padded bucket (they fit in its cache-line padding),
/// indexed like bucket_outcome.
enum class bucket_counter : std::uint8_t { granted, rejected, too_large, count };
static_assert(static_cast<int>(bucket_counter::granted) == static_cast<int>(bucket_outcome::granted) &&
              static_cast<int>(bucket_counter::rejected) == static_cast<int>(bucket_outcome::denied) &&
              static_cast<int>(bucket_counter::too_large) == static_cast<int>(bucket_outcome::too_large));

struct bucket_counters {
  counter_set<bucket_counter> calls;
  bool on = false;

  explicit bucket_counters(bool count) noexcept : on(count) {}
};
/// Unpadded buckets (per key in armor::keyed) count nothing.
struct no_bucket_counters {
  explicit no_bucket_counters(bool) noexcept {}
};
}  // namespace detail

/// A token bucket's answer (an armor::decision_like): to try_acquire() with
/// no permit (the tokens are spent already), to reserve() with the
/// token_bucket_permit that holds the reserved tokens. Whether the tokens
/// were granted, why not, and the numbers a server puts in its rate-limit
/// headers. A small value (no allocation); move-only when it holds a permit.
/// The numbers are computed on demand from the exact state the decision
/// saw, so asking costs a division or two.
///
///     if (auto d = bucket.reserve(1, 2s)) {
///         sleep_for(d.wait());   // until the reserved token is due
///         d.permit().commit();   // used: keep it (dropped uncommitted, it goes back)
///         call_upstream();
///     }
template <class Permit = no_permit>
class token_bucket_decision {
 public:
  using permit_type = Permit;

  [[nodiscard]] constexpr token_bucket_status status() const noexcept { return status_; }
  /// Whether the tokens were granted (the same as `explicit operator bool`).
  [[nodiscard]] constexpr bool allowed() const noexcept { return status_ == token_bucket_status::granted; }
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return allowed(); }

  /// Why the tokens were not granted: empty when granted; errc::rate_limited
  /// (denied), errc::request_too_large (too_large) or errc::invalid_argument
  /// (a negative number of tokens). A bucket whose state lives elsewhere
  /// (armor::redis_token_bucket) may deny for its own reason, e.g.
  /// errc::storage_unavailable.
  [[nodiscard]] std::error_code code() const noexcept {
    if (code_ != errc{}) return code_;
    switch (status_) {
      case token_bucket_status::granted: return {};
      case token_bucket_status::denied: return errc::rate_limited;
      case token_bucket_status::too_large: return errc::request_too_large;
      case token_bucket_status::invalid: break;
    }
    return errc::invalid_argument;
  }

  /// The burst: what the bucket holds when full (RateLimit-Limit).
  [[nodiscard]] constexpr std::int64_t limit() const noexcept { return burst_; }
  /// The bucket's rate when it decided, in lowest terms (RateLimit-Policy).
  [[nodiscard]] constexpr armor::rate rate() const noexcept { return {count_, std::chrono::nanoseconds{period_}}; }
  /// The tokens this decision was asked for.
  [[nodiscard]] constexpr std::int64_t requested() const noexcept { return n_; }
  /// Whole tokens left after this decision (RateLimit-Remaining); 0 while
  /// reservations are outstanding.
  [[nodiscard]] constexpr std::int64_t remaining() const noexcept {
    if (debt_ <= 0) return burst_;
    const std::int64_t owed = detail::ceil_div(debt_, period_);
    return owed >= burst_ ? 0 : burst_ - owed;
  }
  /// Time until the bucket is full again (RateLimit-Reset), rounded up to
  /// the nanosecond.
  [[nodiscard]] constexpr std::chrono::nanoseconds reset() const noexcept {
    return std::chrono::nanoseconds{detail::ceil_div(debt_, count_)};
  }
  /// For a denial: the exact time until the requested tokens are there (to
  /// the nanosecond, rounded up); a request at now + retry_after() is granted
  /// if nobody takes tokens meanwhile. Zero when granted;
  /// nanoseconds::max() when the request can never be granted.
  [[nodiscard]] constexpr std::chrono::nanoseconds retry_after() const noexcept {
    switch (status_) {
      case token_bucket_status::granted: return std::chrono::nanoseconds::zero();
      case token_bucket_status::denied: return std::chrono::nanoseconds{detail::ceil_div(late_, count_)};
      default: return std::chrono::nanoseconds::max();
    }
  }
  /// For a granted reservation: how long until its tokens are due (zero for
  /// an immediate grant and for anything not granted). Wait this long
  /// before using the tokens.
  [[nodiscard]] constexpr std::chrono::nanoseconds wait() const noexcept {
    if (status_ != token_bucket_status::granted || late_ <= 0) return std::chrono::nanoseconds::zero();
    return std::chrono::nanoseconds{detail::ceil_div(late_, count_)};
  }

  /// The permit holding the reserved tokens (reserve() only; empty when
  /// refused, and for a grant of 0 tokens).
  [[nodiscard]] Permit& permit() & noexcept { return permit_; }
  [[nodiscard]] const Permit& permit() const& noexcept { return permit_; }
  /// By value from a temporary decision, so that
  /// `auto p = bulkhead.try_acquire().permit();` cannot leave a dangling
  /// reference to a permit that was already given back.
  [[nodiscard]] Permit permit() && noexcept(std::is_nothrow_move_constructible_v<Permit>) { return std::move(permit_); }

 private:
  template <class, bool, class>
  friend class token_bucket;
  template <class>
  friend class token_bucket_decision;
  friend struct detail::bucket_decision_access;

  constexpr token_bucket_decision(token_bucket_status s, const detail::bucket_config& c, std::int64_t n,
                                  std::int64_t debt, std::int64_t late) noexcept
      : status_(s), n_(n), burst_(c.burst), period_(c.period), count_(c.count), debt_(debt), late_(late) {}
  // `d`'s answer, holding `p`.
  token_bucket_decision(const token_bucket_decision<>& d, Permit p) noexcept
    requires(!std::is_same_v<Permit, no_permit>)
      : status_(d.status_),
        code_(d.code_),
        n_(d.n_),
        burst_(d.burst_),
        period_(d.period_),
        count_(d.count_),
        debt_(d.debt_),
        late_(d.late_),
        permit_(std::move(p)) {}

  token_bucket_status status_;
  errc code_{};  // a denial's reason other than the status's own (set by bucket_decision_access::refused)
  std::int64_t n_;
  std::int64_t burst_;
  std::int64_t period_;  // ticks per token
  std::int64_t count_;   // ticks per nanosecond
  std::int64_t debt_;    // ticks until full
  std::int64_t late_;    // ticks until the requested tokens are due
  [[no_unique_address]] Permit permit_{};  // last, as in quota_tracker_decision
};

namespace detail {
struct bucket_decision_access {
  [[nodiscard]] static constexpr token_bucket_decision<> make(token_bucket_status s, const bucket_config& c,
                                                              std::int64_t n, std::int64_t debt,
                                                              std::int64_t late) noexcept {
    return token_bucket_decision<>(s, c, n, debt, late);
  }
  /// A denial for a reason of the implementation's own (`code`, e.g.
  /// storage_unavailable), with no numbers from the state: remaining() is
  /// the burst, reset() and retry_after() zero.
  [[nodiscard]] static constexpr token_bucket_decision<> refused(errc code, const bucket_config& c,
                                                                 std::int64_t n) noexcept {
    token_bucket_decision<> d(token_bucket_status::denied, c, n, 0, 0);
    d.code_ = code;
    return d;
  }
};
}  // namespace detail

static_assert(decision_like<token_bucket_decision<>>);

/// A token bucket's receipt for tokens taken by admit() or reserve(). Move-only.
///
/// commit() keeps the tokens (the attempt ran; the pipeline's settle() does
/// this). Dropping the permit uncommitted (a wait the driver refused, an
/// exception, a cancelled coroutine) gives the tokens back, but only if no
/// tokens were granted or reserved after them and the rate did not change:
/// the bucket then is exactly as if the grant never happened. Otherwise they
/// are not given back, because later waiters were promised times that
/// already count them (returning them would let a newcomer run alongside a
/// waiter that was told to wait for those very tokens, exceeding the rate).
/// The bucket must outlive the permit.
class token_bucket_permit {
 public:
  token_bucket_permit() noexcept = default;
  token_bucket_permit(token_bucket_permit&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), word_(other.word_), amount_(other.amount_) {}
  token_bucket_permit& operator=(token_bucket_permit&& other) noexcept {
    if (this != &other) {
      cancel();
      state_ = std::exchange(other.state_, nullptr);
      word_ = other.word_;
      amount_ = other.amount_;
    }
    return *this;
  }
  token_bucket_permit(const token_bucket_permit&) = delete;
  token_bucket_permit& operator=(const token_bucket_permit&) = delete;
  ~token_bucket_permit() { cancel(); }

  /// True while the permit holds tokens it could give back.
  [[nodiscard]] explicit operator bool() const noexcept { return state_ != nullptr; }

  /// Keeps the tokens: they were used.
  void commit() noexcept { state_ = nullptr; }

  /// Gives the tokens back now if the rule above allows it; returns whether
  /// it did. Either way the permit is empty afterwards.
  bool cancel() noexcept {
    detail::bucket_state* s = std::exchange(state_, nullptr);
    return s != nullptr && s->give_back(word_, amount_);
  }

 private:
  template <class, bool, class>
  friend class token_bucket;

  token_bucket_permit(detail::bucket_state* s, const detail::bucket_word& word, std::int64_t amount) noexcept
      : state_(s), word_(word), amount_(amount) {}

  detail::bucket_state* state_ = nullptr;
  detail::bucket_word word_{};  // the state the grant wrote
  std::int64_t amount_ = 0;  // the ticks it took
};

static_assert(decision_like<token_bucket_decision<token_bucket_permit>>);

namespace detail {

/// Validates a rate, burst and max_wait and reduces them to a bucket_config.
/// Throws armor::error(invalid_argument) naming the option.
inline bucket_config checked_bucket_config(const rate& r, std::int64_t burst, std::chrono::nanoseconds max_wait,
                                           const char* who) {
  // The name is a std::string only on the way to an error: checking (as
  // set_rate does on every call) allocates nothing.
  const auto name = [who] { return std::string(who); };
  const std::int64_t per = r.per.count();
  if (r.count <= 0) invalid_config(name() + ": rate.count must be positive (got " + std::to_string(r.count) + ")");
  if (per <= 0) invalid_config(name() + ": rate.per must be positive (got " + std::to_string(per) + " ns)");
  if (r.count > per) {
    invalid_config(name() + ": rate " + std::to_string(r.count) + " per " + std::to_string(per) +
                   " ns is more than one token per nanosecond");
  }
  if (burst < 1) invalid_config(name() + ": burst must be at least 1 (got " + std::to_string(burst) + ")");
  if (max_wait.count() < 0) {
    invalid_config(name() + ": max_wait must not be negative (got " + std::to_string(max_wait.count()) + " ns)");
  }
  const std::int64_t g = std::gcd(r.count, per);
  const bucket_config c{r.count / g, per / g, burst};
  std::int64_t tau = 0;
  std::int64_t wait = 0;
  std::int64_t span = 0;
  if (__builtin_mul_overflow(burst, c.period, &tau) || __builtin_mul_overflow(max_wait.count(), c.count, &wait) ||
      __builtin_add_overflow(tau, wait, &span) || span > bucket_max_span) {
    invalid_config(name() + ": burst * interval + max_wait is too long for this rate (the bucket holds at most " +
                   std::to_string(bucket_max_span / c.count) + " ns of time at " + std::to_string(r.count) + " per " +
                   std::to_string(per) + " ns)");
  }
  return c;
}

}  // namespace detail

/// A token bucket rate limiter, and an armor::policy (see the top of this
/// header). `Clock` is the clock that try_acquire() and reserve() read when
/// not given the time, and the pipeline's clock; the pipeline checks that
/// they agree. `Padded` keeps the bucket on its own cache line (the default;
/// armor::keyed stores unpadded buckets to save memory per key).
///
/// Constructors throw armor::error(invalid_argument), naming the option, for
/// a zero or negative rate, a zero burst, more than one token per
/// nanosecond, a negative max_wait, a burst and max_wait longer than the
/// state can hold at that rate (2^57 ticks: 4.5 years at whole-nanosecond
/// intervals; docs/token_bucket.md), or a cost slot a call does not have.
template <class Clock = steady_clock, bool Padded = true, class Listener = no_listener>
class alignas(Padded ? detail::cache_line : alignof(detail::bucket_state)) token_bucket {
  static_assert(armor::clock<Clock>, "armor::token_bucket: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, token_bucket_event>,
                "armor::token_bucket: Listener must be no_listener or callable as "
                "listener(const armor::token_bucket_event&) noexcept");

 public:
  using clock_type = Clock;
  using options_type = token_bucket_options;
  using permit_type = token_bucket_permit;
  /// What armor::keyed stores per key: the same bucket, unpadded.
  /// (Without a listener: armor::keyed refuses a bucket that has one.)
  using keyed_instance = token_bucket<Clock, false>;
  using listener_type = Listener;

  /// A full bucket. Reads the clock once (the start of its time scale).
  /// `listener` hears every refusal (see token_bucket_event).
  explicit token_bucket(const token_bucket_options& options, Clock clock = Clock{}, Listener listener = Listener{})
      : token_bucket(detail::checked_bucket_config(options.rate, options.burst, options.max_wait, "armor::token_bucket"),
                     options, clock, listener) {}

  /// Moves the state. Not thread-safe: move a bucket before sharing it.
  token_bucket(token_bucket&& other) noexcept
      : state_(other.state_),
        counters_(other.counters_),
        clock_(std::move(other.clock_)),
        listener_(std::move(other.listener_)) {}
  token_bucket(const token_bucket&) = delete;
  token_bucket& operator=(const token_bucket&) = delete;
  token_bucket& operator=(token_bucket&&) = delete;
  ~token_bucket() = default;

  /// Takes n tokens now (reads the clock), or none. Never waits.
  [[nodiscard]] token_bucket_decision<> try_acquire(std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }

  /// Takes n tokens at `now` (a reading of this bucket's clock), or none.
  [[nodiscard]] token_bucket_decision<> try_acquire(std::int64_t n, timestamp now) noexcept {
    if (n < 0) [[unlikely]] return invalid(n);
    return decide(counted(state_.acquire(n, ns(now), -1)));
  }

  /// Reserves n tokens if they are there within `max_wait` of now (reads
  /// the clock); see below.
  [[nodiscard]] token_bucket_decision<permit_type> reserve(std::int64_t n, std::chrono::nanoseconds max_wait) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return reserve(n, max_wait, to_timestamp(clock_.now()));
  }

  /// Reserves n tokens if they are there within `max_wait` of `now`: the
  /// tokens are taken now and due at now + wait(); later callers queue
  /// behind them. A granted decision holds them in its permit(): commit it
  /// and make the call once they are due; dropping it uncommitted gives
  /// them back (see token_bucket_permit). A denial reserves nothing.
  [[nodiscard]] token_bucket_decision<permit_type> reserve(std::int64_t n, std::chrono::nanoseconds max_wait,
                                                           timestamp now) noexcept {
    if (n < 0) [[unlikely]] return {invalid(n), {}};
    const detail::bucket_result r =
        counted(state_.acquire(n, ns(now), max_wait.count() < 0 ? 0 : max_wait.count()));
    return {decide(r), permit_for(r)};
  }

  /// Policy protocol: takes ctx.cost(options.cost) tokens at ctx.now(), or
  /// reserves them and asks the driver to wait (with max_wait), or rejects.
  [[nodiscard]] admission<token_bucket_permit> admit(context& ctx) noexcept {
    const std::int64_t n = ctx.cost(state_.cost());
    if (n <= 0) [[unlikely]] {
      // A free call passes, even behind reservations.
      if (n == 0) return admission<token_bucket_permit>::admit();
      return admission<token_bucket_permit>::reject(errc::invalid_argument, std::nullopt, false);
    }
    const std::int64_t now = ns(ctx.now());
    std::int64_t limit = -1;  // no waiting
    bool spent = false;       // the deadline has passed
    if (state_.max_wait() > 0) {
      limit = state_.max_wait();
      if (ctx.has_deadline()) {
        // The driver refuses a wait that ends at or past the deadline.
        const std::int64_t room = detail::saturating_sub(detail::saturating_sub(ns(ctx.deadline()), now), 1);
        spent = room < 0;
        if (room < limit) limit = spent ? -1 : room;
      }
    }
    const detail::bucket_result r = counted(state_.acquire(n, now, limit));
    switch (r.outcome) {
      case detail::bucket_outcome::granted: {
        if (r.late > 0) {
          return admission<token_bucket_permit>::wait(
              std::chrono::nanoseconds{detail::ceil_div(r.late, r.config.count)}, permit_for(r));
        }
        return admission<token_bucket_permit>::admit(permit_for(r));
      }
      case detail::bucket_outcome::denied: {
        const std::chrono::nanoseconds after{detail::ceil_div(r.late, r.config.count)};
        // Within max_wait but refused: only the deadline can have been in the
        // way. Before it, the wait would not fit; after it, the budget is spent.
        const bool deadline_bound = state_.max_wait() > 0 && after.count() <= state_.max_wait();
        if (!deadline_bound) return admission<token_bucket_permit>::reject(errc::rate_limited, after, true);
        return admission<token_bucket_permit>::reject(spent ? errc::deadline_exceeded : errc::wait_exceeds_deadline,
                                                      after, true);
      }
      case detail::bucket_outcome::too_large: break;
    }
    return admission<token_bucket_permit>::reject(errc::request_too_large, std::nullopt, false);
  }

  /// Policy protocol: the attempt ran, the tokens stay spent (whatever its outcome).
  void settle(context&, token_bucket_permit permit, const verdict&) noexcept { permit.commit(); }

  /// Changes rate and burst at once, now (reads the clock), keeping the
  /// tokens the bucket holds: tokens above the new burst are dropped, none
  /// are added, debt from reservations is kept. Lock-free for every other
  /// caller (concurrent changes queue behind each other). Throws
  /// armor::error(invalid_argument) for values the constructor would
  /// refuse, changing nothing.
  void set_rate(const armor::rate& r, std::int64_t burst) {
    const detail::bucket_config next = checked(r, burst, "armor::token_bucket::set_rate");
    change([&](const detail::bucket_config&) { return next; }, [this] { return ns(to_timestamp(clock_.now())); });
  }

  /// Changes rate and burst at `now`, keeping the tokens (see above). `now`
  /// must not be earlier than the time of calls already decided (the new
  /// rate would refill, backwards, time the old one already paid out): pass
  /// a fresh reading of this bucket's clock.
  void set_rate(const armor::rate& r, std::int64_t burst, timestamp now) {
    const detail::bucket_config next = checked(r, burst, "armor::token_bucket::set_rate");
    state_.reconfigure(next, ns(now));
  }

  /// Changes the rate, keeping the burst and the tokens (reads the clock).
  void set_rate(const armor::rate& r) {
    change([&](const detail::bucket_config& c) { return checked(r, c.burst, "armor::token_bucket::set_rate"); },
           [this] { return ns(to_timestamp(clock_.now())); });
  }

  /// Changes the rate at `now`, keeping the burst and the tokens.
  void set_rate(const armor::rate& r, timestamp now) {
    change([&](const detail::bucket_config& c) { return checked(r, c.burst, "armor::token_bucket::set_rate"); },
           [now] { return ns(now); });
  }

  /// Changes the burst, keeping the rate and the tokens (reads the clock).
  void set_burst(std::int64_t burst) {
    change([&](const detail::bucket_config& c) { return checked(rate_of(c), burst, "armor::token_bucket::set_burst"); },
           [this] { return ns(to_timestamp(clock_.now())); });
  }

  /// Changes the burst at `now`, keeping the rate and the tokens.
  void set_burst(std::int64_t burst, timestamp now) {
    change([&](const detail::bucket_config& c) { return checked(rate_of(c), burst, "armor::token_bucket::set_burst"); },
           [now] { return ns(now); });
  }

  /// Changes rate and burst from whole options, now (reads the clock),
  /// keeping the tokens as set_rate(rate, burst) does: the shape of every
  /// policy's reconfigure(), so that armor::keyed<token_bucket> reconfigures
  /// every key held and every new key (docs/reconfiguration.md). max_wait,
  /// cost and (on a bucket that counts) count_calls are fixed at
  /// construction. Throws armor::error(invalid_argument) naming a bad or
  /// fixed option; nothing changes then. As after set_rate, idle() is false
  /// from then on (the bucket no longer matches the options it was built
  /// with), so a keyed map evicts such keys least recently used first.
  void reconfigure(const token_bucket_options& options) {
    constexpr const char* who = "armor::token_bucket::reconfigure";
    const detail::bucket_config next = checked(options.rate, options.burst, who);
    if (options.max_wait.count() != state_.max_wait()) detail::fixed_at_construction(who, "max_wait");
    if (!(options.cost == state_.cost())) detail::fixed_at_construction(who, "cost");
    if constexpr (Padded) {
      if (options.count_calls != counters_.on) detail::fixed_at_construction(who, "count_calls");
    }
    change([&](const detail::bucket_config&) { return next; }, [this] { return ns(to_timestamp(clock_.now())); });
  }

  /// The current rate, in lowest terms ({60, 1min} reads back as {1, 1s}).
  [[nodiscard]] armor::rate rate() const noexcept {
    const detail::bucket_config c = state_.config();
    return {c.count, std::chrono::nanoseconds{c.period}};
  }
  /// The current burst.
  [[nodiscard]] std::int64_t burst() const noexcept { return state_.config().burst; }
  /// The longest wait admit() grants.
  [[nodiscard]] std::chrono::nanoseconds max_wait() const noexcept { return std::chrono::nanoseconds{state_.max_wait()}; }

  /// Whole tokens available at `now`, without taking any: 0 while
  /// reservations are owed (stats().available shows how far below zero).
  [[nodiscard]] std::int64_t available(timestamp now) const noexcept {
    const detail::bucket_snapshot s = state_.peek(ns(now));
    return token_bucket_decision<>(token_bucket_status::granted, s.config, 0, s.debt, 0).remaining();
  }
  /// Whole tokens available now (reads the clock).
  [[nodiscard]] std::int64_t available() const { return available(to_timestamp(clock_.now())); }

  /// A snapshot at `now`: limit, level and counters (see token_bucket_stats).
  [[nodiscard]] token_bucket_stats stats(timestamp now) const noexcept {
    const detail::bucket_snapshot s = state_.peek(ns(now));
    token_bucket_stats out;
    out.rate = rate_of(s.config);
    out.burst = s.config.burst;
    const token_bucket_decision<> d(token_bucket_status::granted, s.config, 0, s.debt, 0);
    // The level itself, below zero while reservations are owed (remaining()
    // stops at 0): burst - ceil(debt / period), i.e. the tokens rounded down.
    out.available = s.config.burst - detail::ceil_div(s.debt, s.config.period);
    out.until_full = d.reset();
    if constexpr (Padded) {
      out.counting = counters_.on;
      out.granted = counters_.calls.load(detail::bucket_counter::granted);
      out.rejected = counters_.calls.load(detail::bucket_counter::rejected);
      out.too_large = counters_.calls.load(detail::bucket_counter::too_large);
    }
    return out;
  }
  /// A snapshot now (reads the clock).
  [[nodiscard]] token_bucket_stats stats() const { return stats(to_timestamp(clock_.now())); }

  /// For armor::keyed: true when dropping this bucket and creating a fresh
  /// one from the same options changes no decision for requests at or after
  /// `now`: the bucket is full at `now` and its rate was never changed.
  [[nodiscard]] bool idle(timestamp now) const noexcept {
    return !state_.modified() && state_.peek(ns(now)).debt == 0;
  }

  /// The clock this bucket reads.
  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  token_bucket(const detail::bucket_config& config, const token_bucket_options& options, Clock& clock,
               Listener& listener)
      : state_(config, ns(to_timestamp(clock.now())), options.max_wait.count(), options.cost),
        counters_(options.count_calls),
        clock_(std::move(clock)),
        listener_(std::move(listener)) {
    detail::check_cost_source(options.cost, "armor::token_bucket");
  }

  // Counts the outcome when counting is on (padded buckets only), and tells
  // the listener about a refusal.
  const detail::bucket_result& counted(const detail::bucket_result& r) noexcept {
    if constexpr (Padded) {
      if (counters_.on) [[unlikely]] counters_.calls.add(static_cast<detail::bucket_counter>(r.outcome));
    }
    if (r.outcome != detail::bucket_outcome::granted) {
      detail::notify(listener_, [&] {
        token_bucket_event e;
        e.tokens = r.n;
        if (r.outcome == detail::bucket_outcome::denied) {
          e.retry_after = std::chrono::nanoseconds{detail::ceil_div(r.late, r.config.count)};
        } else {
          e.status = token_bucket_status::too_large;
        }
        return e;
      });
    }
    return r;
  }

  static constexpr std::int64_t ns(timestamp t) noexcept { return t.time_since_epoch().count(); }

  static armor::rate rate_of(const detail::bucket_config& c) noexcept {
    return {c.count, std::chrono::nanoseconds{c.period}};
  }

  detail::bucket_config checked(const armor::rate& r, std::int64_t burst, const char* who) const {
    return detail::checked_bucket_config(r, burst, std::chrono::nanoseconds{state_.max_wait()}, who);
  }

  template <class F, class Now>
  void change(F&& make_next, Now&& now_fn) {
    state_.update(std::forward<F>(make_next), std::forward<Now>(now_fn));
  }

  static token_bucket_decision<> decide(const detail::bucket_result& r) noexcept {
    token_bucket_status s = token_bucket_status::granted;
    if (r.outcome == detail::bucket_outcome::denied) s = token_bucket_status::denied;
    if (r.outcome == detail::bucket_outcome::too_large) s = token_bucket_status::too_large;
    return {s, r.config, r.n, r.debt, r.late};
  }

  token_bucket_decision<> invalid(std::int64_t n) const noexcept {
    return {token_bucket_status::invalid, state_.config(), n, 0, 0};
  }

  token_bucket_permit permit_for(const detail::bucket_result& r) noexcept {
    if (r.outcome != detail::bucket_outcome::granted || r.n == 0) return {};
    return {&state_, r.word, r.n * r.config.period};
  }

  detail::bucket_state state_;
  [[no_unique_address]] std::conditional_t<Padded, detail::bucket_counters, detail::no_bucket_counters> counters_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
};

token_bucket(const token_bucket_options&) -> token_bucket<steady_clock>;
template <class C>
token_bucket(const token_bucket_options&, C) -> token_bucket<C>;
template <class C, class L>
token_bucket(const token_bucket_options&, C, L) -> token_bucket<C, true, L>;

// The counters live in the padding of the bucket's cache line(s).
static_assert(sizeof(token_bucket<>) ==
              (sizeof(detail::bucket_state) + detail::cache_line - 1) / detail::cache_line * detail::cache_line);

}  // namespace armor
