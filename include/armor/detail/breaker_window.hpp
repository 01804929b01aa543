// armor/detail/breaker_window.hpp: the circuit breaker's sliding windows,
// lock-free. Not API: see armor/circuit_breaker.hpp.
//
// Both windows count, over their span, the calls recorded, how many failed and
// how many were slow. Both are cleared in O(1) when the breaker closes (or is
// reset): every word they write is tagged with the generation of the closed
// period it belongs to (see breaker_word.hpp), and a word tagged with another
// generation reads as empty. Nothing is ever zeroed in a loop.
//
// Count window (the last N calls). A ring of N one-word slots, each holding
// one call's outcome with its generation, and one aggregate word with the
// generation's totals:
//
//   slot:       bits 0 valid, 1 failure, 2 slow, 3..23 generation
//   aggregate:  bits 0..13 slow, 14..27 failures, 28..41 calls (14-bit two's
//               complement each), 42..62 generation
//
// A call takes the next ring position (fetch_add), swaps its outcome into the
// slot (exchange) and adds the difference to the aggregate (compare-exchange).
// A success replacing a success changes nothing and writes neither the slot
// nor the aggregate, so the healthy steady state writes only the position. The aggregate is then, once every writer in
// flight has finished, exactly the sum of the slots tagged with its
// generation. Between two writers' steps it can be off by the samples in
// flight, even below zero for a moment (hence signed fields, and N <= 4096 so
// that no excursion can overflow 14 bits); readers clamp.
//
// Time window (the last T, in B buckets of T/B). A ring of B buckets, each
// three words (calls, failures, slow), each word tagged with the generation
// (12 bits) and the bucket's number (28 bits, the time divided by the bucket
// width) and holding a 24-bit count. A writer finding its tag adds one; a
// writer finding an older bucket (the ring has come round) starts the word
// afresh. A bucket counts at most 2^24 - 1 calls; later calls in the same
// bucket are not sampled. A reader sums the words whose tag is exactly that
// of one of the last B bucket numbers. Tags compare 28 bits of the bucket
// number: a bucket left untouched for 2^28 bucket widths could be read as
// current again, which needs an idle upstream and exact alignment.
//
// Stale writers. A writer records only after checking that its permit's
// generation is the state word's, but the breaker can move on between that
// check and the write. Such a write lands on a word tagged with an older
// generation (invisible to the new one), or it finds a word tagged with a
// newer generation: it then re-reads the state word and, finding its own
// generation gone, drops the sample instead of starting the word afresh.
// Memory orders: that re-read is a relaxed load, and it is enough because the
// writer that first tagged the word with the newer generation read that
// generation from the state word before its release compare-exchange, and the
// stale writer's acquire load reads that value (or a later one in its release
// sequence); by read-read coherence its state load then sees the newer
// generation too. Everything else about the counts is arithmetic on single
// words, for which relaxed atomicity suffices.
#pragma once

#include <armor/detail/breaker_word.hpp>
#include <armor/detail/config.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace armor::detail {

/// What a window holds at one moment. Clamped: 0 <= failures, slow <= calls.
struct breaker_window_counts {
  std::int64_t calls = 0;
  std::int64_t failures = 0;
  std::int64_t slow = 0;

  [[nodiscard]] constexpr breaker_window_counts clamped() const noexcept {
    breaker_window_counts c;
    c.calls = std::max<std::int64_t>(calls, 0);
    c.failures = std::clamp<std::int64_t>(failures, 0, c.calls);
    c.slow = std::clamp<std::int64_t>(slow, 0, c.calls);
    return c;
  }
};

/// True while `gen` is the generation in the state word (a writer that found
/// a word tagged with another generation asks; see the top of this file).
[[nodiscard]] inline bool breaker_gen_is_current(const std::atomic<std::uint64_t>& state, std::uint32_t gen) noexcept {
  // Relaxed: ordered by the acquire load of the tagged word before it (read-read coherence).
  return breaker_word::decode(state.load(std::memory_order_relaxed)).gen == gen;
}

// ------------------------------------------------------------------ count window

/// The largest count window: keeps every transient excursion of the
/// aggregate's 14-bit fields in range.
inline constexpr std::uint32_t breaker_count_window_max = 4096;

class breaker_count_window {
 public:
  explicit breaker_count_window(std::uint32_t size)
      : size_(size), slots_(std::make_unique<std::atomic<std::uint32_t>[]>(size)) {}

