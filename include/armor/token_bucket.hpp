// armor/token_bucket.hpp: a token bucket rate limiter (rate + burst).
//
//     using namespace std::chrono_literals;
//
//     // Client side: pace calls to an API that allows 50 requests a second,
//     // waiting up to 2 s for a token rather than failing.
//     auto p = armor::pipeline{
//         armor::deadline{5s},
//         armor::token_bucket{{.rate = {50, 1s}, .burst = 10, .max_wait = 2s}},
//     };
//     auto body = p.execute([&] { return http_get(url); });
//
//     // Server side: decide, and answer 429 with the standard headers.
//     armor::token_bucket bucket{armor::token_bucket_options::parse("100/s burst=20")};
//     if (auto d = bucket.try_acquire(); !d) {
//         armor::rate_limit_headers(d, [&](std::string_view name, std::string_view value) {
//             response.set(name, value);                  // Retry-After, RateLimit-*, X-RateLimit-*
//         });
//         return too_many_requests();
//     }
//
// Semantics are those of the classic token bucket as golang.org/x/time/rate
// defines AllowN(t, n): the bucket starts full with `burst` tokens, refills
// continuously at `rate` up to `burst`, a request for n tokens is all or
// nothing, and n > burst is never granted (it fails at once as too large).
// Arithmetic is exact: the state is integer ticks of 1/c ns where the rate
// is c tokens per p ns in lowest terms, so no rate is rounded and over any
// run exactly burst + floor(rate * t) tokens are admitted (see
// docs/token_bucket.md for the representation and its limits).
//
// In a pipeline a call costs `ctx.cost()` tokens (call_options::cost, 1 by
// default). Without `max_wait` a call that finds too few tokens is rejected
// with errc::rate_limited and the exact `retry_after` (retryable). With
// `max_wait` it reserves its tokens at once (callers are served in arrival
// order) and the driver waits; a wait longer than max_wait is rejected with
// rate_limited, one that would outlast the call's deadline with
// deadline_exceeded (no reservation is made in either case). A cost larger
// than the burst is rejected with errc::request_too_large (not retryable).
//
// Thread-safety: every member may be called concurrently, except moving the
// bucket (move it before sharing it; share it with std::ref). Cost: a grant
// is one load and one CAS on one std::atomic<int64_t>; a denial is two loads
// and writes nothing; nothing allocates, nothing locks, no floating point.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/bucket_parse.hpp>
#include <armor/detail/bucket_state.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/verdict.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace armor {

/// A rate: `count` events every `per`. `{100, 1s}`, `{60, 1min}`, `{5000, 1h}`.
/// At most one per nanosecond.
struct rate {
  std::int64_t count = 0;
  std::chrono::nanoseconds per{std::chrono::seconds{1}};

  /// Parses "100/s", "60/minute", "5000/h", "10r/s", "100/10s", "3 per second".
  /// Throws armor::error(invalid_argument) quoting the text when it is malformed.
  [[nodiscard]] static rate parse(std::string_view text) {
    const detail::parsed_limit p = detail::limit_parser(text, "armor::rate::parse").rate_only();
    return {p.count, std::chrono::nanoseconds{p.per_ns}};
  }

  /// Equal when they are the same rate: {60, 1min} == {1, 1s}.
  friend constexpr bool operator==(const rate& a, const rate& b) noexcept {
    return static_cast<detail::bucket_int128>(a.count) * b.per.count() ==
           static_cast<detail::bucket_int128>(b.count) * a.per.count();
  }
};

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
enum class bucket_status : std::uint8_t {
  granted,    ///< the tokens were taken (for a reservation: reserved; see wait())
  denied,     ///< too few tokens now (or within the allowed wait); see retry_after()
  too_large,  ///< more tokens than the burst: can never be granted
  invalid,    ///< a negative number of tokens
};

template <class Clock, bool Padded, class Listener>
class token_bucket;

namespace detail {
/// Builds bucket_decisions for other bucket implementations (the Redis
/// bucket); defined after bucket_decision.
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
};

/// What a token bucket's listener hears: a call it refused.
struct token_bucket_event {
  bucket_status status = bucket_status::denied;  ///< denied, or too_large
  std::int64_t tokens = 0;                        ///< tokens the call asked for
  /// For `denied`: when the tokens will be there (what the caller is told
  /// to wait); zero for `too_large`, which no wait can grant.
  std::chrono::nanoseconds retry_after{0};
};

