// armor/histogram.hpp: latency distributions. armor::histogram counts
// durations into buckets without a lock or an allocation; the layer
// armor::latency_recorder feeds one from a pipeline, for the whole call
// (outermost) or for each attempt (inside the retry layer).
//
//     armor::latency_recorder call_latency{};                  // 1 ms .. 10 s buckets
//     armor::latency_recorder attempt_latency{{.scope = armor::latency_scope::attempt}};
//     auto p = armor::pipeline{
//         std::ref(call_latency),                              // whole call: retries and waits
//         armor::backoff{{.max_attempts = 3}},
//         std::ref(attempt_latency),                           // each attempt
//     };
//     p.execute([] { return 42; });
//     auto s = call_latency.stats();                           // s.duration.p95, .count, ...
//
// The recorder asks the driver for the time an attempt ends
// (needs_completion_time): one extra clock read per successful attempt in a
// pipeline where no other layer asked for it already (a failed attempt is
// always timed). Export with armor/prometheus.hpp (`_bucket`, `_sum`,
// `_count`); quantiles are estimated from the buckets as Prometheus'
// histogram_quantile does. See docs/observability.md#latency-histograms.
#pragma once

#include <armor/clock.hpp>
#include <armor/context.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/sharded_counter.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/stats.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace armor {

/// The default bucket bounds for network calls: 1 ms to 10 s, with a bound
/// on 100 ms, 300 ms, 500 ms and 2 s so that the usual targets (p50 < 100 ms,
/// p95 < 300 ms, p99 < 500 ms, alert at p95 > 2 s) fall on bucket edges.
[[nodiscard]] inline std::vector<std::chrono::nanoseconds> default_latency_bounds() {
  using namespace std::chrono_literals;
  return {1ms, 2500us, 5ms, 10ms, 25ms, 50ms, 100ms, 200ms, 300ms, 500ms, 1s, 2s, 5s, 10s};
}

/// How a histogram is laid out. Checked at construction.
struct histogram_options {
  /// Upper bounds of the buckets (a duration d falls in the first bucket
  /// with d <= bound; a last bucket, +Inf, takes the rest). Strictly
  /// increasing, positive, at least one, at most 64.
  std::vector<std::chrono::nanoseconds> bounds = default_latency_bounds();
  /// Counter shards (a power of two, 1 .. 256). The first `shards` threads
  /// of the process that record into any histogram each own a shard (no
  /// atomic read-modify-write); later threads share `shards` more, with
  /// atomic additions. Memory: 2 x shards x (bounds + 2) x 8 bytes, each
  /// shard rounded up to cache lines.
  std::size_t shards = 8;
};

/// A histogram read at one moment (histogram::snapshot()): bucket by bucket
/// consistent, not as a whole (a sample recorded meanwhile may be in `sum`
/// and not yet in its bucket). `count` is the sum of `counts`.
struct histogram_snapshot {
  std::vector<std::chrono::nanoseconds> bounds;  ///< upper bounds, +Inf not included
  std::vector<std::uint64_t> counts;             ///< per bucket, not cumulative; bounds.size() + 1 (the last is +Inf)
  std::chrono::nanoseconds sum{0};               ///< of every duration recorded
  std::uint64_t count = 0;                       ///< durations recorded
  std::chrono::nanoseconds p50{0};               ///< quantile(0.5); 0 when empty
  std::chrono::nanoseconds p95{0};               ///< quantile(0.95)
  std::chrono::nanoseconds p99{0};               ///< quantile(0.99)

  /// The q-quantile (0 <= q <= 1) estimated as Prometheus'
  /// histogram_quantile does: linear within the bucket that holds it, from
  /// 0 for the first bucket; in the +Inf bucket, the highest bound. Zero
  /// when nothing was recorded.
  [[nodiscard]] std::chrono::nanoseconds quantile(double q) const noexcept {
    if (count == 0 || bounds.empty() || counts.size() != bounds.size() + 1) return std::chrono::nanoseconds{0};
    q = std::clamp(q, 0.0, 1.0);
    const double rank = q * static_cast<double>(count);
    std::uint64_t below = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      const std::uint64_t in = counts[i];
      if (static_cast<double>(below + in) >= rank && in != 0) {
        const double lo = i == 0 ? 0.0 : static_cast<double>(bounds[i - 1].count());
        const double hi = static_cast<double>(bounds[i].count());
        const double into = (rank - static_cast<double>(below)) / static_cast<double>(in);
        return std::chrono::nanoseconds{static_cast<std::int64_t>(lo + (hi - lo) * std::clamp(into, 0.0, 1.0))};
      }
      below += in;
    }
    return bounds.back();
  }

  /// How fmt prints it (count, sum and the quantiles; the buckets go to
  /// Prometheus only).
  static constexpr auto fields() noexcept {
    using s = histogram_snapshot;
    return std::tuple{
        field("count", &s::count), field("sum", &s::sum), field("p50", &s::p50),
        field("p95", &s::p95),     field("p99", &s::p99),
    };
  }
};

