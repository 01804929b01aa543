// armor/detail/adaptive_limit_core.hpp: the shared state of an adaptive
// concurrency limit: the in-flight count, the published thresholds, the
// window's lock-free accumulators, the claim that lets exactly one thread
// close a window, and the optional FIFO queue. Not API.
//
// The queue follows the bulkhead's rules (a newcomer never overtakes a
// waiter; a released slot goes straight to the head of the queue, still
// counted) with one difference: the word that holds the in-flight count
// holds no queue length, only one bit, "someone waits" (bit 31 of the first
// half; in flight never passes 2^21). The bit makes the low 32 bits at least
// 2^31, above every threshold, so admission's one comparison refuses while
// anyone waits, at no extra cost; and a release sees it in the word it
// loads for its CAS anyway. The bit is set and cleared only under the
// queue's mutex, and while it is set nobody but a holder of the mutex
// changes the in-flight count: lock-free admissions fail, releases take the
// mutex, and a critical caller that may still enter (no critical caller
// waits, room under its threshold) enters under the mutex (join(), or
// try_enter_locked() for standalone try_acquire). Only the window's closer
// changes the word without the mutex meanwhile, and only its sample half,
// so every change under the mutex is still a CAS loop.
//
// A full queue refuses every caller, critical ones too: a critical caller
// does not push a normal waiter out (it can still enter at once while there
// is room under the critical threshold).
//
// Two lists: critical waiters are served before normal ones (sheddable
// calls never queue). A waiter of level L is served while in flight is
// below L's threshold. Invariant, after every change under the mutex: no
// waiter that could be served is waiting.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/wide_cas.hpp>
#include <armor/policy.hpp>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdint>
#include <limits>
#include <mutex>

#if defined(__GNUC__) || defined(__clang__)
#define ARMOR_ADAPTIVE_COLD __attribute__((noinline, cold))
#else
#define ARMOR_ADAPTIVE_COLD
#endif

namespace armor::detail {

/// Thresholds are packed three to a word, 21 bits each: critical (bits
/// 0-20), normal (21-41), sheddable (42-62). One relaxed load at admission.
inline constexpr unsigned limit_bits = 21;
inline constexpr std::uint32_t limit_mask = (std::uint32_t{1} << limit_bits) - 1;

[[nodiscard]] constexpr std::uint64_t pack_thresholds(std::uint32_t critical, std::uint32_t normal,
                                                      std::uint32_t sheddable) noexcept {
  return std::uint64_t{critical & limit_mask} | (std::uint64_t{normal & limit_mask} << limit_bits) |
         (std::uint64_t{sheddable & limit_mask} << (2 * limit_bits));
}

[[nodiscard]] constexpr std::uint32_t threshold_of(std::uint64_t word, unsigned level) noexcept {
  return static_cast<std::uint32_t>(word >> (limit_bits * level)) & limit_mask;
}

/// The window start while a thread closes the window.
inline constexpr std::int64_t window_closing = std::numeric_limits<std::int64_t>::min();

/// What the call path touches, each group on its own cache line: the
/// in-flight pair (written by every admission and release), the thresholds
/// (read by every admission, written once per window) and the window.
///
/// The pair changes only by one 16-byte compare-and-swap (detail/wide_cas.hpp),
/// so its halves always change together. First half: calls in flight (low
/// 32 bits) and calls timed in the current window (high 32 bits). Second
/// half: the sum of their latencies in ns. A settled call gives its slot
/// back and adds its sample (count and latency) in one step, and the closer
/// takes count and sum in one step: a window's count and sum never split
/// between two windows. Every change is a 16-byte CAS (also admission and a
/// plain release), never an 8-byte RMW beside it: where the 16-byte CAS is
/// emulated (ThreadSanitizer's runtime) an 8-byte RMW would not be atomic
/// with it. Reads of one half are plain 8-byte atomic loads.
struct adaptive_limit_core {
  static constexpr std::uint64_t one_sample = std::uint64_t{1} << 32;
  /// The first half's low 32 bits: in flight and the queue bit.
  static constexpr std::uint64_t in_flight_mask = one_sample - 1;
  /// Someone waits in the queue (set and cleared under queue_mutex).
  static constexpr std::uint64_t queue_flag = std::uint64_t{1} << 31;
  /// The in-flight count alone.
  static constexpr std::uint64_t in_flight_bits = queue_flag - 1;
  /// A window times at most this many calls; later ones settle untimed.
  static constexpr std::uint64_t max_samples = 0xFFFFFFFFULL;
  /// The latency sum never passes this (so it converts to int64 exactly).
  static constexpr std::uint64_t max_sum = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

