// armor/detail/breaker_core.hpp: the circuit breaker's decisions, lock-free.
// Not API: armor::circuit_breaker (armor/circuit_breaker.hpp) wraps this with
// a clock, a listener and the public types.
//
// The core is not a template: the clock and the listener live in the wrapper,
// which hands times in as int64 nanoseconds and turns the `breaker_change`
// a call returns into a listener event. The wrapper keeps the core on the
// heap (allocated once, at construction), so a breaker can be moved while its
// permits stay valid, and a permit needs only a pointer to the core.
//
// Who writes what:
//   - admit, closed or disabled: nothing (one relaxed load of the state word);
//   - admit, rejected: nothing (count_calls adds one counter increment);
//   - admit, half-open: one compare-exchange to take a probe slot;
//   - settle, success: nothing on the state word unless a run of failures
//     ends; the window (when a rate rule is on) and, with count_calls, one
//     counter;
//   - settle, failure: one compare-exchange (consecutive failures, or the trip
//     itself), the window, one counter;
//   - settle, neither (throttled, rejected, cancelled by default): one counter
//     (and, for a probe, the compare-exchange that gives its slot back);
//   - a transition: the compare-exchange that makes it, then the info word.
//
// The configuration sits in a config cell (config_cell.hpp) so that it can
// change at run time (reconfigure): a decision that needs a threshold reads
// the whole configuration once, when it first needs one (breaker_reading),
// and decides with that copy only. The paths that need none (admit while closed, a success of a
// breaker without a rate rule) read none. What shapes the state (the
// window, whether a rate rule or a slow-call rule exists, count_calls, the
// health rule) is fixed at construction and kept beside the cell.
//
// Memory orders: the state word and the info word are self-contained values;
// every decision reads one of them (or both, the info word being tagged with
// the generation of the state it belongs to), so relaxed atomicity is enough,
// except for the two publications that must not be overwritten by a late
// writer (the info word, below, and the windows, see breaker_window.hpp).
#pragma once

#include <armor/detail/breaker_window.hpp>
#include <armor/detail/breaker_word.hpp>
#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/detail/counter_set.hpp>
#include <armor/detail/time.hpp>
#include <armor/verdict.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

// GCC 12 at -O2/-O3 reports -Wmaybe-uninitialized on the fields of the
// breaker_config that breaker_reading holds in a std::optional, read only
// once it is engaged: the long-standing false positive of GCC bug 80635
// (std::optional and -Wmaybe-uninitialized), which showed in one test file
// of the Release build. Silenced for this header only; clang has no such
// warning. The pop is at the end of the file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace armor::detail {

/// Validated options, in the units the core computes with.
struct breaker_config {
  std::uint32_t failure_threshold = 5;  ///< consecutive failures that open; 0 = rule off
  std::uint32_t failure_rate_ppm = 0;   ///< failure rate (parts per million) that opens; 0 = rule off
  std::int64_t slow_ns = 0;             ///< a call longer than this is slow; 0 = rule off
  std::uint32_t slow_rate_ppm = 1'000'000;
  std::uint32_t minimum_calls = 10;
  bool time_window = false;             ///< else a count window
  std::uint32_t window_size = 100;
  std::uint32_t buckets = 10;
  std::int64_t bucket_ns = 6'000'000'000;
  std::int64_t open_ns = 30'000'000'000;
  double multiplier = 1.0;
  std::int64_t max_open_ns = 300'000'000'000;
  std::uint32_t half_open_max = 1;
  std::uint32_t success_threshold = 1;
  std::int64_t half_open_timeout_ns = 0;  ///< 0 = none
  bool count_calls = false;
  bool count_throttled = false;       ///< the default rule counts a throttled outcome as a failure
  health_rule health = nullptr;       ///< the user's rule; nullptr = default_health (and count_throttled)

  /// True when a rate rule needs a window.
  [[nodiscard]] constexpr bool windowed() const noexcept { return failure_rate_ppm != 0 || slow_ns != 0; }
};

