// armor/detail/throttle_window.hpp: the adaptive throttle's sliding window
// of requests and accepts, lock-free. Not API: see armor/adaptive_throttle.hpp.
//
// The window spans B buckets of width W (nanoseconds); the bucket of a time
// t is floor(t / W), its number. A ring of B words holds the buckets, one
// 64-bit word each:
//
//   bits 40..63  tag: the bucket's number, modulo 2^24
//   bits 20..39  requests counted in that bucket
//   bits  0..19  accepts among those requests
//
// One word per bucket, so a reader sums (requests, accepts) pairs that are
// each consistent, with one load per bucket, and a writer changes both
// counts of its bucket with one compare-exchange. A writer that finds its
// tag adds to the word; one that finds an older tag (the ring has come
// round) starts the word afresh; one that finds a newer tag (its time is
// more than the window behind: a late writer) drops its sample. A bucket
// counts at most 2^20 - 1 requests; later requests in the same bucket are
// not sampled (their accepts neither, so the ratio stays right).
//
// A reader sums the words whose tag is exactly one of the last B bucket
// numbers. Tags compare 24 bits of the number: a word left untouched for
// 2^24 bucket widths (the options keep a width >= 1 ms: >= 4.6 hours) could
// read as current again, which needs an idle client and exact alignment.
//
// Accepts (and a request taken back) are credited to the bucket where the
// request was counted, not to the bucket of the settle time: accepts never
// exceed requests in any bucket, and a call slower than a bucket does not
// move its accept into a later bucket. A call that outlives the window finds
// its bucket restarted and its accept is dropped.
//
// Memory orders: every access is relaxed. The words are counts that decide
// nothing about other memory; each compare-exchange is atomic on its own.
#pragma once

#include <armor/detail/time.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace armor::detail {

/// What the window holds as of one moment.
struct throttle_counts {
  std::int64_t requests = 0;
  std::int64_t accepts = 0;
  /// The number of the oldest bucket of the window that holds a request
  /// (the newest bucket's when none does).
  std::int64_t oldest = 0;
};

/// The largest number of buckets (a decision reads every bucket).
inline constexpr std::uint32_t throttle_buckets_max = 1024;

/// Where a bucket lives: its word in the ring and the tag that word holds
/// while it counts that bucket. A permit keeps it, so settling needs no
/// division.
struct throttle_slot {
  std::uint32_t index = 0;
  std::uint32_t tag = 0;
};

class throttle_window {
 public:
  static constexpr int count_bits = 20;
  static constexpr std::uint64_t count_max = (std::uint64_t{1} << count_bits) - 1;
  static constexpr int tag_shift = 2 * count_bits;
  static constexpr std::uint64_t tag_mask = (std::uint64_t{1} << 24) - 1;
  static constexpr std::uint64_t one_request = std::uint64_t{1} << count_bits;
  static constexpr std::uint64_t one_accept = 1;

  throttle_window(std::uint32_t buckets, std::int64_t width_ns)
      : buckets_(buckets), width_(width_ns), ring_(std::make_unique<std::atomic<std::uint64_t>[]>(buckets)) {}

  [[nodiscard]] std::uint32_t buckets() const noexcept { return buckets_; }
  [[nodiscard]] std::int64_t width() const noexcept { return width_; }

  /// The number of the bucket that time `t` falls in (floor, also below zero).
  [[nodiscard]] std::int64_t bucket_of(std::int64_t t) const noexcept {
    std::int64_t q = t / width_;
    if (t % width_ != 0 && t < 0) --q;
    return q;
  }

  /// When bucket `n` leaves the window: the start of bucket n + B.
  [[nodiscard]] std::int64_t leaves_at(std::int64_t n) const noexcept {
    return saturating_mul_signed(saturating_add(n, static_cast<std::int64_t>(buckets_)), width_);
  }

  /// The slot of bucket `n`.
  [[nodiscard]] throttle_slot slot_of(std::int64_t n) const noexcept {
    const auto b = static_cast<std::int64_t>(buckets_);
    std::int64_t i = n % b;
    if (i < 0) i += b;
    return {static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(tag_of(n))};
  }

  /// The counts of the window whose newest bucket is `last`.
  [[nodiscard]] throttle_counts read(std::int64_t last) const noexcept { return read(last, slot_of(last).index); }