  alignas(cache_line) atomic_pair pair;

  alignas(cache_line) std::atomic<std::uint64_t> thresholds{0};
  std::atomic<std::int64_t> last_mean_ns{0};  // the mean latency of the last closed window; 0: none yet

  alignas(cache_line) std::atomic<std::int64_t> window_start{0};
  std::atomic<std::int64_t> min_latency_ns{std::numeric_limits<std::int64_t>::max()};
  std::atomic<std::uint32_t> max_in_flight{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> throttled{0};

  /// Takes a slot when in_flight is below the threshold for `level` and
  /// nobody is queued (the queue bit puts the low half above every
  /// threshold): one CAS loop, so in_flight never passes the threshold it
  /// was checked against. Answers the count after entering, or 0 when refused.
  [[nodiscard]] ARMOR_ALWAYS_INLINE std::uint32_t try_enter(unsigned level) noexcept {
    // Relaxed is enough for the thresholds: a stale limit only decides one
    // call by the previous window's limit, which is still a published one.
    const std::uint32_t cap = threshold_of(thresholds.load(std::memory_order_relaxed), level);
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    if (static_cast<std::uint32_t>(w) >= cap) return 0;  // refused: nothing written
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    do {
      if (static_cast<std::uint32_t>(w) >= cap) return 0;
    } while (!pair.compare_exchange_update(w, sum, w + 1, sum));
    return static_cast<std::uint32_t>(w) + 1;
  }

  /// Calls in flight now.
  [[nodiscard]] std::uint32_t in_flight() const noexcept {
    return static_cast<std::uint32_t>(pair.first.load(std::memory_order_relaxed) & in_flight_bits);
  }
  /// Someone waits in the queue (a hint: the bit may change right after).
  [[nodiscard]] bool queue_flagged() const noexcept {
    return (pair.first.load(std::memory_order_relaxed) & queue_flag) != 0;
  }
  /// Calls timed in the current window so far.
  [[nodiscard]] std::uint32_t samples() const noexcept {
    return static_cast<std::uint32_t>(pair.first.load(std::memory_order_relaxed) >> 32);
  }

  /// Gives a slot back: to the queue's head if someone waits (the bit is
  /// in the word the CAS reads anyway: no extra load).
  ARMOR_ALWAYS_INLINE void leave() noexcept {
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    while ((w & queue_flag) == 0) {
      if (pair.compare_exchange_update(w, sum, w - 1, sum)) return;
    }
    release_to_queue(false, 0);
  }

  /// Gives a slot back and adds a timed call (count and latency), in one
  /// step. Its latency goes into the window's minimum first, so a window that
  /// counts the call has seen its minimum (or an earlier window took it; the
  /// closer skips a window that has samples and no minimum). A window that
  /// is full (max_samples, or a sum that would pass max_sum) takes no more
  /// samples: the slot is still given back.
  ARMOR_ALWAYS_INLINE void leave_with_sample(std::int64_t ns) noexcept {
    note_min(ns);
    const auto add = static_cast<std::uint64_t>(ns);
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    while ((w & queue_flag) == 0) {
      const bool room = (w >> 32) < max_samples && sum <= max_sum - add;
      if (pair.compare_exchange_update(w, sum, room ? w + one_sample - 1 : w - 1, room ? sum + add : sum)) return;
    }
    release_to_queue(true, add);
  }

  /// The window's count and latency sum, taken together: calls settling
  /// meanwhile count in the next window, whole.
  struct window_totals {
    std::uint64_t samples = 0;
    std::uint64_t sum_ns = 0;
  };
  [[nodiscard]] window_totals take_samples() noexcept {
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    while (!pair.compare_exchange_update(w, sum, w & in_flight_mask, 0)) {
    }
    return {w >> 32, sum};
  }

  /// Gives taken totals back to the open window (a close that was skipped),
  /// saturating at the caps.
  void return_samples(window_totals t) noexcept {
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t n = std::min(max_samples, (w >> 32) + t.samples);
      const std::uint64_t s = sum > max_sum - t.sum_ns ? max_sum : sum + t.sum_ns;
      if (pair.compare_exchange_update(w, sum, (w & in_flight_mask) | (n << 32), s)) return;
    }
  }