/// What a token bucket accepts as its listener: no_listener (the default:
/// nothing is called, nothing is stored), or anything callable (or
/// std::ref to it) as `listener(const armor::token_bucket_event&)` without
/// throwing. It runs on the refused caller's thread, once per refusal.
template <class L>
concept bucket_listener =
    std::is_same_v<L, no_listener> ||
    std::is_nothrow_invocable_v<std::unwrap_reference_t<L>&, const token_bucket_event&>;

namespace detail {
/// The counters of a padded bucket (they fit in its cache-line padding).
struct bucket_counters {
  std::atomic<std::uint64_t> granted{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> too_large{0};
  bool on = false;

  explicit bucket_counters(bool count) noexcept : on(count) {}
  bucket_counters(const bucket_counters& o) noexcept
      : granted(o.granted.load(std::memory_order_relaxed)),
        rejected(o.rejected.load(std::memory_order_relaxed)),
        too_large(o.too_large.load(std::memory_order_relaxed)),
        on(o.on) {}
  bucket_counters& operator=(const bucket_counters&) = delete;
};
/// Unpadded buckets (per key in armor::keyed) count nothing.
struct no_bucket_counters {
  explicit no_bucket_counters(bool) noexcept {}
};
}  // namespace detail

/// A token bucket's answer to try_acquire or reserve: whether the tokens were
/// granted, and the numbers a server puts in its rate-limit headers. A small
/// value (no allocation); the numbers are computed on demand from the exact
/// state the decision saw, so asking costs a division or two.
class bucket_decision {
 public:
  [[nodiscard]] constexpr bucket_status status() const noexcept { return status_; }
  [[nodiscard]] constexpr bool allowed() const noexcept { return status_ == bucket_status::granted; }
  constexpr explicit operator bool() const noexcept { return allowed(); }

  /// The burst: what the bucket holds when full (RateLimit-Limit).
  [[nodiscard]] constexpr std::int64_t limit() const noexcept { return burst_; }
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
      case bucket_status::granted: return std::chrono::nanoseconds::zero();
      case bucket_status::denied: return std::chrono::nanoseconds{detail::ceil_div(late_, count_)};
      default: return std::chrono::nanoseconds::max();
    }
  }
  /// For a granted reservation: how long until its tokens are due (zero for
  /// an immediate grant and for anything not granted).
  [[nodiscard]] constexpr std::chrono::nanoseconds wait() const noexcept {
    if (status_ != bucket_status::granted || late_ <= 0) return std::chrono::nanoseconds::zero();
    return std::chrono::nanoseconds{detail::ceil_div(late_, count_)};
  }

 private:
  template <class, bool, class>
  friend class token_bucket;
  friend struct detail::bucket_decision_access;

  constexpr bucket_decision(bucket_status s, const detail::bucket_config& c, std::int64_t n, std::int64_t debt,
                            std::int64_t late) noexcept
      : status_(s), n_(n), burst_(c.burst), period_(c.period), count_(c.count), debt_(debt), late_(late) {}

  bucket_status status_;
  std::int64_t n_;
  std::int64_t burst_;
  std::int64_t period_;  // ticks per token
  std::int64_t count_;   // ticks per nanosecond
  std::int64_t debt_;    // ticks until full
  std::int64_t late_;    // ticks until the requested tokens are due
};

namespace detail {
struct bucket_decision_access {
  [[nodiscard]] static constexpr bucket_decision make(bucket_status s, const bucket_config& c, std::int64_t n,
                                                      std::int64_t debt, std::int64_t late) noexcept {
    return bucket_decision(s, c, n, debt, late);
  }
};
}  // namespace detail

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
class bucket_permit {
 public:
  bucket_permit() noexcept = default;
  bucket_permit(bucket_permit&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), word_(other.word_), amount_(other.amount_) {}
  bucket_permit& operator=(bucket_permit&& other) noexcept {
    if (this != &other) {
      cancel();
      state_ = std::exchange(other.state_, nullptr);
      word_ = other.word_;
      amount_ = other.amount_;
    }
    return *this;
  }
  bucket_permit(const bucket_permit&) = delete;
  bucket_permit& operator=(const bucket_permit&) = delete;
  ~bucket_permit() { cancel(); }

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

  bucket_permit(detail::bucket_state* s, const detail::bucket_word& word, std::int64_t amount) noexcept
      : state_(s), word_(word), amount_(amount) {}

  detail::bucket_state* state_ = nullptr;
  detail::bucket_word word_{};  // the state the grant wrote
  std::int64_t amount_ = 0;  // the ticks it took
};

/// What reserve() answers: the decision and, when granted, the permit that
/// holds the reserved tokens. Wait decision.wait(), then commit the permit
/// and make the call; drop it to give the tokens back.
struct bucket_reservation {
  bucket_decision decision;
  bucket_permit permit;

