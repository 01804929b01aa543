// armor/sliding_window.hpp: armor::sliding_window, a rate limit over the
// last `window` of time: exact over segments, or Cloudflare's two-counter
// approximation; and its options and stats.
//
//     using namespace std::chrono_literals;
//     // At most 100 requests in any 10 s, counted in 1 s segments:
//     armor::sliding_window recent{{.limit = 100, .window = 10s, .segments = 10}};
//     if (armor::window_decision d = recent.try_acquire(); !d) {
//         reject(d.code(), d.retry_after());  // when enough old segments roll off
//     }
//     // The two-counter approximation: one word per window, no segments.
//     armor::sliding_window approx{{.limit = 100, .window = 10s,
//                                   .algorithm = armor::sliding_window_algorithm::approximate}};
//
// exact: the window is the last `segments` segments (of window / segments
// each, the current one included); at most `limit` units in it. approximate:
// admits while prev * (window - elapsed) / window + curr <= limit, in exact
// integer arithmetic. Decisions are armor::window_decision (see
// armor/fixed_window.hpp), with 429 headers from armor/http/rate_limit.hpp.
//
// Thread-safety: every member may be called concurrently, except moving the
// limiter. Cost: one CAS on a 64-bit head word per grant; exact also reads
// `segments` words. No lock, no allocation per call (exact allocates its
// segments once, at construction). Error bounds, proofs, costs:
// docs/rate_windows.md.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/window_state.hpp>
#include <armor/error.hpp>
#include <armor/fixed_window.hpp>
#include <armor/listener.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace armor {

/// Which sliding window armor::sliding_window keeps.
enum class sliding_window_algorithm : std::uint8_t {
  exact,        ///< the last `segments` segments, counted one by one
  approximate,  ///< two counters, the previous window weighted by its overlap
};

/// The enumerator's name: "exact", "approximate".
[[nodiscard]] constexpr std::string_view to_string(sliding_window_algorithm a) noexcept {
  switch (a) {
    case sliding_window_algorithm::exact: return "exact";
    case sliding_window_algorithm::approximate: return "approximate";
  }
  return "unknown";
}

/// The options of armor::sliding_window. An aggregate:
/// `{.limit = 100, .window = 10s, .segments = 10}`.
struct sliding_window_options {
  /// Units admitted in any window; >= 1.
  std::int64_t limit = 0;
  /// The window's length; > 0.
  std::chrono::nanoseconds window{0};
  /// exact only: segments per window, 1 to 4096; window must be a whole
  /// number of nanoseconds times segments. More segments follow time more
  /// closely and cost one more word read per call each.
  std::int64_t segments = 10;
  /// exact (the default) or approximate.
  sliding_window_algorithm algorithm = sliding_window_algorithm::exact;
  /// Where segments (exact) or windows (approximate) start: at offset +
  /// k * length of the clock's time; 0 <= offset < that length.
  std::chrono::nanoseconds offset{0};
  /// Count granted, rejected and too-large calls in stats(). Off by default;
  /// limiters inside armor::keyed never count.
  bool count_calls = false;
  /// In a pipeline, which of the call's costs this limiter counts (as
  /// token_bucket_options::cost).
  cost_source cost{};
};

/// A snapshot of a sliding window. Each field is read with a relaxed load.
struct sliding_window_stats {
  std::int64_t limit = 0;               ///< units per window
  std::chrono::nanoseconds window{0};   ///< the window's length
  std::int64_t used = 0;                ///< units in the window now (approximate: the estimate, rounded up)
  std::chrono::nanoseconds reset{0};    ///< time until nothing is counted any more
  bool counting = false;                ///< whether the counters below are kept
  std::uint64_t granted = 0;            ///< calls granted
  std::uint64_t rejected = 0;           ///< calls refused: the window was full
  std::uint64_t too_large = 0;          ///< calls refused for asking more than the limit