  /// Records one call of generation `gen` and returns the window's counts
  /// after it (zero when the generation has gone).
  breaker_window_counts record(std::uint32_t gen, bool failed, bool slow,
                               const std::atomic<std::uint64_t>& state) noexcept {
    const std::uint32_t sample = slot_value(gen, failed, slow);
    // Relaxed: the position only spreads calls over the ring; no memory is published through it.
    const std::uint64_t ticket = hot_.cursor.fetch_add(1, std::memory_order_relaxed);
    std::atomic<std::uint32_t>& slot = slots_[ticket % size_];
    // A sample equal to the one it replaces changes no total, so it is not
    // written: the healthy steady state only reads the ring, and its lines
    // stay shared between cores. (Had another writer changed the slot since,
    // this call simply counts as having come before it.)
    // Relaxed: each slot's own modification order pairs every old value with exactly one remover.
    if (slot.load(std::memory_order_relaxed) == sample) return read(gen);
    const std::uint32_t old = slot.exchange(sample, std::memory_order_relaxed);
    if (old == sample) return read(gen);

    const bool old_counted = (old & 1U) != 0;
    const std::uint32_t old_gen = old >> 3;
    const std::int64_t of = (old >> 1) & 1U;
    const std::int64_t os = (old >> 2) & 1U;
    const std::int64_t nf = failed ? 1 : 0;
    const std::int64_t ns = slow ? 1 : 0;
    if (old_counted && old_gen == gen) return apply(gen, 0, nf - of, ns - os, state);
    if (old_counted) (void)apply(old_gen, -1, -of, -os, state);  // take it out of its own generation
    return apply(gen, 1, nf, ns, state);
  }

  /// The counts of generation `gen` now.
  [[nodiscard]] breaker_window_counts read(std::uint32_t gen) const noexcept {
    // Relaxed: a reading of numbers that decide nothing about other memory.
    const std::uint64_t w = hot_.totals.load(std::memory_order_relaxed);
    if (tag_of(w) != gen) return {};
    return unpack(w).clamped();
  }

  [[nodiscard]] std::uint32_t size() const noexcept { return size_; }

 private:
  static constexpr int field_bits = 14;
  static constexpr std::uint64_t field_mask = (std::uint64_t{1} << field_bits) - 1;
  static constexpr std::int64_t field_limit = std::int64_t{1} << (field_bits - 1);  // 8192
  static constexpr int calls_shift = 2 * field_bits;
  static constexpr int failures_shift = field_bits;
  static constexpr int tag_shift = 3 * field_bits;

  static constexpr std::uint32_t slot_value(std::uint32_t gen, bool failed, bool slow) noexcept {
    return ((gen & breaker_gen_mask) << 3) | (slow ? 4U : 0U) | (failed ? 2U : 0U) | 1U;
  }

  static constexpr std::uint32_t tag_of(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>(w >> tag_shift) & breaker_gen_mask;
  }
  static constexpr std::int64_t field(std::uint64_t w, int shift) noexcept {
    auto v = static_cast<std::int64_t>((w >> shift) & field_mask);
    return v >= field_limit ? v - 2 * field_limit : v;
  }
  static constexpr std::uint64_t put(std::int64_t v, int shift) noexcept {
    v = std::clamp<std::int64_t>(v, -field_limit, field_limit - 1);
    return (static_cast<std::uint64_t>(v) & field_mask) << shift;
  }
  static constexpr breaker_window_counts unpack(std::uint64_t w) noexcept {
    return {field(w, calls_shift), field(w, failures_shift), field(w, 0)};
  }
  static constexpr std::uint64_t pack(std::uint32_t gen, breaker_window_counts c) noexcept {
    return (static_cast<std::uint64_t>(gen & breaker_gen_mask) << tag_shift) | put(c.calls, calls_shift) |
           put(c.failures, failures_shift) | put(c.slow, 0);
  }

  // Adds a difference to generation `gen`'s totals; a word of an older
  // generation is started afresh, unless `gen` itself has gone.
  breaker_window_counts apply(std::uint32_t gen, std::int64_t dc, std::int64_t df, std::int64_t ds,
                              const std::atomic<std::uint64_t>& state) noexcept {
    // Acquire / acq_rel: the stale-writer re-check (top of this file).
    std::uint64_t cur = hot_.totals.load(std::memory_order_acquire);
    for (;;) {
      breaker_window_counts c{dc, df, ds};
      if (tag_of(cur) == gen) {
        const auto old = unpack(cur);
        c = {old.calls + dc, old.failures + df, old.slow + ds};
      } else if (!breaker_gen_is_current(state, gen)) {
        return {};
      }
      const std::uint64_t next = pack(gen, c);
      if (hot_.totals.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
        return c.clamped();
      }
    }
  }

  // Written by every call: one line of their own, away from the state word.
  struct alignas(cache_line) hot_words {
    std::atomic<std::uint64_t> cursor{0};
    std::atomic<std::uint64_t> totals{0};
  };

  std::uint32_t size_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> slots_;  // value-initialised: all invalid
  hot_words hot_;
};