  [[nodiscard]] explicit operator bool() const noexcept { return decision.allowed(); }
  /// How long to wait before using the tokens.
  [[nodiscard]] std::chrono::nanoseconds delay() const noexcept { return decision.wait(); }
};

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

/// Whole seconds, rounded up (for Retry-After and RateLimit-Reset).
[[nodiscard]] constexpr std::int64_t ceil_seconds(std::chrono::nanoseconds d) noexcept {
  return d.count() <= 0 ? 0 : ceil_div(d.count(), 1'000'000'000);
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
/// nanosecond, a negative max_wait, or a burst and max_wait longer than the
/// state can hold at that rate (2^57 ticks: 4.5 years at whole-nanosecond
/// intervals; docs/token_bucket.md).
template <class Clock = steady_clock, bool Padded = true, class Listener = no_listener>
class alignas(Padded ? detail::cache_line : alignof(detail::bucket_state)) token_bucket {
  static_assert(armor::clock<Clock>, "armor::token_bucket: Clock must have now() returning its time_point");
  static_assert(bucket_listener<Listener>,
                "armor::token_bucket: Listener must be no_listener or callable as "
                "listener(const armor::token_bucket_event&) noexcept");

 public:
  using clock_type = Clock;
  using options_type = token_bucket_options;
  using permit_type = bucket_permit;
  /// What armor::keyed stores per key: the same bucket, unpadded.
  /// (Without the listener: per-key buckets report through the map.)
  using keyed_instance = token_bucket<Clock, false>;
  using listener_type = Listener;

  /// A full bucket. Reads the clock once (the start of its time scale).
  /// `listener` hears every refusal (see token_bucket_event).
  explicit token_bucket(const token_bucket_options& options, Clock clock = Clock{}, Listener listener = Listener{})
      : token_bucket(detail::checked_bucket_config(options.rate, options.burst, options.max_wait, "armor::token_bucket"),
                     options.max_wait, options.count_calls, clock, listener) {}

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
  [[nodiscard]] bucket_decision try_acquire(std::int64_t n = 1) noexcept(noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }

  /// Takes n tokens at `now` (a reading of this bucket's clock), or none.
  [[nodiscard]] bucket_decision try_acquire(std::int64_t n, timestamp now) noexcept {
    if (n < 0) [[unlikely]] return invalid(n);
    return decide(counted(state_.acquire(n, ns(now), -1)));
  }

  /// Reserves n tokens if they are there within `max_wait` of now (reads
  /// the clock). See bucket_reservation.
  [[nodiscard]] bucket_reservation reserve(std::int64_t n, std::chrono::nanoseconds max_wait) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return reserve(n, max_wait, to_timestamp(clock_.now()));
  }

  /// Reserves n tokens if they are there within `max_wait` of `now`: the
  /// tokens are taken now and due at now + delay(); later callers queue
  /// behind them. A denial reserves nothing.
  [[nodiscard]] bucket_reservation reserve(std::int64_t n, std::chrono::nanoseconds max_wait, timestamp now) noexcept {
    if (n < 0) [[unlikely]] return {invalid(n), {}};
    const detail::bucket_result r =
        counted(state_.acquire(n, ns(now), max_wait.count() < 0 ? 0 : max_wait.count()));
    return {decide(r), permit_for(r)};
  }

  /// Policy protocol: takes ctx.cost() tokens at ctx.now(), or reserves them
  /// and asks the driver to wait (with max_wait), or rejects.
  [[nodiscard]] admission<bucket_permit> admit(context& ctx) noexcept {
    const std::int64_t n = ctx.cost();
    if (n <= 0) [[unlikely]] {
      // A free call passes, even behind reservations.
      if (n == 0) return admission<bucket_permit>::admit();
      return admission<bucket_permit>::reject(errc::invalid_argument, std::nullopt, false);
    }
    const std::int64_t now = ns(ctx.now());
    std::int64_t limit = -1;  // no waiting
    if (state_.max_wait() > 0) {
      limit = state_.max_wait();
      if (ctx.has_deadline()) {
        // The driver refuses a wait that ends at or past the deadline.
        const std::int64_t room = detail::saturating_sub(detail::saturating_sub(ns(ctx.deadline()), now), 1);
        if (room < limit) limit = room < 0 ? -1 : room;
      }
    }
    const detail::bucket_result r = counted(state_.acquire(n, now, limit));
    switch (r.outcome) {
      case detail::bucket_outcome::granted: {
        if (r.late > 0) {
          return admission<bucket_permit>::wait(std::chrono::nanoseconds{detail::ceil_div(r.late, r.config.count)},
                                                permit_for(r));
        }
        return admission<bucket_permit>::admit(permit_for(r));
      }
      case detail::bucket_outcome::denied: {
        const std::chrono::nanoseconds after{detail::ceil_div(r.late, r.config.count)};
        // Within max_wait but refused: only the deadline can have been in the way.
        const bool deadline_bound = state_.max_wait() > 0 && after.count() <= state_.max_wait();
        return admission<bucket_permit>::reject(deadline_bound ? errc::deadline_exceeded : errc::rate_limited, after,
                                                true);
      }
      case detail::bucket_outcome::too_large: break;
    }
    return admission<bucket_permit>::reject(errc::request_too_large, std::nullopt, false);
  }

  /// Policy protocol: the attempt ran, the tokens stay spent (whatever its outcome).
  void settle(context&, bucket_permit permit, const verdict&) noexcept { permit.commit(); }

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

  /// The current rate, in lowest terms ({60, 1min} reads back as {1, 1s}).
  [[nodiscard]] armor::rate rate() const noexcept {
    const detail::bucket_config c = state_.config();
    return {c.count, std::chrono::nanoseconds{c.period}};
  }
  /// The current burst.
  [[nodiscard]] std::int64_t burst() const noexcept { return state_.config().burst; }
  /// The longest wait admit() grants.
  [[nodiscard]] std::chrono::nanoseconds max_wait() const noexcept { return std::chrono::nanoseconds{state_.max_wait()}; }

  /// Whole tokens available at `now`, without taking any.
  [[nodiscard]] std::int64_t available(timestamp now) const noexcept {
    const detail::bucket_snapshot s = state_.peek(ns(now));
    return bucket_decision(bucket_status::granted, s.config, 0, s.debt, 0).remaining();
  }
  /// Whole tokens available now (reads the clock).
  [[nodiscard]] std::int64_t available() const { return available(to_timestamp(clock_.now())); }

  /// A snapshot at `now`: limit, level and counters (see token_bucket_stats).
  [[nodiscard]] token_bucket_stats stats(timestamp now) const noexcept {
    const detail::bucket_snapshot s = state_.peek(ns(now));
    token_bucket_stats out;
    out.rate = rate_of(s.config);
    out.burst = s.config.burst;
    const bucket_decision d(bucket_status::granted, s.config, 0, s.debt, 0);
    out.available = d.remaining();
    out.until_full = d.reset();
    if constexpr (Padded) {
      out.counting = counters_.on;
      out.granted = counters_.granted.load(std::memory_order_relaxed);
      out.rejected = counters_.rejected.load(std::memory_order_relaxed);
      out.too_large = counters_.too_large.load(std::memory_order_relaxed);
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
  token_bucket(const detail::bucket_config& config, std::chrono::nanoseconds max_wait, bool count_calls, Clock& clock,
               Listener& listener)
      : state_(config, ns(to_timestamp(clock.now())), max_wait.count()),
        counters_(count_calls),
        clock_(std::move(clock)),
        listener_(std::move(listener)) {}

  // Counts the outcome when counting is on (padded buckets only), and tells
  // the listener about a refusal (if there is a listener).
  const detail::bucket_result& counted(const detail::bucket_result& r) noexcept {
    if constexpr (Padded) {
      if (counters_.on) [[unlikely]] {
        std::atomic<std::uint64_t>& c = r.outcome == detail::bucket_outcome::granted ? counters_.granted
                                        : r.outcome == detail::bucket_outcome::denied ? counters_.rejected
                                                                                      : counters_.too_large;
        c.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if constexpr (!std::is_same_v<Listener, no_listener>) {
      if (r.outcome != detail::bucket_outcome::granted) {
        token_bucket_event e;
        e.tokens = r.n;
        if (r.outcome == detail::bucket_outcome::denied) {
          e.retry_after = std::chrono::nanoseconds{detail::ceil_div(r.late, r.config.count)};
        } else {
          e.status = bucket_status::too_large;
        }
        std::unwrap_reference_t<Listener>& l = listener_;
        l(e);
      }
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

  static bucket_decision decide(const detail::bucket_result& r) noexcept {
    bucket_status s = bucket_status::granted;
    if (r.outcome == detail::bucket_outcome::denied) s = bucket_status::denied;
    if (r.outcome == detail::bucket_outcome::too_large) s = bucket_status::too_large;
    return {s, r.config, r.n, r.debt, r.late};
  }

  bucket_decision invalid(std::int64_t n) const noexcept {
    return {bucket_status::invalid, state_.config(), n, 0, 0};
  }

  bucket_permit permit_for(const detail::bucket_result& r) noexcept {
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

// ---------------------------------------------------------------------------
// Response headers for a server that limits its clients.

/// Which headers rate_limit_headers() writes.
struct rate_limit_header_options {
  /// RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (IETF draft
  /// "RateLimit header fields for HTTP"; Reset in seconds from now).
  bool standard = true;
  /// X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset.
  bool x_prefixed = true;
  /// Retry-After on a denial, in whole seconds rounded up.
  bool retry_after = true;
  /// Wall time now. When given, X-RateLimit-Reset is the Unix time (seconds,
  /// rounded up) at which the bucket is full, as GitHub sends it; otherwise
  /// it is seconds from now, like RateLimit-Reset.
  std::optional<std::chrono::system_clock::time_point> wall_now{};
};

/// Writes the rate-limit response headers of a decision by calling
/// `emit(name, value)` once per header, both std::string_view (the value's
/// characters live only during the call; copy them). Allocates nothing.
/// Numbers: limit = burst, remaining = whole tokens left, reset = seconds
/// until full (rounded up), Retry-After = seconds until the request would be
/// granted (rounded up; only for a denial, never for a request larger than
/// the burst, which waiting cannot fix).
template <class Emit>
  requires std::invocable<Emit&, std::string_view, std::string_view>
void rate_limit_headers(const bucket_decision& d, Emit&& emit, const rate_limit_header_options& options = {}) {
  std::array<char, 24> buf{};
  auto put = [&](std::string_view name, std::int64_t value) {
    const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), value);
    emit(name, std::string_view(buf.data(), static_cast<std::size_t>(res.ptr - buf.data())));
  };
  const std::int64_t reset = detail::ceil_seconds(d.reset());
  if (options.standard) {
    put("RateLimit-Limit", d.limit());
    put("RateLimit-Remaining", d.remaining());
    put("RateLimit-Reset", reset);
  }
  if (options.x_prefixed) {
    put("X-RateLimit-Limit", d.limit());
    put("X-RateLimit-Remaining", d.remaining());
    if (options.wall_now) {
      const auto full_at = options.wall_now->time_since_epoch() + d.reset();
      put("X-RateLimit-Reset", detail::ceil_seconds(std::chrono::duration_cast<std::chrono::nanoseconds>(full_at)));
    } else {
      put("X-RateLimit-Reset", reset);
    }
  }
  if (options.retry_after && d.status() == bucket_status::denied) {
    put("Retry-After", detail::ceil_seconds(d.retry_after()));
  }
}

/// Retry-After for a retry_after duration (e.g. from a failed
/// pipeline call's failure::retry_after): whole seconds, rounded up, at least 1.
[[nodiscard]] constexpr std::int64_t retry_after_seconds(std::chrono::nanoseconds d) noexcept {
  const std::int64_t s = detail::ceil_seconds(d);
  return s < 1 ? 1 : s;
}

/// The headers of a decision as a small fixed-capacity list (no allocation),
/// for code that prefers a range to a callback:
///
///     for (const auto& h : armor::rate_limit_headers(d)) res.set(h.name, h.value());
class rate_limit_header_list {
 public:
  struct field {
    std::string_view name;
    [[nodiscard]] std::string_view value() const noexcept { return {chars.data(), size}; }
    std::array<char, 24> chars{};
    std::size_t size = 0;
  };

  [[nodiscard]] const field* begin() const noexcept { return fields_.data(); }
  [[nodiscard]] const field* end() const noexcept { return fields_.data() + count_; }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] const field& operator[](std::size_t i) const noexcept { return fields_[i]; }

  /// The value of the header `name` (exact spelling), or empty.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (const field& f : *this) {
      if (f.name == name) return f.value();
    }
    return std::nullopt;
  }

  void add(std::string_view name, std::string_view value) noexcept {
    if (count_ == fields_.size() || value.size() > field{}.chars.size()) return;
    field& f = fields_[count_++];
    f.name = name;  // always one of the static names above
    f.size = value.copy(f.chars.data(), f.chars.size());
  }

 private:
  std::array<field, 7> fields_{};
  std::size_t count_ = 0;
};

/// The headers of a decision as a list (see the callback form for the numbers).
[[nodiscard]] inline rate_limit_header_list rate_limit_headers(const bucket_decision& d,
                                                               const rate_limit_header_options& options = {}) {
  rate_limit_header_list list;
  rate_limit_headers(
      d, [&](std::string_view name, std::string_view value) { list.add(name, value); }, options);
  return list;
}

}  // namespace armor
