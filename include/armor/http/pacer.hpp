// armor/http/pacer.hpp: pacing a client by what the server says. pacer keeps
// a token bucket's rate where the server's remaining quota lasts until its
// reset, so calls are spread over the window instead of running into 429s;
// once the reset (plus a margin) has passed without new numbers, it returns
// the bucket to the client's own ceiling. pace() is the same decision as a
// pure function.
//
//     armor::token_bucket bucket{{.rate = {50, 1s}, .burst = 5, .max_wait = 30s}};
//     armor::http::pacer pace{bucket, {.ceiling = {50, 1s}, .max_burst = 5}};
//     auto res = client.get(url);
//     pace.observe(res);                       // reads the rate-limit headers, sets the bucket's rate
//
// This is the one HTTP header that needs armor/token_bucket.hpp. The rule
// and its options are in docs/http.md ("Pacing by server feedback").
#pragma once

#include <armor/clock.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/http/date.hpp>
#include <armor/http/headers.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/token_bucket.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string>

namespace armor::http {

/// The options of pace() and armor::http::pacer.
struct pacer_options {
  /// The fastest the client may go, whatever the server says: its own
  /// limit (the rate the bucket was built with is a good choice). Required.
  armor::rate ceiling{};
  /// The largest burst the pacer allows; the burst also never exceeds what
  /// remains. >= 1. The default 1 spaces calls evenly.
  std::int64_t max_burst = 1;
  /// Added to every reset time before dividing: covers clock skew between
  /// client and server, and requests in flight. >= 0.
  std::chrono::nanoseconds margin{std::chrono::seconds{1}};
  /// Requests of each window left unused (for other clients of the same
  /// quota, or for interactive use). >= 0.
  std::int64_t reserve = 0;
  /// The shortest reset time the pacer divides by. A reset nearer than this
  /// counts as this far: a burst of stale headers at the very end of a
  /// window must not produce an absurd rate. > 0.
  std::chrono::nanoseconds min_horizon{std::chrono::milliseconds{100}};
};

/// What the pacer wants the bucket to be.
struct pace_target {
  armor::rate rate{};
  std::int64_t burst = 1;
  /// The server says nothing remains: take every token left in the bucket,
  /// so that no call goes out before the reset.
  bool drain = false;
  /// How long the target holds: the reset plus the margin (at least
  /// min_horizon). After it the server's numbers are stale, and pacer
  /// returns the bucket to the ceiling unless newer ones came. Zero for the
  /// ceiling itself, which holds until the server says otherwise.
  std::chrono::nanoseconds horizon{0};