  /// The fields as armor/fmt.hpp prints them and armor/prometheus.hpp
  /// exports them (armor_sliding_window_*; the counters only while counting).
  static constexpr auto fields() noexcept {
    using s = sliding_window_stats;
    return std::tuple{
        armor::gauge("limit", &s::limit, "armor_sliding_window_limit", "Units the sliding window admits per window."),
        armor::gauge("window", &s::window, "armor_sliding_window_length_seconds", "The sliding window's length."),
        armor::gauge("used", &s::used, "armor_sliding_window_used",
                     "Units counted in the sliding window now (approximate: the estimate, rounded up)."),
        armor::gauge("reset", &s::reset, "armor_sliding_window_reset_seconds",
                     "Seconds until the sliding window counts nothing any more."),
        armor::counter("granted", &s::granted, "armor_sliding_window_granted_total",
                       "Calls the sliding window granted (count_calls only).")
            .when_counting(),
        armor::counter("rejected", &s::rejected, "armor_sliding_window_rejected_total",
                       "Calls the sliding window refused because the window was full (count_calls only).")
            .when_counting(),
        armor::counter("too_large", &s::too_large, "armor_sliding_window_too_large_total",
                       "Calls the sliding window refused for asking more than the limit (count_calls only).")
            .when_counting(),
    };
  }
};

/// A sliding-window rate limiter, and an armor::policy (see the top of this
/// header). `Padded` keeps it on its own cache line (armor::keyed stores
/// unpadded ones). Constructors throw armor::error(invalid_argument),
/// naming the option, for limit < 1, window <= 0, segments outside
/// [1, 4096] or not dividing the window, an offset outside [0, period), a
/// limit too large for the period (docs/rate_windows.md), or a cost slot a
/// call does not have.
template <class Clock = steady_clock, bool Padded = true, class Listener = no_listener>
class alignas(Padded ? detail::cache_line : alignof(std::atomic<std::uint64_t>)) sliding_window {
  static_assert(armor::clock<Clock>, "armor::sliding_window: Clock must have now() returning its time_point");
  static_assert(listener_for<Listener, window_event>,
                "armor::sliding_window: Listener must be no_listener or callable as "
                "listener(const armor::window_event&) noexcept");

 public:
  using clock_type = Clock;
  using options_type = sliding_window_options;
  using permit_type = no_permit;
  /// What armor::keyed stores per key: the same limiter, unpadded, without a listener.
  using keyed_instance = sliding_window<Clock, false>;
  using listener_type = Listener;

  /// The most segments per window.
  static constexpr std::int64_t max_segments = 4096;

  explicit sliding_window(const sliding_window_options& options, Clock clock = Clock{}, Listener listener = Listener{})
      : pack_(checked(options)),
        limit_(options.limit),
        window_(options.window.count()),
        segments_(options.algorithm == sliding_window_algorithm::exact ? options.segments : 1),
        period_(window_ / segments_),
        offset_(options.offset.count()),
        exact_(options.algorithm == sliding_window_algorithm::exact),
        cost_(options.cost),
        counters_(options.count_calls),
        clock_(std::move(clock)),
        listener_(std::move(listener)) {
    if (exact_ && segments_ > 1) {
      heap_.reset(new std::atomic<std::uint64_t>[static_cast<std::size_t>(segments_)]);
      for (std::int64_t i = 0; i < segments_; ++i) heap_[static_cast<std::size_t>(i)].store(0, std::memory_order_relaxed);
    }
  }

  /// Moves the state. Not thread-safe: move a limiter before sharing it.
  sliding_window(sliding_window&& other) noexcept
      : head_(other.head_.load(std::memory_order_relaxed)),
        slot_(other.slot_.load(std::memory_order_relaxed)),
        heap_(std::move(other.heap_)),
        pack_(other.pack_),
        limit_(other.limit_),
        window_(other.window_),
        segments_(other.segments_),
        period_(other.period_),
        offset_(other.offset_),
        exact_(other.exact_),
        cost_(other.cost_),
        counters_(other.counters_),
        clock_(std::move(other.clock_)),
        listener_(std::move(other.listener_)) {}
  sliding_window(const sliding_window&) = delete;
  sliding_window& operator=(const sliding_window&) = delete;
  sliding_window& operator=(sliding_window&&) = delete;
  ~sliding_window() = default;