/// Why the breaker changed phase (armor::breaker_reason, value for value:
/// armor/circuit_breaker.hpp checks every enumerator).
enum class breaker_cause : std::uint8_t {
  failure_threshold,
  failure_rate,
  slow_call_rate,
  open_elapsed,
  probes_succeeded,
  probe_failed,
  probe_slow,
  half_open_timeout,
  isolated,
  reset,
  disabled,
};

/// A transition a call made, for the wrapper to tell the listener about.
struct breaker_change {
  bool happened = false;
  breaker_phase from = breaker_phase::closed;
  breaker_phase to = breaker_phase::closed;
  breaker_cause cause = breaker_cause::reset;
  std::int64_t at = 0;       ///< the time of the call that made it
  std::int64_t open_ns = 0;  ///< to == open: how long it stays open
};

enum class breaker_grant_kind : std::uint8_t { rejected, call, probe };

/// What acquire() decided.
struct breaker_grant {
  breaker_grant_kind kind = breaker_grant_kind::rejected;
  std::uint32_t gen = 0;
  std::int64_t retry_after_ns = -1;  ///< rejected: when to try again; -1 = unknown
  bool retryable = true;
  breaker_change change{};
};

/// The lifetime counters (monotonic; reset() does not clear them).
enum class breaker_count : std::uint8_t {
  successes,   ///< counted only with count_calls
  failures,
  slow,
  ignored,
  throttled,   ///< throttled outcomes that counted as neither
  rejections,  ///< counted only with count_calls
  opened,
  count
};
using breaker_totals = counter_set<breaker_count>;

/// The configuration as one decision reads it: loaded whole at its first
/// use, then kept for the rest of the decision. A decision that needs no
/// threshold (a rejection while open, a plain success) reads nothing.
class breaker_reading {
 public:
  explicit breaker_reading(const config_cell<breaker_config>& cell) noexcept : cell_(cell) {}
  breaker_reading(const breaker_reading&) = delete;
  breaker_reading& operator=(const breaker_reading&) = delete;

  [[nodiscard]] const breaker_config& get() noexcept {
    if (!config_) config_.emplace(cell_.load());
    return *config_;
  }
  [[nodiscard]] const breaker_config* operator->() noexcept { return &get(); }

 private:
  const config_cell<breaker_config>& cell_;
  std::optional<breaker_config> config_;  // not built (not zeroed) until needed
};

class breaker_core {
 public:
  /// `base_ns`: a time near the ones the breaker will be given (its clock's
  /// reading at construction); the info word counts microseconds from it.
  breaker_core(const breaker_config& config, std::int64_t base_ns)
      : cfg_(config),
        base_(base_ns),
        windowed_(config.windowed()),
        timed_(config.slow_ns != 0 || config.health != nullptr),
        slow_rule_(config.slow_ns != 0),
        health_(config.health),
        count_calls_(config.count_calls),
        lean_success_(!config.windowed() && !config.count_calls && config.health == nullptr) {
    if (windowed_) {
      if (config.time_window) {
        time_.emplace(config.buckets, config.bucket_ns);
      } else {
        count_.emplace(config.window_size);
      }
    }
  }

  breaker_core(const breaker_core&) = delete;
  breaker_core& operator=(const breaker_core&) = delete;

  /// The configuration now (a copy, read whole).
  [[nodiscard]] breaker_config config() const noexcept { return cfg_.load(); }
  /// True when a successful call must be timed (a slow-call rule or a health rule).
  [[nodiscard]] bool timed() const noexcept { return timed_; }
  /// The count_calls option (fixed at construction).
  [[nodiscard]] bool counting() const noexcept { return count_calls_; }

  /// Replaces the configuration; the caller (circuit_breaker::reconfigure)
  /// has checked that `next` keeps what is fixed at construction. Decisions
  /// already under way finish with the configuration they read.
  void reconfigure(const breaker_config& next) noexcept { cfg_.store(next); }

  /// The state word now.
  [[nodiscard]] breaker_word word() const noexcept {
    // Relaxed: a snapshot of a self-contained word.
    return breaker_word::decode(state_.load(std::memory_order_relaxed));
  }

  // ---------------------------------------------------------------- admit