  /// The same, given the ring index of `last` (its slot's index).
  [[nodiscard]] throttle_counts read(std::int64_t last, std::uint32_t last_index) const noexcept {
    throttle_counts c;
    c.oldest = last;
    // In locals: compilers reload members around atomic loads.
    const std::atomic<std::uint64_t>* const ring = ring_.get();
    const std::uint32_t buckets = buckets_;
    std::uint32_t i = last_index;
    for (std::uint32_t k = 0; k < buckets; ++k) {
      // Relaxed: a reading of counts.
      const std::uint64_t w = ring[i].load(std::memory_order_relaxed);
      const std::int64_t n = last - static_cast<std::int64_t>(k);
      if ((w >> tag_shift) == tag_of(n) && requests(w) != 0) {
        c.requests += static_cast<std::int64_t>(requests(w));
        c.accepts += static_cast<std::int64_t>(accepts(w));
        c.oldest = n;  // the loop walks back in time: the last one found is the oldest
      }
      i = i == 0 ? buckets - 1 : i - 1;
    }
    return c;
  }

  /// Counts one request in the bucket of slot `s`. False when the sample is
  /// not taken (the bucket is full, or the writer is late by a whole window).
  [[nodiscard]] bool add_request(throttle_slot s) noexcept {
    std::atomic<std::uint64_t>& word = ring_[s.index];
    const std::uint64_t tag = s.tag;
    std::uint64_t cur = word.load(std::memory_order_relaxed);
    for (;;) {
      std::uint64_t next = (tag << tag_shift) | one_request;
      const std::uint64_t have = cur >> tag_shift;
      if (cur != 0 && have == tag) {
        if (requests(cur) == count_max) return false;
        next = cur + one_request;
      } else if (cur != 0 && newer(have, tag)) {
        return false;
      }
      // Relaxed: see the top of this file.
      if (word.compare_exchange_weak(cur, next, std::memory_order_relaxed, std::memory_order_relaxed)) return true;
    }
  }

  /// Counts an accept for a request counted in the bucket of slot `s`;
  /// dropped when the bucket has been restarted since (the call outlived the
  /// window).
  void add_accept(throttle_slot s) noexcept {
    change(s, [](std::uint64_t w) { return accepts(w) < requests(w) ? w + one_accept : w; });
  }

  /// Takes back a request counted in the bucket of slot `s` and not accepted.
  void remove_request(throttle_slot s) noexcept {
    change(s, [](std::uint64_t w) { return requests(w) > accepts(w) ? w - one_request : w; });
  }

  /// True when no bucket of the window ending at `last` holds a request.
  [[nodiscard]] bool empty(std::int64_t last) const noexcept { return read(last).requests == 0; }

 private:
  static constexpr std::uint64_t requests(std::uint64_t w) noexcept { return (w >> count_bits) & count_max; }
  static constexpr std::uint64_t accepts(std::uint64_t w) noexcept { return w & count_max; }
  static constexpr std::uint64_t tag_of(std::int64_t n) noexcept { return static_cast<std::uint64_t>(n) & tag_mask; }
  // True when tag `have` is ahead of `want` (up to half the tag space).
  static constexpr bool newer(std::uint64_t have, std::uint64_t want) noexcept {
    const std::uint64_t ahead = (have - want) & tag_mask;
    return ahead != 0 && ahead <= (tag_mask >> 1);
  }

  static constexpr std::int64_t saturating_mul_signed(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) return a < 0 ? ns_min : ns_max;
    return r;
  }

  // Applies `f` to slot s's word while it still holds the slot's bucket.
  template <class F>
  void change(throttle_slot s, F f) noexcept {
    std::atomic<std::uint64_t>& word = ring_[s.index];
    const std::uint64_t tag = s.tag;
    std::uint64_t cur = word.load(std::memory_order_relaxed);
    for (;;) {
      if (cur == 0 || (cur >> tag_shift) != tag) return;
      const std::uint64_t next = f(cur);
      if (next == cur) return;
      // Relaxed: see the top of this file.
      if (word.compare_exchange_weak(cur, next, std::memory_order_relaxed, std::memory_order_relaxed)) return;
    }
  }

  std::uint32_t buckets_;
  std::int64_t width_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> ring_;  // value-initialised: all empty
};

}  // namespace armor::detail