  /// Counts n units now (reads the clock), or none.
  [[nodiscard]] window_decision try_acquire(std::int64_t n = 1) noexcept(
      noexcept(std::declval<const Clock&>().now())) {
    return try_acquire(n, to_timestamp(clock_.now()));
  }

  /// Counts n units at `now` (a reading of this limiter's clock), or none.
  [[nodiscard]] window_decision try_acquire(std::int64_t n, timestamp now) noexcept {
    if (n < 0) [[unlikely]] {
      return {window_status::invalid,
              detail::window_result::exact(detail::window_outcome::too_large, n, limit_.load(), window_, 0, 0, 0)};
    }
    const detail::window_result r = acquire(n, ns(now));
    detail::window_record<Padded>(counters_, listener_, r);
    return decide(r);
  }

  /// Policy protocol: counts ctx.cost(options.cost) units at ctx.now(), or rejects.
  /// (Always inlined: left to itself, GCC 12 calls it out of line, which
  /// measured 8 to 19 ns more per refusal through a pipeline.)
  [[nodiscard]] ARMOR_ALWAYS_INLINE admission<no_permit> admit(context& ctx) noexcept {
    const std::int64_t n = ctx.cost(cost_);
    if (n <= 0) [[unlikely]] {
      if (n == 0) return admission<no_permit>::admit();
      return admission<no_permit>::reject(errc::invalid_argument, std::nullopt, false);
    }
    const detail::window_result r = acquire(n, ns(ctx.now()));
    detail::window_record<Padded>(counters_, listener_, r);
    return detail::window_admission(r);
  }

  /// Policy protocol: the units stay counted, whatever the outcome.
  void settle(context&, no_permit, const verdict&) noexcept {}