  friend constexpr bool operator==(const pace_target&, const pace_target&) noexcept = default;
};

namespace detail {

inline void check_pacer_options(const pacer_options& o) {
  if (o.ceiling.count <= 0 || o.ceiling.per.count() <= 0 || o.ceiling.count > o.ceiling.per.count()) {
    armor::detail::invalid_config(
        "armor::http::pacer: ceiling must be a positive rate of at most one per nanosecond (got " +
        std::to_string(o.ceiling.count) + " per " + std::to_string(o.ceiling.per.count()) + " ns)");
  }
  if (o.max_burst < 1) {
    armor::detail::invalid_config("armor::http::pacer: max_burst must be at least 1 (got " +
                                  std::to_string(o.max_burst) + ")");
  }
  if (o.margin.count() < 0) {
    armor::detail::invalid_config("armor::http::pacer: margin must not be negative (got " +
                                  std::to_string(o.margin.count()) + " ns)");
  }
  if (o.reserve < 0) {
    armor::detail::invalid_config("armor::http::pacer: reserve must not be negative (got " +
                                  std::to_string(o.reserve) + ")");
  }
  if (o.min_horizon.count() <= 0) {
    armor::detail::invalid_config("armor::http::pacer: min_horizon must be positive (got " +
                                  std::to_string(o.min_horizon.count()) + " ns)");
  }
}

/// a/b < c/d for positive rates, exactly.
[[nodiscard]] constexpr bool rate_less(const armor::rate& a, const armor::rate& b) noexcept {
  return static_cast<armor::detail::bucket_int128>(a.count) * b.per.count() <
         static_cast<armor::detail::bucket_int128>(b.count) * a.per.count();
}

}  // namespace detail

/// The pacing decision, as a pure function of what the server said and of
/// the bucket it is for. With R = remaining - reserve requests left until
/// the reset in T = reset_after + margin (at least min_horizon), and `held`
/// the tokens the bucket holds now:
///
///   - burst = min(max_burst, R), at least 1;
///   - the bucket keeps at most `burst` of the tokens it holds (set_rate
///     drops the rest, and never adds any), so it can grant H = min(held,
///     burst) at once;
///   - one token every T / (R - H), rounded up to the nanosecond: what the
///     bucket holds plus what refills before the reset is at most R, so the
///     quota cannot run out early;
///   - when R - H is 0, one token every T: the next comes after the reset;
///     when R <= 0, drain (take what the bucket holds);
///   - never faster than the ceiling;
///   - the burst is lowered, if need be, until a bucket with `max_wait` can
///     hold it (burst * interval + max_wait within a token bucket's span of
///     2^57 ticks), so set_rate accepts the target.
///
/// The target holds for T (`horizon`): after the reset the numbers say
/// nothing about the next window.
///
/// nullopt when the headers lack `remaining` or a reset (the bucket should
/// be left as it is), or when no burst fits `max_wait` at the target rate.
/// Allocates nothing; the options must be valid (pacer checks them at
/// construction).
[[nodiscard]] constexpr std::optional<pace_target> pace(const rate_limit_info& info, const pacer_options& o,
                                                        std::int64_t held,
                                                        std::chrono::nanoseconds max_wait = {}) noexcept {
  if (!info.remaining || !info.reset_after || max_wait.count() < 0) return std::nullopt;
  const std::int64_t left = armor::detail::saturating_sub(*info.remaining, o.reserve);
  std::int64_t horizon = armor::detail::saturating_add(info.reset_after->count(), o.margin.count());
  if (horizon < o.min_horizon.count()) horizon = o.min_horizon.count();
  pace_target t;
  t.horizon = std::chrono::nanoseconds{horizon};
  t.burst = std::clamp<std::int64_t>(left, 1, o.max_burst);
  t.drain = left <= 0;
  const std::int64_t kept = t.drain ? 0 : std::clamp<std::int64_t>(held, 0, t.burst);
  const std::int64_t spread = left - kept;  // no overflow: 0 <= kept <= left when left >= 1
  // One token per interval, rounded up: never faster than spread / horizon.
  const std::int64_t interval = spread > 0 ? horizon / spread + (horizon % spread != 0 ? 1 : 0) : horizon;
  t.rate = {1, std::chrono::nanoseconds{interval}};
  if (detail::rate_less(o.ceiling, t.rate)) t.rate = o.ceiling;
  // The bucket's state holds burst * period + max_wait * count ticks (rate in
  // lowest terms) within 2^57: lower the burst until it fits.
  const std::int64_t g = std::gcd(t.rate.count, t.rate.per.count());
  const std::int64_t count = t.rate.count / g;
  const std::int64_t period = t.rate.per.count() / g;
  std::int64_t wait_ticks = 0;
  if (__builtin_mul_overflow(max_wait.count(), count, &wait_ticks) || wait_ticks >= armor::detail::bucket_max_span) {
    return std::nullopt;
  }
  const std::int64_t fits = (armor::detail::bucket_max_span - wait_ticks) / period;
  if (fits < 1) return std::nullopt;
  if (t.burst > fits) t.burst = fits;
  return t;
}

/// Keeps a token bucket's rate where the server's quota lasts until its
/// reset (see pace()), and returns it to the ceiling once that reset (plus
/// the margin) has passed without newer numbers: an outage answering
/// without rate-limit headers must not keep the client at the pace of a
/// window long gone. No timer: the return happens in the first observe()
/// (or refresh()) at or after that time. Holds the bucket by reference; the
/// bucket must outlive it.
///
/// Thread-safety: observe() and refresh() may be called from any thread;
/// they call the bucket's set_rate (lock-free for the bucket's acquirers)
/// and keep one atomic word of their own (when the numbers go stale).
/// Responses observed out of order are applied in the order observed; the
/// return to the ceiling never undoes numbers observed after the stale
/// ones, except in a race at the very same moment (the return's set_rate
/// landing after a new header's), which the next response with headers
/// corrects. Copying or moving a pacer is not thread-safe.
///
///     armor::token_bucket bucket{{.rate = {50, 1s}, .burst = 5, .max_wait = 30s}};
///     armor::http::pacer pace{bucket, {.ceiling = {50, 1s}, .max_burst = 5}};
///     ... auto res = get(...); pace.observe(res); ...
template <class Bucket>
class pacer {
 public:
  /// Throws armor::error(invalid_argument) naming a bad option, or when
  /// the bucket could not take the ceiling with max_burst (with its max_wait).
  pacer(Bucket& bucket, const pacer_options& options) : bucket_(&bucket), options_(options) {
    detail::check_pacer_options(options_);
    (void)armor::detail::checked_bucket_config(options_.ceiling, options_.max_burst, bucket.max_wait(),
                                               "armor::http::pacer (ceiling and max_burst)");
  }