  /// Admits a call at `now`, or refuses it. A refusal writes nothing shared
  /// (unless count_calls). The closed case is small and forced inline (left
  /// to themselves, compilers kept it, and the state word's decoding, as
  /// calls inside a pipeline's driver, which doubled the cost of a rejection
  /// through a pipeline); the rest is out of line.
  ARMOR_ALWAYS_INLINE breaker_grant acquire(std::int64_t now) noexcept {
    // Relaxed: the word alone decides; no other memory is read on its strength.
    const std::uint64_t raw = state_.load(std::memory_order_relaxed);
    const breaker_word w = breaker_word::decode(raw);
    if (ARMOR_LIKELY(w.phase == breaker_phase::closed || w.phase == breaker_phase::disabled)) {
      return {breaker_grant_kind::call, w.gen};
    }
    return acquire_slow(raw, now);
  }

  /// The rest of acquire(), from the state word `raw` it read.
  breaker_grant acquire_slow(std::uint64_t raw, std::int64_t now) noexcept {
    breaker_reading cfg{cfg_};  // read once, at its first use, for the whole decision
    for (;;) {
      const breaker_word w = breaker_word::decode(raw);
      switch (w.phase) {
        case breaker_phase::closed:
        case breaker_phase::disabled:
          return {breaker_grant_kind::call, w.gen};
        case breaker_phase::isolated: {
          // The end not yet published (a == 0, see isolate()): no time is known.
          if (w.a == 0) return refuse(-1, false);
          // Acquire: pairs with the release that published the end
          // (isolate()), so the info word read below holds at least that end.
          // (A load rather than a fence: ThreadSanitizer does not model fences.)
          if (const std::uint64_t seen = state_.load(std::memory_order_acquire); seen != raw) {
            raw = seen;
            break;  // moved on meanwhile: decide again
          }
          // Relaxed: ordered by the acquire load above.
          const std::uint64_t info = info_.load(std::memory_order_relaxed);
          // Not for this generation (never so once published), or held until reset().
          if (!breaker_info_is_for(info, w.gen)) return refuse(-1, false);
          const std::int64_t until = breaker_info_time(info, base_);
          if (until >= isolated_forever()) return refuse(-1, false);
          if (now < until) return refuse(saturating_sub(until, now), false);
          // The isolation has ended: as after open_for, this call is the first probe.
          breaker_word next = w.moved_to(breaker_phase::half_open, w.trips);
          next.a = 1;
          // Relaxed: as in the open case.
          if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed,
                                           std::memory_order_relaxed)) {
            publish(next.gen, now);  // when half-open began (half_open_timeout)
            breaker_grant g{breaker_grant_kind::probe, next.gen};
            g.change = {true, breaker_phase::isolated, breaker_phase::half_open, breaker_cause::open_elapsed, now, 0};
            return g;
          }
          break;  // `raw` holds the new word: decide again
        }
        case breaker_phase::open: {
          // Relaxed: the info word is self-contained and tagged with its generation.
          const std::uint64_t info = info_.load(std::memory_order_relaxed);
          // Not yet written by the thread that opened the breaker: it is open
          // for at least open_for from about now.
          if (!breaker_info_is_for(info, w.gen)) return refuse(cfg->open_ns, true);
          const std::int64_t until = breaker_info_time(info, base_);
          if (now < until) return refuse(saturating_sub(until, now), true);
          // Open long enough: become half-open, taking the first probe slot in
          // the same step. Relaxed: the word is self-contained (see above).
          breaker_word next = w.moved_to(breaker_phase::half_open, w.trips);
          next.a = 1;
          if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed,
                                           std::memory_order_relaxed)) {
            publish(next.gen, now);  // when half-open began (half_open_timeout)
            breaker_grant g{breaker_grant_kind::probe, next.gen};
            g.change = {true, breaker_phase::open, breaker_phase::half_open, breaker_cause::open_elapsed, now, 0};
            return g;
          }
          break;  // `raw` holds the new word: decide again
        }
        case breaker_phase::half_open: {
          if (w.a < cfg->half_open_max) {
            breaker_word next = w;
            ++next.a;
            // Relaxed: the probe count is exact because it lives in this one word.
            if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed,
                                             std::memory_order_relaxed)) {
              return {breaker_grant_kind::probe, w.gen};
            }
            break;
          }
          if (cfg->half_open_timeout_ns > 0) {
            // Relaxed: as in the open case.
            const std::uint64_t info = info_.load(std::memory_order_relaxed);
            if (breaker_info_is_for(info, w.gen) &&
                saturating_sub(now, breaker_info_time(info, base_)) >= cfg->half_open_timeout_ns) {
              // Every slot taken for too long: the probes count as failed.
              const breaker_word next = w.moved_to(breaker_phase::open, std::min(w.trips + 1, breaker_trips_max));
              // Relaxed: as above.
              if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed,
                                               std::memory_order_relaxed)) {
                breaker_grant g{breaker_grant_kind::rejected, 0};
                g.change =
                    opened(cfg, breaker_phase::half_open, next, now, std::nullopt, breaker_cause::half_open_timeout);
                g.retry_after_ns = g.change.open_ns;
                count_rejection();
                return g;
              }
              break;
            }
          }
          return refuse(-1, true);
        }
      }
    }
  }

  // ---------------------------------------------------------------- settle

  /// Records the outcome of a call admitted in generation `gen` at
  /// `admitted`, ended at `now`.
  ARMOR_ALWAYS_INLINE breaker_change record(std::uint32_t gen, bool probe, std::int64_t admitted, std::int64_t now,
                                             const verdict& v) noexcept {
    if (ARMOR_LIKELY(v.kind == outcome::success && !probe && lean_success_)) {
      // The healthy steady state: a success, no run of failures to end,
      // nothing counted per call. Nothing to write.
      // Relaxed: as in acquire().
      const breaker_word w = breaker_word::decode(state_.load(std::memory_order_relaxed));
      if (ARMOR_LIKELY(counts_calls(w, gen) && w.a == 0)) return {};
    }
    return record_slow(gen, probe, admitted, now, v);
  }

  /// The rest of record().
  breaker_change record_slow(std::uint32_t gen, bool probe, std::int64_t admitted, std::int64_t now,
                             const verdict& v) noexcept {
    breaker_reading cfg{cfg_};  // read once, at its first use, for the whole decision
    const health h = judge(cfg, v);
    if (h == health::neutral) {
      // Throttled, rejected or cancelled (by default): says nothing about the upstream.
      if (probe) release_probe(gen);
      bump(v.kind == outcome::throttled ? breaker_count::throttled : breaker_count::ignored);
      return {};
    }
    const bool failed = h == health::unhealthy;
    const bool slow = slow_rule_ && saturating_sub(now, admitted) > cfg->slow_ns;
    return probe ? record_probe(cfg, gen, failed, slow, now, v.retry_after)
                 : record_call(cfg, gen, failed, slow, now, v.retry_after);
  }

  /// What `v` says about the upstream's health, by the breaker's rule.
  [[nodiscard]] health judge(breaker_reading& cfg, const verdict& v) const noexcept {
    if (health_ != nullptr) return health_(v);
    if (v.kind == outcome::throttled && cfg->count_throttled) return health::unhealthy;
    return default_health(v);
  }

  /// Gives back the slot of a probe that ends without an outcome.
  void release_probe(std::uint32_t gen) noexcept {
    // Relaxed: as in acquire().
    std::uint64_t raw = state_.load(std::memory_order_relaxed);
    for (;;) {
      const breaker_word w = breaker_word::decode(raw);
      // Another generation: the slot went with the generation it belonged to.
      if (w.phase != breaker_phase::half_open || w.gen != gen || w.a == 0) return;
      breaker_word next = w;
      --next.a;
      if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  // ---------------------------------------------------------------- manual control

  /// Moves the breaker to `to` (isolated, disabled, or closed = reset). A
  /// reset of a closed breaker still clears its counters, without a change.
  breaker_change force(breaker_phase to, std::int64_t now) noexcept {
    // Relaxed: as in acquire().
    std::uint64_t raw = state_.load(std::memory_order_relaxed);
    breaker_word w;
    breaker_word next;
    for (;;) {
      w = breaker_word::decode(raw);
      if (to != breaker_phase::closed && w.phase == to) return {};
      next = w.moved_to(to, 0);
      if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed, std::memory_order_relaxed)) {
        break;
      }
    }
    publish(next.gen, now);
    if (w.phase == to) return {};
    const breaker_cause cause = to == breaker_phase::closed     ? breaker_cause::reset
                                : to == breaker_phase::isolated ? breaker_cause::isolated
                                                                : breaker_cause::disabled;
    return {true, w.phase, to, cause, now, 0};
  }

  /// Isolates the breaker until `until` (ns; saturating: INT64_MAX holds it
  /// until reset()). An isolated breaker keeps the later of its end and
  /// `until`: a timed isolation never shortens another.
  ///
  /// Every change of an isolation's end shows in the state word, so the
  /// call that ends an isolation (isolated -> half-open, acquire_slow())
  /// fails its compare-exchange whenever the end moved after it read it.
  /// While isolated, `a` says whether the end is published: the winning
  /// transition sets a = 0, writes its end (hold_until), then a = 1
  /// (release); a call refuses while a == 0 without reading the info word.
  /// Extending a published end is a transition isolated -> isolated (next
  /// generation, a = 0) that carries the later end. Extending an unpublished
  /// one writes the end for the winner to keep (hold_until keeps the later)
  /// and then bumps `b` while the word still says unpublished (release); if
  /// the winner published first, it extends again as a published end.
  breaker_change isolate(std::int64_t until, std::int64_t now) noexcept {
    // Acquire: pairs with the release that published an end (see above).
    std::uint64_t raw = state_.load(std::memory_order_acquire);
    bool wrote = false;  // this call wrote its end into an unpublished isolation
    for (;;) {
      const breaker_word w = breaker_word::decode(raw);
      if (w.phase == breaker_phase::isolated && w.a == 0) {
        // The winner has not published its end: leave ours for it to keep.
        hold_until(w.gen, until);
        breaker_word next = w;
        next.b = (w.b + 1) & breaker_field_max;
        // Release: the winner's a = 1 (an RMW on this word, after this one)
        // continues the release sequence, so a call that reads a = 1 sees our end.
        if (state_.compare_exchange_strong(raw, next.encode(), std::memory_order_release,
                                           std::memory_order_acquire)) {
          return {};
        }
        wrote = true;  // changed under us: decide again from `raw`
        continue;
      }
      if (w.phase == breaker_phase::isolated) {
        // Published: the info word holds the end of w.gen (acquire above).
        // Relaxed: ordered by the acquire load or failed CAS that read `raw`.
        const std::uint64_t info = info_.load(std::memory_order_relaxed);
        if (!breaker_info_is_for(info, w.gen)) {  // moved on since: read again
          raw = state_.load(std::memory_order_acquire);
          continue;
        }
        const std::int64_t end = breaker_info_time(info, base_);
        const std::int64_t rounded = breaker_info_time(breaker_info_encode(w.gen, until, base_), base_);
        // Not later: nothing to change (unless our own end may sit unseen in it).
        if (!wrote && rounded <= end) return {};
        breaker_word next = w.moved_to(breaker_phase::isolated, w.trips);  // a = 0: unpublished
        if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_acquire, std::memory_order_acquire)) {
          const std::int64_t kept = end >= isolated_forever() ? std::numeric_limits<std::int64_t>::max() : end;
          publish_isolation(next.gen, end >= rounded ? kept : until);
          return {};
        }
        continue;  // `raw` holds the new word: decide again
      }
      const breaker_word next = w.moved_to(breaker_phase::isolated, 0);  // a = 0: unpublished
      if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_acquire, std::memory_order_acquire)) {
        publish_isolation(next.gen, until);
        const std::int64_t held = until >= isolated_forever() ? 0 : std::max<std::int64_t>(saturating_sub(until, now), 0);
        return {true, w.phase, breaker_phase::isolated, breaker_cause::isolated, now, held};
      }
    }
  }

  // ---------------------------------------------------------------- observation

  /// The current generation's window at `now` (empty when there is none, or
  /// while open or half-open).
  [[nodiscard]] breaker_window_counts window(std::int64_t now) const noexcept {
    const std::uint32_t gen = word().gen;
    if (count_) return count_->read(gen);
    if (time_) return time_->read(gen, now);
    return {};
  }

  /// A snapshot of the lifetime counters.
  [[nodiscard]] breaker_totals totals() const noexcept { return totals_; }

  /// Closed, no run of failures, and no failure or slow call in the window
  /// at `now`.
  [[nodiscard]] bool idle(std::int64_t now) const noexcept {
    const breaker_word w = word();
    if (w.phase != breaker_phase::closed || w.a != 0) return false;
    if (!windowed_) return true;
    const breaker_window_counts c = count_ ? count_->read(w.gen) : time_->read(w.gen, now);
    return c.failures == 0 && c.slow == 0;
  }

  /// How long the breaker stays open on its `trips`-th consecutive trip,
  /// given the verdict's retry_after hint.
  [[nodiscard]] std::int64_t open_duration(std::uint32_t trips, std::optional<std::chrono::nanoseconds> hint) const noexcept {
    return open_duration(cfg_.load(), trips, hint);
  }

  /// open_duration() by the configuration `cfg`.
  [[nodiscard]] static std::int64_t open_duration(const breaker_config& cfg, std::uint32_t trips,
                                                  std::optional<std::chrono::nanoseconds> hint) noexcept {
    std::int64_t d = cfg.open_ns;
    if (cfg.multiplier != 1.0 && trips > 1) {
      const double grown = static_cast<double>(cfg.open_ns) * std::pow(cfg.multiplier, static_cast<double>(trips - 1));
      d = grown >= static_cast<double>(cfg.max_open_ns) ? cfg.max_open_ns : static_cast<std::int64_t>(grown);
    }
    // A server's Retry-After extends the open time, up to max_open_for.
    if (hint && hint->count() > d) d = std::min(hint->count(), std::max(cfg.max_open_ns, d));
    return d;
  }

 private:
  // ---------------------------------------------------------------- settle, closed or disabled

  breaker_change record_call(breaker_reading& cfg, std::uint32_t gen, bool failed, bool slow, std::int64_t now,
                             std::optional<std::chrono::nanoseconds> hint) noexcept {
    // Relaxed: as in acquire().
    std::uint64_t raw = state_.load(std::memory_order_relaxed);
    breaker_word w = breaker_word::decode(raw);
    if (!counts_calls(w, gen)) {
      bump(breaker_count::ignored);  // admitted in an earlier generation
      return {};
    }
    count_outcome(failed, slow);

    bool trip = false;
    breaker_cause cause = breaker_cause::failure_threshold;
    if (count_ || time_) {
      breaker_window_counts c;
      if (count_) {
        c = count_->record(gen, failed, slow, state_);
      } else {
        time_->record(gen, now, failed, slow, state_);
        if (failed || slow) c = time_->read(gen, now);
      }
      // Only a call that raises a rate can open the breaker (as in Polly): a
      // success never does, even one that brings the window to minimum_calls.
      if ((failed || slow) && w.phase == breaker_phase::closed) trip = rates_exceeded(cfg.get(), c, cause);
    }

    if (!failed && !trip) {
      // A success ends a run of failures. The healthy steady state (no run)
      // writes nothing here.
      while (w.a != 0) {
        breaker_word next = w;
        next.a = 0;
        // Relaxed: as in acquire().
        if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed,
                                         std::memory_order_relaxed)) {
          break;
        }
        w = breaker_word::decode(raw);
        if (!counts_calls(w, gen)) break;
      }
      return {};
    }

    for (;;) {
      breaker_word next = w;
      bool trips_now = trip;
      breaker_cause why = cause;
      if (failed) {
        next.a = std::min(w.a + 1, breaker_field_max);
        if (w.phase == breaker_phase::closed && cfg->failure_threshold != 0 && next.a >= cfg->failure_threshold) {
          trips_now = true;
          why = breaker_cause::failure_threshold;
        }
      }
      if (trips_now) next = w.moved_to(breaker_phase::open, 1);
      // Relaxed: as in acquire().
      if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed, std::memory_order_relaxed)) {
        if (!trips_now) return {};
        return opened(cfg, w.phase, next, now, hint, why);
      }
      w = breaker_word::decode(raw);
      if (!counts_calls(w, gen)) return {};  // moved on meanwhile (another call opened it)
    }
  }

  // ---------------------------------------------------------------- settle, half-open

  breaker_change record_probe(breaker_reading& cfg, std::uint32_t gen, bool failed, bool slow, std::int64_t now,
                              std::optional<std::chrono::nanoseconds> hint) noexcept {
    // Relaxed: as in acquire().
    std::uint64_t raw = state_.load(std::memory_order_relaxed);
    for (;;) {
      const breaker_word w = breaker_word::decode(raw);
      if (w.phase != breaker_phase::half_open || w.gen != gen) {
        bump(breaker_count::ignored);  // its generation has gone, and its slot with it
        return {};
      }
      breaker_word next = w;
      breaker_cause cause = breaker_cause::probe_failed;
      if (failed || slow) {
        next = w.moved_to(breaker_phase::open, std::min(w.trips + 1, breaker_trips_max));
        cause = failed ? breaker_cause::probe_failed : breaker_cause::probe_slow;
      } else if (w.b + 1 >= cfg->success_threshold) {
        next = w.moved_to(breaker_phase::closed, 0);
        cause = breaker_cause::probes_succeeded;
      } else {
        next.a = w.a > 0 ? w.a - 1 : 0;
        next.b = w.b + 1;
      }
      // Relaxed: as in acquire().
      if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_relaxed, std::memory_order_relaxed)) {
        count_outcome(failed, slow);
        if (next.phase == breaker_phase::open) return opened(cfg, breaker_phase::half_open, next, now, hint, cause);
        if (next.phase == breaker_phase::closed) {
          publish(next.gen, now);
          return {true, breaker_phase::half_open, breaker_phase::closed, cause, now, 0};
        }
        return {};
      }
    }
  }

  // ---------------------------------------------------------------- helpers

  // The state word still takes outcomes of generation `gen` admitted while closed.
  static bool counts_calls(const breaker_word& w, std::uint32_t gen) noexcept {
    return (w.phase == breaker_phase::closed || w.phase == breaker_phase::disabled) && w.gen == gen;
  }

  [[nodiscard]] static bool rates_exceeded(const breaker_config& cfg, const breaker_window_counts& c,
                                           breaker_cause& cause) noexcept {
    if (c.calls < static_cast<std::int64_t>(cfg.minimum_calls)) return false;
    constexpr std::int64_t ppm = 1'000'000;
    if (cfg.failure_rate_ppm != 0 && c.failures * ppm >= static_cast<std::int64_t>(cfg.failure_rate_ppm) * c.calls) {
      cause = breaker_cause::failure_rate;
      return true;
    }
    if (cfg.slow_ns != 0 && c.slow * ppm >= static_cast<std::int64_t>(cfg.slow_rate_ppm) * c.calls) {
      cause = breaker_cause::slow_call_rate;
      return true;
    }
    return false;
  }

  // After a won transition into `next` (open): sets the open time and counts it.
  breaker_change opened(breaker_reading& cfg, breaker_phase from, const breaker_word& next, std::int64_t now,
                        std::optional<std::chrono::nanoseconds> hint, breaker_cause cause) noexcept {
    const std::int64_t d = open_duration(cfg.get(), next.trips, hint);
    publish(next.gen, saturating_add(now, d));
    bump(breaker_count::opened);
    return {true, from, breaker_phase::open, cause, now, d};
  }

  // Writes the info word for generation `gen`, the one the caller has just
  // made. A writer that finds the state word already past `gen` does nothing:
  // the newer winner writes its own. So a late writer never overwrites a newer
  // one: a newer writer read the newer generation from the state word before
  // its release compare-exchange; the late writer's acquire load of the info
  // word reads that value (or its compare-exchange fails and reloads it), and
  // its next load of the state word then sees the newer generation too
  // (read-read coherence).
  void publish(std::uint32_t gen, std::int64_t t) noexcept {
    const std::uint64_t value = breaker_info_encode(gen, t, base_);
    std::uint64_t cur = info_.load(std::memory_order_acquire);
    for (;;) {
      // Relaxed: ordered by the acquire above (see the comment on this function).
      if (breaker_word::decode(state_.load(std::memory_order_relaxed)).gen != gen) return;
      if (info_.compare_exchange_weak(cur, value, std::memory_order_release, std::memory_order_acquire)) return;
    }
  }

  // The info time of an isolation held until reset() (and of any end as
  // far from the base as the info word can say).
  [[nodiscard]] std::int64_t isolated_forever() const noexcept {
    return breaker_info_time(breaker_info_encode(0, std::numeric_limits<std::int64_t>::max(), base_), base_);
  }

  // publish() for an isolation of generation `gen`: writes `until` unless
  // the info word already holds a later end for `gen`, so that concurrent
  // isolations (and the winner, writing after them) leave the latest end.
  // Ordered as publish().
  void hold_until(std::uint32_t gen, std::int64_t until) noexcept {
    const std::uint64_t value = breaker_info_encode(gen, until, base_);
    const std::int64_t rounded = breaker_info_time(value, base_);
    std::uint64_t cur = info_.load(std::memory_order_acquire);
    for (;;) {
      // Relaxed: ordered by the acquire above (see publish()).
      if (breaker_word::decode(state_.load(std::memory_order_relaxed)).gen != gen) return;
      if (breaker_info_is_for(cur, gen) && breaker_info_time(cur, base_) >= rounded) return;
      if (info_.compare_exchange_weak(cur, value, std::memory_order_release, std::memory_order_acquire)) return;
    }
  }

  // After a won transition into (isolated, gen) with a = 0: writes the end
  // (keeping a later one an extender left), then publishes it: a 0 -> 1,
  // release, while the word is still (isolated, gen). A reset() or another
  // transition meanwhile leaves nothing to publish.
  void publish_isolation(std::uint32_t gen, std::int64_t until) noexcept {
    hold_until(gen, until);
    // Relaxed: the CAS below reads the word again.
    std::uint64_t raw = state_.load(std::memory_order_relaxed);
    for (;;) {
      const breaker_word w = breaker_word::decode(raw);
      if (w.phase != breaker_phase::isolated || w.gen != gen || w.a != 0) return;
      breaker_word next = w;
      next.a = 1;
      // Release (acq_rel): the end written above, and the ends extenders
      // wrote before their release bumps of `b`, are seen by whoever reads a = 1.
      if (state_.compare_exchange_weak(raw, next.encode(), std::memory_order_acq_rel, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  breaker_grant refuse(std::int64_t retry_after_ns, bool retryable) noexcept {
    count_rejection();
    breaker_grant g;
    g.retry_after_ns = retry_after_ns;
    g.retryable = retryable;
    return g;
  }

  void count_rejection() noexcept {
    if (count_calls_) bump(breaker_count::rejections);
  }

  void count_outcome(bool failed, bool slow) noexcept {
    if (failed) {
      bump(breaker_count::failures);
    } else if (count_calls_) {
      bump(breaker_count::successes);
    }
    if (slow) bump(breaker_count::slow);
  }

  void bump(breaker_count which) noexcept { totals_.add(which); }

  // Read-only except by reconfigure(): kept off the lines that calls write.
  config_cell<breaker_config> cfg_;
  const std::int64_t base_;
  const bool windowed_;      ///< a rate rule is on: the window exists
  const bool timed_;         ///< a slow-call rule or a health rule
  const bool slow_rule_;     ///< a slow-call rule (its threshold may change, not its presence)
  const health_rule health_;  ///< the user's rule (fixed at construction)
  const bool count_calls_;
  const bool lean_success_;  ///< a success writes nothing unless it ends a run of failures
  std::optional<breaker_count_window> count_;
  std::optional<breaker_time_window> time_;

  // Read by every admission; written by transitions, probes and runs of failures.
  alignas(cache_line) std::atomic<std::uint64_t> state_{0};
  std::atomic<std::uint64_t> info_{0};

  // Written by failures (and, with count_calls, by every call and rejection).
  alignas(cache_line) breaker_totals totals_;
};

}  // namespace armor::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