  [[nodiscard]] std::int64_t limit() const noexcept { return limit_.load(); }
  [[nodiscard]] std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{window_}; }
  [[nodiscard]] sliding_window_algorithm algorithm() const noexcept {
    return exact_ ? sliding_window_algorithm::exact : sliding_window_algorithm::approximate;
  }

  /// Changes the limit at run time (docs/reconfiguration.md): `options` is
  /// validated as by the constructor, and window, segments, algorithm,
  /// offset, cost and count_calls must equal the limiter's (they shape its
  /// state). The next decision weighs the units already counted in the
  /// window against the new limit. Throws armor::error(invalid_argument)
  /// naming the option; the old limit then stays. Thread-safe; decisions
  /// never wait for it.
  void reconfigure(const sliding_window_options& options) {
    (void)checked(options);
    constexpr const char* who = "armor::sliding_window::reconfigure";
    const bool exact = options.algorithm == sliding_window_algorithm::exact;
    if (options.window.count() != window_) detail::fixed_at_construction(who, "window");
    if (exact != exact_) detail::fixed_at_construction(who, "algorithm");
    if (exact && options.segments != segments_) detail::fixed_at_construction(who, "segments");
    if (options.offset.count() != offset_) detail::fixed_at_construction(who, "offset");
    if (!(options.cost == cost_)) detail::fixed_at_construction(who, "cost");
    if constexpr (Padded) {
      if (options.count_calls != counters_.on) detail::fixed_at_construction(who, "count_calls");
    }
    limit_.store(options.limit);
  }

  /// Units that may be granted at `now`, without counting any.
  [[nodiscard]] std::int64_t available(timestamp now) const noexcept { return acquire_peek(ns(now)).remaining(); }
  [[nodiscard]] std::int64_t available() const { return available(to_timestamp(clock_.now())); }

  /// A snapshot at `now` (see sliding_window_stats).
  [[nodiscard]] sliding_window_stats stats(timestamp now) const noexcept {
    const std::int64_t limit = limit_.load();
    const detail::window_result r = judge(view_of(head_.load(std::memory_order_acquire), ns(now)), 0, ns(now), limit);
    sliding_window_stats s;
    s.limit = limit;
    s.window = std::chrono::nanoseconds{window_};
    s.used = limit - r.remaining();
    s.reset = std::chrono::nanoseconds{r.reset()};
    if constexpr (Padded) {
      s.counting = counters_.on;
      s.granted = counters_.calls.load(detail::window_counter::granted);
      s.rejected = counters_.calls.load(detail::window_counter::denied);
      s.too_large = counters_.calls.load(detail::window_counter::too_large);
    }
    return s;
  }
  [[nodiscard]] sliding_window_stats stats() const { return stats(to_timestamp(clock_.now())); }

  /// For armor::keyed: true when nothing counts at `now` any more (a fresh
  /// limiter would decide the same from now on).
  [[nodiscard]] bool idle(timestamp now) const noexcept { return acquire_peek(ns(now)).reset() == 0; }

  [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

 private:
  __extension__ typedef unsigned __int128 uwide;

  static constexpr std::int64_t ns(timestamp t) noexcept { return t.time_since_epoch().count(); }

  static detail::window_packing checked(const sliding_window_options& o) {
    const char* who = "armor::sliding_window";
    if (o.window.count() <= 0) {
      detail::invalid_config(std::string(who) + ": window must be positive (got " + std::to_string(o.window.count()) + " ns)");
    }
    std::int64_t period = o.window.count();
    if (o.algorithm == sliding_window_algorithm::exact) {
      if (o.segments < 1 || o.segments > max_segments) {
        detail::invalid_config(std::string(who) + ": segments must be in [1, 4096] (got " + std::to_string(o.segments) + ")");
      }
      if (o.window.count() % o.segments != 0) {
        detail::invalid_config(std::string(who) + ": segments (" + std::to_string(o.segments) +
                       ") must divide the window (" + std::to_string(o.window.count()) + " ns) exactly");
      }
      period = o.window.count() / o.segments;
    } else if (o.algorithm != sliding_window_algorithm::approximate) {
      detail::invalid_config(std::string(who) + ": algorithm is not a sliding_window_algorithm");
    }
    if (o.offset.count() < 0 || o.offset.count() >= period) {
      detail::invalid_config(std::string(who) + ": offset must be in [0, " + std::to_string(period) + ") ns (got " +
                     std::to_string(o.offset.count()) + " ns)");
    }
    detail::check_cost_source(o.cost, who);
    return detail::checked_window_packing(o.limit, period, who);
  }

  [[nodiscard]] std::int64_t index_of(std::int64_t t) const noexcept {
    return detail::window_floor_div(t - offset_, period_);
  }
  [[nodiscard]] std::int64_t start_of(std::int64_t index) const noexcept { return index * period_ + offset_; }

  [[nodiscard]] std::atomic<std::uint64_t>& slot(std::int64_t k) const noexcept {
    if (!heap_) return slot_;
    const std::int64_t m = k % segments_;
    return heap_[static_cast<std::size_t>(m < 0 ? m + segments_ : m)];
  }

  // The view of the state a call at `t` decides on: the head segment (the
  // newest with a grant) and its count, and the call's own segment.
  struct view {
    std::uint64_t word;  // the head word read
    std::int64_t head;   // its segment
    std::int64_t count;  // its count
    std::int64_t now;    // the call's segment (never older than the head)
  };

  [[nodiscard]] view view_of(std::uint64_t w, std::int64_t t) const noexcept {
    view v{w, 0, pack_.count_of(w), index_of(t)};
    if (const std::int64_t ahead = pack_.ahead(w, v.now); ahead != 0) {
      v.now += ahead;  // another thread's newer clock reading: count in its segment
      v.head = v.now;
    } else {
      v.head = v.now - static_cast<std::int64_t>((pack_.tag(v.now) - pack_.tag_of(w)) & pack_.tag_mask);
    }
    return v;
  }

  // The count of segment k, seen from view v (exact only).
  [[nodiscard]] std::int64_t count_of(const view& v, std::int64_t k) const noexcept {
    if (k == v.head) return v.count;
    if (k > v.head) return 0;
    // Relaxed: segments older than the head were final before the head moved
    // past them, and the head was read with acquire.
    const std::uint64_t u = slot(k).load(std::memory_order_relaxed);
    return pack_.tag_of(u) == pack_.tag(k) ? pack_.count_of(u) : 0;
  }

  // Decides n units at t from view v, without writing (n may be 0: a peek).
  // `limit`: the one reading of the limit the decision uses.
  [[nodiscard]] detail::window_result judge(const view& v, std::int64_t n, std::int64_t t,
                                           std::int64_t limit) const noexcept {
    return exact_ ? judge_exact(v, n, t, limit) : judge_approx(v, n, t, limit);
  }

  [[nodiscard]] detail::window_result judge_exact(const view& v, std::int64_t n, std::int64_t t,
                                                 std::int64_t limit) const noexcept {
    const std::int64_t first = v.now - segments_ + 1;
    std::int64_t used = 0;
    for (std::int64_t k = first; k <= v.now; ++k) used += count_of(v, k);
    const bool fits = n <= limit && used + n <= limit;
    const std::int64_t after = fits ? used + n : used;
    // Roll segments off, oldest first: at the start of segment now + j the
    // window has lost segments first .. first + j - 1.
    std::int64_t left = after;
    std::int64_t j = 0;
    std::int64_t retry = 0;
    bool found_retry = fits || n > limit;
    // At most `segments` steps: after them everything has rolled off (the
    // bound also holds if another thread reuses an archive slot meanwhile,
    // which makes the counts read here disagree with those summed above).
    while ((left > 0 || !found_retry) && j < segments_) {
      ++j;
      const std::int64_t k = first + j - 1;
      left -= count_of(v, k) + (fits && k == v.now ? n : 0);
      if (j == segments_) left = 0;
      if (!found_retry && left + n <= limit) {
        found_retry = true;
        retry = start_of(v.now + j) - t;
      }
    }
    detail::window_outcome o = detail::window_outcome::granted;
    if (n > limit) {
      o = detail::window_outcome::too_large;
    } else if (!fits) {
      o = detail::window_outcome::denied;
    }
    // A lowered limit may find more counted than it allows: nothing remains.
    return detail::window_result::exact(o, n, limit, window_, after > limit ? 0 : limit - after,
                                        j == 0 ? 0 : start_of(v.now + j) - t, retry);
  }

  [[nodiscard]] detail::window_result judge_approx(const view& v, std::int64_t n, std::int64_t t,
                                                  std::int64_t limit) const noexcept {
    detail::window_result r;
    r.approx = true;
    r.n = n;
    r.limit = limit;
    r.window = window_;
    std::int64_t prev = 0;
    std::int64_t curr = 0;
    if (v.head == v.now) {
      curr = v.count;
      const std::uint64_t u = slot_.load(std::memory_order_relaxed);  // ordered by the head's acquire
      if (pack_.tag_of(u) == pack_.tag(v.now - 1)) prev = pack_.count_of(u);
    } else if (v.head == v.now - 1) {
      prev = v.count;
    }
    std::int64_t e = t - start_of(v.now);
    if (e < 0) e = 0;  // a call counted in a newer window than its clock reading
    r.x = prev;
    r.y = curr;
    r.z = e;
    if (n > limit) {
      r.outcome = detail::window_outcome::too_large;
    } else if (approx_full(prev, curr, n, limit, e)) {
      r.outcome = detail::window_outcome::denied;
    }
    return r;
  }

  // Whether the approximation refuses n more units (0 <= n <= limit), with
  // prev and curr counted and e ns (0 <= e < W) elapsed in the current
  // window: prev * (W - e) + (curr + n) * W > limit * W, that is
  // prev * (W - e) > room * W with room = limit - curr - n, in exact
  // arithmetic. Since 0 <= prev * (W - e) <= prev * W, curr alone refuses
  // when room < 0, and prev <= room grants (prev + curr + n <= limit):
  // only the calls in between multiply. Both products are below 2^127
  // (each factor is below 2^63): one 64 x 64 -> 128-bit multiplication
  // each, no overflow test.
  [[nodiscard]] ARMOR_ALWAYS_INLINE bool approx_full(std::int64_t prev, std::int64_t curr, std::int64_t n,
                                                     std::int64_t limit, std::int64_t e) const noexcept {
    const std::int64_t room = limit - curr - n;
    if (room < 0) return true;
    if (prev <= room) return false;
    return static_cast<uwide>(static_cast<std::uint64_t>(prev)) * static_cast<std::uint64_t>(window_ - e) >
           static_cast<uwide>(static_cast<std::uint64_t>(room)) * static_cast<std::uint64_t>(window_);
  }

  [[nodiscard]] detail::window_result acquire_peek(std::int64_t t) const noexcept {
    return judge(view_of(head_.load(std::memory_order_acquire), t), 0, t, limit_.load());
  }

  // Raises the archived count of segment k to c (never lowers it, never
  // overwrites a newer segment's).
  void archive(std::int64_t k, std::int64_t c) const noexcept {
    std::atomic<std::uint64_t>& s = slot(k);
    const std::uint64_t want = pack_.pack(k, c);
    std::uint64_t u = s.load(std::memory_order_relaxed);
    for (;;) {
      if (pack_.tag_of(u) == pack_.tag(k) ? pack_.count_of(u) >= c : pack_.ahead(u, k) != 0) return;
      // Relaxed: published by the head CAS (release) that follows.
      if (s.compare_exchange_weak(u, want, std::memory_order_relaxed)) return;
    }
  }

  ARMOR_ALWAYS_INLINE detail::window_result acquire(std::int64_t n, std::int64_t t) noexcept {
    return exact_ ? acquire_exact(n, t) : acquire_approx(n, t);
  }

  // The approximation's call, on its own: the window's index and the time
  // elapsed in it (by subtraction from the head's window, or one division),
  // both kept across CAS retries; the same view and decision as view_of and
  // judge_approx.
  ARMOR_ALWAYS_INLINE detail::window_result acquire_approx(std::int64_t n, std::int64_t t) noexcept {
    // Acquire: the previous window archived before the head moved is visible.
    std::uint64_t w = head_.load(std::memory_order_acquire);
    const std::int64_t limit = limit_.load();  // one reading per decision
    const std::int64_t since = t - offset_;
    std::int64_t index = 0;
    std::int64_t elapsed = 0;
    // First without dividing (as fixed_window::usage_of): the head's tag is
    // its window's index modulo 2^tag_bits; when t falls in the window whose
    // index is the tag itself, or in the next one, t's index and the time
    // elapsed in its window follow by subtraction. So does every call at
    // clock times in [offset, offset + 2^tag_bits * window) (at least 73
    // years from the clock's epoch) while the head is t's window or the one
    // before. k * window < 2^63 (the tag has at most max(1, 61 -
    // floor(log2(window))) bits); since - start is computed only when
    // since >= start.
    const std::int64_t k = static_cast<std::int64_t>(pack_.tag_of(w));
    const std::int64_t start = k * window_;
    bool divided = true;
    if (since >= start) [[likely]] {
      const std::int64_t d = since - start;
      if (d < window_) [[likely]] {
        // t is in the head's window, so curr is the head's count: a call
        // that curr alone refuses returns at once, as the loop below would
        // (head == now, prev unread and reported as 0).
        if (const std::int64_t curr = pack_.count_of(w); curr >= limit && n >= 1) {
          detail::window_result r;
          r.outcome = n > limit ? detail::window_outcome::too_large : detail::window_outcome::denied;
          r.approx = true;
          r.n = n;
          r.limit = limit;
          r.window = window_;
          r.y = curr;
          r.z = d;
          return r;
        }
        index = k;
        elapsed = d;
        divided = false;
      } else if (d - window_ < window_) {
        index = k + 1;  // the head is the window before t's
        elapsed = d - window_;
        divided = false;
      }
    }
    if (divided) [[unlikely]] {
      index = since / window_;  // one division: quotient and remainder
      elapsed = since % window_;
      if (elapsed < 0) {  // rounded towards zero: floor it
        --index;
        elapsed += window_;
      }
    }
    const std::uint64_t tag_now = pack_.tag(index);
    for (;;) {
      const std::int64_t count = pack_.count_of(w);
      std::int64_t now = index;
      std::int64_t head = index;
      std::int64_t e = elapsed;
      if (pack_.tag_of(w) == tag_now) {
        // The usual case: the head is the call's own window.
      } else if (const std::int64_t ahead = pack_.ahead(w, index); ahead != 0) {
        now += ahead;  // another thread's newer clock reading: count in its window
        head = now;
        e = 0;         // the call is counted in a window that starts after its clock reading
      } else {
        head = now - static_cast<std::int64_t>((pack_.tag(now) - pack_.tag_of(w)) & pack_.tag_mask);
      }
      std::int64_t prev = 0;
      std::int64_t curr = 0;
      if (head == now) {
        curr = count;
        // A call of n >= 1 with curr >= limit is refused by curr alone, and
        // prev changes none of its numbers (remaining 0, reset to_end +
        // window, retry_after from the next window: see window_result), so
        // it leaves the archive unread (prev reported as 0).
        if (curr < limit || n == 0) {
          const std::uint64_t u = slot_.load(std::memory_order_relaxed);  // ordered by the head's acquire
          if (pack_.tag_of(u) == pack_.tag(now - 1)) prev = pack_.count_of(u);
        }
      } else if (head == now - 1) {
        prev = count;
      }
      detail::window_result r;
      r.approx = true;
      r.n = n;
      r.limit = limit;
      r.window = window_;
      r.x = prev;
      r.y = curr;
      r.z = e;
      if (n > limit) [[unlikely]] {
        r.outcome = detail::window_outcome::too_large;
        return r;
      }
      if (approx_full(prev, curr, n, limit, e)) {
        r.outcome = detail::window_outcome::denied;
        return r;
      }
      if (n == 0) [[unlikely]] return r;
      std::uint64_t next = 0;
      if (head == now) {
        next = pack_.pack(now, count + n);
      } else {
        if (count > 0 && head == now - 1) archive(head, count);
        next = pack_.pack(now, n);
      }
      // Release: the archived window is published with the new head.
      if (head_.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_acquire)) return r;
    }
  }

  // Out of line: its loops would crowd the approximation's inlined path.
  [[gnu::noinline]] detail::window_result acquire_exact(std::int64_t n, std::int64_t t) noexcept {
    // Acquire: segments archived before the head moved are visible.
    std::uint64_t w = head_.load(std::memory_order_acquire);
    const std::int64_t limit = limit_.load();  // one reading per decision
    for (;;) {
      const view v = view_of(w, t);
      detail::window_result r = judge_exact(v, n, t, limit);
      if (r.outcome != detail::window_outcome::granted || n == 0) return r;
      std::uint64_t next = 0;
      if (v.head == v.now) {
        next = pack_.pack(v.now, v.count + n);
      } else {
        if (v.count > 0 && v.head > v.now - segments_) archive(v.head, v.count);
        next = pack_.pack(v.now, n);
      }
      // Release: the archived segment is published with the new head.
      if (head_.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_acquire)) return r;
    }
  }

  [[nodiscard]] static window_decision decide(const detail::window_result& r) noexcept { return window_decision(r); }

  std::atomic<std::uint64_t> head_{0};
  // The archive: one slot (approximate: the previous window; exact with
  // one segment: unused) or segments_ slots on the heap.
  mutable std::atomic<std::uint64_t> slot_{0};
  std::unique_ptr<std::atomic<std::uint64_t>[]> heap_;
  detail::window_packing pack_;
  detail::config_cell<std::int64_t> limit_;  // the one option that changes at run time
  std::int64_t window_;
  std::int64_t segments_;
  std::int64_t period_;
  std::int64_t offset_;
  bool exact_;
  cost_source cost_;
  [[no_unique_address]] std::conditional_t<Padded, detail::window_counters, detail::no_window_counters> counters_;
  [[no_unique_address]] Clock clock_;
  [[no_unique_address]] Listener listener_;
};

sliding_window(const sliding_window_options&) -> sliding_window<steady_clock>;
template <class C>
sliding_window(const sliding_window_options&, C) -> sliding_window<C>;
template <class C, class L>
sliding_window(const sliding_window_options&, C, L) -> sliding_window<C, true, L>;

}  // namespace armor