  pacer(const pacer& other) noexcept
      : bucket_(other.bucket_),
        options_(other.options_),
        stale_at_(other.stale_at_.load(std::memory_order_relaxed)) {}
  pacer& operator=(const pacer& other) noexcept {
    bucket_ = other.bucket_;
    options_ = other.options_;
    stale_at_.store(other.stale_at_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
  ~pacer() = default;

  /// Applies what a response says (a response type, or a rate_limit_info),
  /// read at wall time `wall_now`; the bucket is changed at its own clock's
  /// `now`. Returns the target applied. When the response says too little
  /// (no `remaining` or no reset), it changes nothing unless the last
  /// numbers have gone stale: then it is refresh(now), which returns the
  /// ceiling it applied. nullopt when nothing changed.
  std::optional<pace_target> observe(const rate_limit_info& info, timestamp now) {
    const auto t = pace(info, options_, bucket_->available(now), bucket_->max_wait());
    if (!t) return refresh(now);
    // The new deadline first: a refresh() that read the old one fails its
    // CAS from here on instead of restoring the ceiling over these numbers.
    stale_at_.store(armor::detail::saturating_add(stamp(now), t->horizon.count()), std::memory_order_relaxed);
    bucket_->set_rate(t->rate, t->burst, now);
    if (t->drain) {
      const std::int64_t left = bucket_->available(now);
      if (left > 0) (void)bucket_->try_acquire(left, now);
    }
    return t;
  }

  /// Same, reading the bucket's clock.
  std::optional<pace_target> observe(const rate_limit_info& info) {
    return observe(info, to_timestamp(bucket_->clock().now()));
  }

  /// Reads a response's rate-limit headers (at `wall_now`) and applies them.
  template <response R>
  std::optional<pace_target> observe(const R& r, wall_time wall_now, timestamp now) {
    return observe(read_rate_limit(r, wall_now), now);
  }

  /// Same, reading the wall clock and the bucket's clock.
  template <response R>
  std::optional<pace_target> observe(const R& r) {
    return observe(read_rate_limit(r, std::chrono::system_clock::now()));
  }

  /// When the numbers last applied are stale at `now` (their reset plus the
  /// margin has passed), sets the bucket to the ceiling with max_burst and
  /// returns that target; otherwise changes nothing and returns nullopt.
  /// observe() does this for every response without numbers; call it also
  /// on the callers' path (before taking a token) when responses may stop
  /// coming at all, or when a paced interval is long: it costs one relaxed
  /// load while nothing is due. Tokens the bucket holds are kept (none are
  /// added); reservations already made at the paced rate keep their times.
  std::optional<pace_target> refresh(timestamp now) {
    std::int64_t due = stale_at_.load(std::memory_order_relaxed);
    if (stamp(now) < due) return std::nullopt;  // not yet, or nothing to return from (never)
    // One caller returns the bucket; a newer deadline stored meanwhile wins.
    if (!stale_at_.compare_exchange_strong(due, never, std::memory_order_relaxed)) return std::nullopt;
    pace_target t;
    t.rate = options_.ceiling;
    t.burst = options_.max_burst;
    bucket_->set_rate(t.rate, t.burst, now);  // accepted: the constructor checked it
    return t;
  }

  /// Same, reading the bucket's clock.
  std::optional<pace_target> refresh() { return refresh(to_timestamp(bucket_->clock().now())); }

  [[nodiscard]] const pacer_options& options() const noexcept { return options_; }

 private:
  // No stale numbers to return from.
  static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();

  static constexpr std::int64_t stamp(timestamp t) noexcept { return t.time_since_epoch().count(); }

  Bucket* bucket_;
  pacer_options options_;
  // When the numbers last applied go stale, in the bucket's clock's ns;
  // `never` when none apply. Relaxed: it is only a time, and the bucket's
  // own state orders the rate changes.
  std::atomic<std::int64_t> stale_at_{never};
};

template <class Bucket>
pacer(Bucket&, const pacer_options&) -> pacer<Bucket>;

}  // namespace armor::http