/// Durations counted into buckets. record() is lock-free and allocation-free
/// (a search of the bounds and two relaxed writes to the calling thread's
/// shard: plain stores for a thread that owns one, atomic additions else) and may run on any number of threads at once, also while
/// snapshot() reads. Movable (not while in use), not copyable. Throws
/// armor::error(errc::invalid_argument) for bad options or when the shard
/// memory cannot be had.
class histogram {
 public:
  explicit histogram(histogram_options options = {}) : options_(check(std::move(options))) {
    bounds_.reserve(options_.bounds.size());
    for (const auto b : options_.bounds) bounds_.push_back(b.count());
    words_ = bounds_.size() + 2;  // buckets (+Inf included), then the sum
    lines_ = (words_ + words_per_line - 1) / words_per_line;
    mask_ = options_.shards - 1;
    cells_ = std::make_unique<line[]>(2 * options_.shards * lines_);
  }

  /// Counts one duration (negative ones as zero).
  void record(std::chrono::nanoseconds d) noexcept {
    const std::int64_t ns = d.count() < 0 ? 0 : d.count();
    const auto b = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), ns) - bounds_.begin());
    const std::size_t slot = detail::this_thread_slot();
    // Relaxed: each word is an independent tally read only for statistics.
    if (ARMOR_LIKELY(slot <= mask_)) {
      // The first `shards` threads of the process each own a shard: slots
      // are never handed out twice, so this thread is its only writer and a
      // load and a store do what an atomic addition would, for less.
      const std::size_t base = slot * lines_;
      bump(word(base, b), 1);
      bump(word(base, words_ - 1), static_cast<std::uint64_t>(ns));
    } else {
      // Later threads share the second half of the shards.
      const std::size_t base = (options_.shards + (slot & mask_)) * lines_;
      word(base, b).fetch_add(1, std::memory_order_relaxed);
      word(base, words_ - 1).fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
    }
  }

  /// The counts now, added up over the shards (allocates the snapshot).
  [[nodiscard]] histogram_snapshot snapshot() const {
    histogram_snapshot s;
    s.bounds = options_.bounds;
    s.counts.assign(bounds_.size() + 1, 0);
    std::uint64_t sum = 0;
    for (std::size_t shard = 0; shard < 2 * options_.shards; ++shard) {
      const std::size_t base = shard * lines_;
      for (std::size_t i = 0; i < s.counts.size(); ++i) s.counts[i] += word(base, i).load(std::memory_order_relaxed);
      sum += word(base, words_ - 1).load(std::memory_order_relaxed);
    }
    for (const std::uint64_t c : s.counts) s.count += c;
    s.sum = std::chrono::nanoseconds{static_cast<std::int64_t>(sum)};
    s.p50 = s.quantile(0.5);
    s.p95 = s.quantile(0.95);
    s.p99 = s.quantile(0.99);
    return s;
  }

  /// The bucket bounds.
  [[nodiscard]] const std::vector<std::chrono::nanoseconds>& bounds() const noexcept { return options_.bounds; }

 private:
  static constexpr std::size_t words_per_line = detail::cache_line / sizeof(std::atomic<std::uint64_t>);
  struct alignas(detail::cache_line) line {
    std::atomic<std::uint64_t> w[words_per_line]{};
  };

  static void bump(std::atomic<std::uint64_t>& w, std::uint64_t n) noexcept {
    w.store(w.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  [[nodiscard]] std::atomic<std::uint64_t>& word(std::size_t base, std::size_t i) const noexcept {
    return cells_[base + i / words_per_line].w[i % words_per_line];
  }

  static histogram_options check(histogram_options o) {
    const auto refuse = [](const std::string& why) { detail::invalid_config("armor::histogram: " + why); };
    if (o.bounds.empty()) refuse("bounds must not be empty");
    if (o.bounds.size() > 64) refuse("bounds may hold at most 64 bounds (got " + std::to_string(o.bounds.size()) + ")");
    for (std::size_t i = 0; i < o.bounds.size(); ++i) {
      if (o.bounds[i].count() <= 0) {
        refuse("bounds must be positive (bounds[" + std::to_string(i) + "] is " + std::to_string(o.bounds[i].count()) +
               " ns)");
      }
      if (i > 0 && o.bounds[i] <= o.bounds[i - 1]) {
        refuse("bounds must be strictly increasing (bounds[" + std::to_string(i) + "] is not above bounds[" +
               std::to_string(i - 1) + "])");
      }
    }
    if (o.shards == 0 || o.shards > 256 || (o.shards & (o.shards - 1)) != 0) {
      refuse("shards must be a power of two from 1 to 256 (got " + std::to_string(o.shards) + ")");
    }
    return o;
  }

  histogram_options options_;
  std::vector<std::int64_t> bounds_;  // in ns, for the search
  std::size_t words_ = 0;
  std::size_t lines_ = 0;
  std::size_t mask_ = 0;
  std::unique_ptr<line[]> cells_;
};

/// What a latency_recorder times, which names its metric family.
enum class latency_scope : std::uint8_t {
  call,     ///< the whole call, retries and waits included (the recorder is the outermost layer)
  attempt,  ///< one attempt (the recorder is inside the retry layer)
};

/// The enumerator's name: "call", "attempt".
[[nodiscard]] constexpr std::string_view to_string(latency_scope s) noexcept {
  switch (s) {
    case latency_scope::call: return "call";
    case latency_scope::attempt: return "attempt";
  }
  return "unknown";
}

/// A latency_recorder's options.
struct latency_recorder_options {
  /// What the layer times: the family is armor_call_duration_seconds or
  /// armor_attempt_duration_seconds. The layer's place in the pipeline
  /// decides what it measures; this says what to call it.
  latency_scope scope = latency_scope::call;
  histogram_options histogram{};
};

/// A latency_recorder's numbers.
struct latency_recorder_stats {
  latency_scope scope = latency_scope::call;
  bool is_call = true;      ///< scope == call
  bool is_attempt = false;  ///< scope == attempt
  histogram_snapshot duration{};

  /// How fmt prints and Prometheus exports it (one histogram family,
  /// named by the scope).
  static constexpr auto fields() noexcept {
    using s = latency_recorder_stats;
    return std::tuple{
        field("scope", &s::scope),
        histogram_field("duration", &s::duration, "armor_call_duration_seconds",
                        "Duration of whole calls through the pipeline, retries and waits included.")
            .when(&s::is_call),
        histogram_field("duration", &s::duration, "armor_attempt_duration_seconds",
                        "Duration of single attempts of the operation.")
            .when(&s::is_attempt),
    };
  }
};

/// The receipt of one admission: when it began.
struct latency_recorder_permit {
  timestamp start{};
};

/// A pipeline layer that records how long what runs inside it takes, from
/// its admission (the clock reading the driver already took) to the end of
/// the last attempt inside it (see the top of this header for the clock
/// read this costs). Calls that armor stops before any attempt are recorded
/// too, with the time up to the driver's last clock reading. Thread-safe;
/// share one between pipelines with std::ref. Throws armor::error for bad
/// histogram options.
class latency_recorder {
 public:
  using permit_type = latency_recorder_permit;
  using options_type = latency_recorder_options;
  static constexpr bool needs_completion_time = true;

  explicit latency_recorder(latency_recorder_options options = {})
      : scope_(options.scope), histogram_(std::move(options.histogram)) {}

  /// For armor::keyed (a histogram per key, bounded by max_keys; see
  /// docs/observability.md#latency-histograms-per-key): the recorder reads
  /// no clock, so `clock` is not kept.
  template <armor::clock Clock>
  latency_recorder(const latency_recorder_options& options, const Clock& /*clock*/)
      : latency_recorder(latency_recorder_options{options}) {}

  /// For armor::keyed: never idle, since dropping a key's histogram loses
  /// its counts; a full map evicts the least recently used key instead (its
  /// series then ends; if the key returns, a new one starts from zero,
  /// which Prometheus' rate() reads as a counter reset).
  [[nodiscard]] bool idle(timestamp) const noexcept { return false; }

  [[nodiscard]] admission<permit_type> admit(context& ctx) const noexcept {
    return admission<permit_type>::admit(permit_type{ctx.now()});
  }

  void settle(context& ctx, permit_type p, const verdict&) noexcept { histogram_.record(ctx.now() - p.start); }

  /// The histogram (to record into it by hand, or to read it).
  [[nodiscard]] armor::histogram& histogram() noexcept { return histogram_; }
  [[nodiscard]] const armor::histogram& histogram() const noexcept { return histogram_; }

  [[nodiscard]] latency_scope scope() const noexcept { return scope_; }

  /// A snapshot (allocates; for scrapes and logs).
  [[nodiscard]] latency_recorder_stats stats() const {
    latency_recorder_stats s;
    s.scope = scope_;
    s.is_call = scope_ == latency_scope::call;
    s.is_attempt = scope_ == latency_scope::attempt;
    s.duration = histogram_.snapshot();
    return s;
  }

 private:
  latency_scope scope_;
  armor::histogram histogram_;
};

}  // namespace armor