// ------------------------------------------------------------------ time window

/// The most buckets a time window may have (a failure reads every bucket).
inline constexpr std::uint32_t breaker_time_buckets_max = 4096;

/// floor(t / w) for w > 0, also for negative t.
[[nodiscard]] constexpr std::int64_t breaker_floor_div(std::int64_t t, std::int64_t w) noexcept {
  std::int64_t q = t / w;
  if (t % w != 0 && t < 0) --q;
  return q;
}

class breaker_time_window {
 public:
  breaker_time_window(std::uint32_t buckets, std::int64_t width_ns)
      : buckets_(buckets), width_(width_ns), ring_(std::make_unique<bucket[]>(buckets)) {}

  /// Records one call of generation `gen` that ended at `now`.
  void record(std::uint32_t gen, std::int64_t now, bool failed, bool slow,
              const std::atomic<std::uint64_t>& state) noexcept {
    const std::int64_t n = breaker_floor_div(now, width_);
    bucket& b = ring_[index(n)];
    const std::uint64_t tag = tag_for(gen, n);
    if (!add(b.calls, tag, gen, state)) return;  // full, late or stale: not sampled
    if (failed) (void)add(b.failures, tag, gen, state);
    if (slow) (void)add(b.slow, tag, gen, state);
  }

  /// The counts of generation `gen` over the window that ends at `now`.
  [[nodiscard]] breaker_window_counts read(std::uint32_t gen, std::int64_t now) const noexcept {
    const std::int64_t last = breaker_floor_div(now, width_);
    breaker_window_counts c;
    for (std::uint32_t k = 0; k < buckets_; ++k) {
      const std::int64_t n = last - static_cast<std::int64_t>(k);
      const bucket& b = ring_[index(n)];
      const std::uint64_t tag = tag_for(gen, n);
      c.calls += value_if(b.calls, tag);
      c.failures += value_if(b.failures, tag);
      c.slow += value_if(b.slow, tag);
    }
    return c.clamped();
  }

  [[nodiscard]] std::uint32_t buckets() const noexcept { return buckets_; }
  [[nodiscard]] std::int64_t width() const noexcept { return width_; }

 private:
  static constexpr int value_bits = 24;
  static constexpr std::uint64_t value_mask = (std::uint64_t{1} << value_bits) - 1;
  static constexpr int number_bits = 28;
  static constexpr std::uint64_t number_mask = (std::uint64_t{1} << number_bits) - 1;
  static constexpr std::uint64_t gen_part_mask = 0xFFF;

  struct bucket {
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> slow{0};
  };

  static constexpr std::uint64_t tag_for(std::uint32_t gen, std::int64_t n) noexcept {
    return ((gen & gen_part_mask) << number_bits) | (static_cast<std::uint64_t>(n) & number_mask);
  }

  [[nodiscard]] std::size_t index(std::int64_t n) const noexcept {
    const auto b = static_cast<std::int64_t>(buckets_);
    return static_cast<std::size_t>(((n % b) + b) % b);
  }

  static std::int64_t value_if(const std::atomic<std::uint64_t>& word, std::uint64_t tag) noexcept {
    // Relaxed: a reading of a count.
    const std::uint64_t w = word.load(std::memory_order_relaxed);
    return (w >> value_bits) == tag ? static_cast<std::int64_t>(w & value_mask) : 0;
  }

  // Adds one to a bucket word for `tag`. False when the sample is not taken:
  // the bucket is full, has moved on past this sample (a late writer), or
  // belongs to a newer generation than the writer's (a stale writer).
  static bool add(std::atomic<std::uint64_t>& word, std::uint64_t tag, std::uint32_t gen,
                  const std::atomic<std::uint64_t>& state) noexcept {
    // Acquire / acq_rel: the stale-writer re-check (top of this file).
    std::uint64_t cur = word.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t have = cur >> value_bits;
      std::uint64_t next = (tag << value_bits) | 1U;
      if (have == tag) {
        if ((cur & value_mask) == value_mask) return false;
        next = cur + 1;
      } else if ((have >> number_bits) != (tag >> number_bits)) {
        if (!breaker_gen_is_current(state, gen)) return false;
      } else {
        // Same generation, another bucket number: start afresh if the word's
        // is older; drop this sample if it is newer (up to 2^24 buckets ahead).
        const std::uint64_t ahead = ((have & number_mask) - (tag & number_mask)) & number_mask;
        if (ahead != 0 && ahead <= (std::uint64_t{1} << 24)) return false;
      }
      if (word.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_acquire)) return true;
    }
  }

  std::uint32_t buckets_;
  std::int64_t width_;
  std::unique_ptr<bucket[]> ring_;
};

}  // namespace armor::detail