  /// Keeps the largest in-flight count of the window; writes only when it grows.
  ARMOR_ALWAYS_INLINE void note_in_flight(std::uint32_t n) noexcept {
    std::uint32_t seen = max_in_flight.load(std::memory_order_relaxed);
    while (n > seen && !max_in_flight.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
  }

  /// Lowers the window's minimum latency to `ns`; writes only when it falls.
  ARMOR_ALWAYS_INLINE void note_min(std::int64_t ns) noexcept {
    std::int64_t low = min_latency_ns.load(std::memory_order_relaxed);
    while (ns < low && !min_latency_ns.compare_exchange_weak(low, ns, std::memory_order_relaxed)) {
    }
  }

  /// Claims the window that started at `start` for closing: true for exactly
  /// one caller. Acquire: the claimer sees what the previous closer wrote
  /// before it published its window start (the algorithm's state).
  [[nodiscard]] bool claim(std::int64_t start) noexcept {
    return window_start.compare_exchange_strong(start, window_closing, std::memory_order_acquire,
                                                std::memory_order_relaxed);
  }

  /// Ends a close: the next window starts at `start`. Release pairs with claim().
  void reopen(std::int64_t start) noexcept { window_start.store(start, std::memory_order_release); }

  // ------------------------------------------------------------------ the queue

  enum class join_result : std::uint8_t { entered, queued, full };

  /// Puts `waiter` at the tail of `level`'s list (0 critical, 1 normal); or,
  /// when nobody of its level or above waits and in flight is below its
  /// threshold, takes a slot at once (entered; `entered_count` is the count
  /// after entering); or refuses (full) when max_queue callers wait already.
  [[nodiscard]] join_result join(queue_waiter& waiter, unsigned level, std::uint32_t& entered_count) noexcept {
    const std::lock_guard lock(queue_mutex);
    // Under the mutex: a closer publishes its thresholds before it takes the
    // mutex to serve the queue, so either it sees this waiter or this reads
    // its thresholds.
    const std::uint32_t cap = threshold_of(thresholds.load(std::memory_order_relaxed), level);
    const std::uint32_t ahead = level == 0 ? waiting[0] : waiting[0] + waiting[1];
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    for (;;) {
      const auto n = static_cast<std::uint32_t>(w & in_flight_bits);
      if (ahead == 0 && n < cap) {
        if (pair.compare_exchange_update(w, sum, w + 1, sum)) {
          entered_count = n + 1;
          return join_result::entered;
        }
        continue;
      }
      if (waiting[0] + waiting[1] >= max_queue.load(std::memory_order_relaxed)) return join_result::full;
      if ((w & queue_flag) != 0) break;  // set: in flight cannot change while we hold the mutex
      if (pair.compare_exchange_update(w, sum, w | queue_flag, sum)) break;
    }
    waiter.granted = false;
    waiter.next = nullptr;
    waiter.prev = tails[level];
    if (tails[level] != nullptr) {
      tails[level]->next = &waiter;
    } else {
      heads[level] = &waiter;
    }
    tails[level] = &waiter;
    ++waiting[level];
    queued_now.store(waiting[0] + waiting[1], std::memory_order_relaxed);
    check_flag_locked();
    return join_result::queued;
  }

  /// Standalone admission while someone waits (the queue bit refused the
  /// lock-free path): takes a slot if nobody of `level` or above waits and
  /// in flight is below its threshold, as join() would, without queueing.
  /// Answers the count after entering, or 0. Only a critical caller can
  /// pass while someone waits (a normal one has waiters ahead of it).
  [[nodiscard]] ARMOR_ADAPTIVE_COLD std::uint32_t try_enter_locked(unsigned level) noexcept {
    const std::lock_guard lock(queue_mutex);
    const std::uint32_t cap = threshold_of(thresholds.load(std::memory_order_relaxed), level);
    const std::uint32_t ahead = level == 0 ? waiting[0] : waiting[0] + waiting[1];
    if (ahead != 0) return 0;
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    for (;;) {
      const auto n = static_cast<std::uint32_t>(w & in_flight_bits);
      if (n >= cap) return 0;
      if (pair.compare_exchange_update(w, sum, w + 1, sum)) return n + 1;
    }
  }

  /// The waiter (of `level`) stops waiting: true if it was granted a slot
  /// meanwhile (it holds it now), false if it left unserved (counted as
  /// abandoned, the owner's hook told outside the mutex).
  [[nodiscard]] bool leave_queue(queue_waiter& waiter, unsigned level) noexcept {
    {
      const std::lock_guard lock(queue_mutex);
      if (waiter.granted) return true;
      unlink(waiter, level);
      serve_locked(0, false, 0);  // clears the bit when the queue is now empty
      abandoned.fetch_add(1, std::memory_order_relaxed);
      check_flag_locked();
    }
    if (on_abandon != nullptr) on_abandon(hook_owner, level);
    return false;
  }

  /// Hands the room a new limit made to the waiters (the closer, after it
  /// published the thresholds).
  void serve_waiters() noexcept {
    const std::lock_guard lock(queue_mutex);
    serve_locked(0, false, 0);
  }

  /// When a granted waiter starts: the owner's clock now, or `otherwise`.
  [[nodiscard]] std::int64_t granted_at(std::int64_t otherwise) const noexcept {
    if (read_now == nullptr) return otherwise;
    const std::int64_t t = read_now(hook_owner);
    return t == std::numeric_limits<std::int64_t>::min() ? otherwise : t;
  }

  [[nodiscard]] std::uint32_t queued() const noexcept { return queued_now.load(std::memory_order_relaxed); }

 private:
  // The slow half of leave(): the queue bit was set when we looked.
  ARMOR_ADAPTIVE_COLD void release_to_queue(bool timed, std::uint64_t add) noexcept {
    const std::lock_guard lock(queue_mutex);
    serve_locked(1, timed, add);
  }

  // Debug builds only (assert): the queue's invariant, checked under
  // queue_mutex after every change to the lists. The queue bit is set exactly
  // when someone waits (a bit left set refuses the fast path for nothing; a
  // bit left clear lets releases pass waiters by).
  void check_flag_locked() const noexcept {
    assert(((pair.first.load(std::memory_order_relaxed) & queue_flag) != 0) == (waiting[0] + waiting[1] != 0) &&
           "adaptive_limit queue: the queue bit is out of step with the lists");
  }
  // And after serving with thresholds `th` (a newer limit is served by its
  // closer, which waits for the mutex): no waiter could be served, each
  // non-empty list's threshold is reached. A waiter left here is a lost wake-up.
  void check_served_locked([[maybe_unused]] std::uint64_t th) const noexcept {
    check_flag_locked();
    [[maybe_unused]] const auto n = static_cast<std::uint32_t>(pair.first.load(std::memory_order_relaxed) & in_flight_bits);
    assert((waiting[0] == 0 || n >= threshold_of(th, 0)) && "adaptive_limit queue: a critical waiter left unserved");
    assert((waiting[1] == 0 || n >= threshold_of(th, 1)) && "adaptive_limit queue: a normal waiter left unserved");
  }

  void unlink(queue_waiter& waiter, unsigned level) noexcept {
    if (waiter.prev != nullptr) {
      waiter.prev->next = waiter.next;
    } else {
      heads[level] = waiter.next;
    }
    if (waiter.next != nullptr) {
      waiter.next->prev = waiter.prev;
    } else {
      tails[level] = waiter.prev;
    }
    waiter.prev = waiter.next = nullptr;
    --waiting[level];
  }

  // Under queue_mutex. In one CAS: gives back `released` slots (0 or 1; with
  // the call's sample when `timed`), hands the room under each threshold to
  // the heads of the lists (critical first; a granted slot stays counted),
  // and sets the queue bit to whether anyone still waits. Then grants and
  // wakes those waiters (under the mutex, as queue_waiter asks). Only the
  // closer's sample changes can make the CAS fail: the lists cannot change.
  void serve_locked(std::uint32_t released, bool timed, std::uint64_t add) noexcept {
    const std::uint64_t th = thresholds.load(std::memory_order_relaxed);
    std::uint64_t w = pair.first.load(std::memory_order_relaxed);
    std::uint64_t sum = pair.second.load(std::memory_order_relaxed);
    std::uint32_t grant[2] = {0, 0};
    std::uint32_t n = 0;
    for (;;) {
      n = static_cast<std::uint32_t>(w & in_flight_bits) - released;
      for (unsigned level = 0; level < 2; ++level) {
        const std::uint32_t cap = threshold_of(th, level);
        grant[level] = n < cap ? std::min(waiting[level], cap - n) : 0;
        n += grant[level];
      }
      const bool still = waiting[0] + waiting[1] != grant[0] + grant[1];
      std::uint64_t high = w & ~in_flight_mask;
      std::uint64_t s = sum;
      if (timed && (w >> 32) < max_samples && sum <= max_sum - add) {
        high += one_sample;
        s += add;
      }
      const std::uint64_t next = high | n | (still ? queue_flag : 0);
      // A slot passed straight from the releaser to a waiter leaves the first
      // half as it was: no CAS needed then. Only untimed: w and sum come from
      // two loads, and a timed release decided its room from both, so only
      // the CAS can confirm they belong together.
      if ((!timed && next == w) || pair.compare_exchange_update(w, sum, next, s)) break;
    }
    if (grant[0] + grant[1] != 0) {
      note_in_flight(n);
      if (count_calls) admitted.fetch_add(grant[0] + grant[1], std::memory_order_relaxed);
    }
    for (unsigned level = 0; level < 2; ++level) {
      for (std::uint32_t i = 0; i < grant[level]; ++i) {
        queue_waiter* head = heads[level];
        unlink(*head, level);
        head->granted = true;
        head->wake();
      }
    }
    queued_now.store(waiting[0] + waiting[1], std::memory_order_relaxed);
    check_served_locked(th);
  }

 public:
  // Counters the queue also writes (a granted waiter is an admission).
  std::atomic<std::uint64_t> admitted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> abandoned{0};
  bool count_calls = false;   // set before sharing
  // Set before sharing; changed by reconfigure() (relaxed: a value of its own).
  std::atomic<std::uint32_t> max_queue{0};

  /// The owner's hooks, set before sharing (and again when the owner moves):
  /// told when a waiter abandons (with its level), and asked the time when a
  /// granted waiter starts (int64 min: unknown).
  void* hook_owner = nullptr;
  void (*on_abandon)(void* owner, unsigned level) noexcept = nullptr;
  std::int64_t (*read_now)(const void* owner) noexcept = nullptr;

 private:
  alignas(cache_line) std::mutex queue_mutex;  // the lists; never taken while nobody waits
  queue_waiter* heads[2] = {nullptr, nullptr};
  queue_waiter* tails[2] = {nullptr, nullptr};
  std::uint32_t waiting[2] = {0, 0};
  std::atomic<std::uint32_t> queued_now{0};  // waiting[0] + waiting[1], for stats
};

}  // namespace armor::detail
