// armor/detail/bulkhead_state.hpp: the shared state of a bulkhead.
// Not API: anything here may change without notice.
//
// One std::atomic<uint64_t> holds both counts: the calls inside (low 32
// bits) and the callers waiting in the queue (high 32 bits). Two rules keep
// the fast path to one CAS and make the queue fair:
//
//   - a caller enters at once only when a slot is free AND nobody is queued
//     (so a newcomer never overtakes a waiter);
//   - nobody queues while a slot is free, so `queued > 0` implies
//     `inside == max_inside`.
//
// Entering and leaving without waiters are one CAS each on the word. Every
// change to the queue (joining it, leaving it unserved, handing a released
// slot to its head) happens under `mutex`; while the queue is not empty the
// fast paths cannot change the word (their CAS sees `queued > 0` and fails),
// so a holder of the lock can rely on it. A released slot goes straight to
// the head of the queue: `inside` stays at the maximum and `queued` drops by
// one, and the waiter is told by its wake-up. A waiter that gives up takes
// the lock, and either finds it was granted meanwhile (then it holds the
// slot) or unlinks itself: a slot is never handed to a waiter that has left,
// and never lost.
//
// The limits (max_inside, max_queue, max_wait) live in a
// config cell (config_cell.hpp), read whole once per decision, so that a
// reconfiguration lands between decisions. A lowered max_inside lets the
// calls inside finish: a released slot goes back (not to a waiter) while
// inside > max_inside. A raised one hands the new slots to waiters at once
// (reconfigure(), under the lock). So `queued > 0` implies
// `inside >= max_inside` outside that lock.
//
// The bulkhead sets an abandon hook: leave() calls it, after the lock is
// released, when a waiter left unserved (the permit that holds the place
// knows the state, not the bulkhead), to count it and tell its listener. A
// state without a hook tests it once; the hook's two pointers sit in the
// padding of the cache-line-aligned state, so the state does not grow.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/policy.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>

#if defined(__GNUC__) || defined(__clang__)
#define ARMOR_BULKHEAD_COLD __attribute__((noinline, cold))
#else
#define ARMOR_BULKHEAD_COLD
#endif

namespace armor::detail {

/// A bulkhead's limits, as one value (read whole: see config_cell.hpp).
struct bulkhead_limits {
  std::uint32_t max_inside = 1;
  std::uint32_t max_queue = 0;
  std::int64_t max_wait_ns = 0;
};

class bulkhead_state {
 public:
  static constexpr std::uint64_t one_inside = 1;
  static constexpr std::uint64_t one_queued = std::uint64_t{1} << 32;

  using limits = bulkhead_limits;

  explicit bulkhead_state(const limits& l) noexcept : limits_(l) {}

  /// Not thread-safe (a bulkhead is moved before it is shared); the queue
  /// must be empty. The abandon hook is not copied (its new owner sets its
  /// own).
  bulkhead_state(const bulkhead_state& other) noexcept
      : word_(other.word_.load(std::memory_order_relaxed)), limits_(other.limits_) {}
  bulkhead_state& operator=(const bulkhead_state&) = delete;
  ~bulkhead_state() = default;

  static constexpr std::uint32_t inside(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
  static constexpr std::uint32_t queued(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }

  [[nodiscard]] std::uint64_t load() const noexcept { return word_.load(std::memory_order_acquire); }
  /// The limits now, read whole.
  [[nodiscard]] limits config() const noexcept { return limits_.load(); }

  /// Replaces the limits. When max_inside grows, waiters take the new slots
  /// now (in queue order); when it shrinks, calls inside finish as usual and
  /// no new one enters until inside < max_inside.
  void reconfigure(const limits& l) noexcept {
    const std::lock_guard lock(mutex_);  // not a hot path; orders against join() and hand_over()
    limits_.store(l);
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    while (queued(w) != 0 && inside(w) < l.max_inside) {
      // Under the lock, with someone queued, the fast paths cannot change the word.
      if (!word_.compare_exchange_weak(w, w + one_inside - one_queued, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
        continue;
      }
      w = w + one_inside - one_queued;
      queue_waiter* head = head_;
      unlink(*head);
      head->granted = true;
      head->wake();
    }
  }

  /// Takes a slot if one is free and nobody waits. A refusal writes nothing.
  [[nodiscard]] ARMOR_ALWAYS_INLINE bool try_enter(std::uint32_t max_inside) noexcept {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    do {
      if (inside(w) >= max_inside || queued(w) != 0) return false;
    } while (!word_.compare_exchange_weak(w, w + one_inside, std::memory_order_acquire, std::memory_order_relaxed));
    return true;
  }

  /// Gives a slot back: to the head of the queue if someone waits.
  ARMOR_ALWAYS_INLINE void release() noexcept {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    while (queued(w) == 0) {
      if (word_.compare_exchange_weak(w, w - one_inside, std::memory_order_release, std::memory_order_relaxed)) return;
    }
    hand_over();
  }

  /// Told, outside the lock, that a waiter left the queue unserved; gets
  /// the owner given to set_abandon_hook() and the word after it left.
  using abandon_hook = void (*)(void* owner, std::uint64_t word) noexcept;

  /// Not thread-safe: set before the state is shared.
  void set_abandon_hook(abandon_hook hook, void* owner) noexcept {
    hook_ = hook;
    hook_owner_ = owner;
  }

  enum class join_result : std::uint8_t { entered, queued, full };

  /// Puts `waiter` at the tail of the queue; or, if a slot came free and
  /// nobody waits, takes it at once (entered); or refuses (full) when the
  /// queue holds max_queue waiters already.
  /// `l` receives the limits it decided with: read under the lock, so that a
  /// reconfigure() that served the queue cannot leave this waiter queued
  /// behind free slots.
  [[nodiscard]] join_result join(queue_waiter& waiter, limits& l) noexcept {
    const std::lock_guard lock(mutex_);
    l = limits_.load();
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (queued(w) == 0 && inside(w) < l.max_inside) {
        if (word_.compare_exchange_weak(w, w + one_inside, std::memory_order_acquire, std::memory_order_relaxed)) {
          return join_result::entered;
        }
        continue;
      }
      if (queued(w) >= l.max_queue) return join_result::full;
      // inside == max here; while queued was 0 the fast paths may still
      // change the word, hence the CAS.
      if (word_.compare_exchange_weak(w, w + one_queued, std::memory_order_relaxed, std::memory_order_relaxed)) break;
    }
    waiter.granted = false;
    waiter.next = nullptr;
    waiter.prev = tail_;
    if (tail_ != nullptr) {
      tail_->next = &waiter;
    } else {
      head_ = &waiter;
    }
    tail_ = &waiter;
    return join_result::queued;
  }

  /// The waiter stops waiting: true if it was granted a slot meanwhile (it
  /// now holds it), false if it left the queue unserved.
  [[nodiscard]] bool leave(queue_waiter& waiter) noexcept {
    std::uint64_t after = 0;
    {
      const std::lock_guard lock(mutex_);
      if (waiter.granted) return true;
      unlink(waiter);
      after = word_.fetch_sub(one_queued, std::memory_order_relaxed) - one_queued;
    }
    if (hook_ != nullptr) hook_(hook_owner_, after);
    return false;
  }

 private:
  void unlink(queue_waiter& waiter) noexcept {
    if (waiter.prev != nullptr) {
      waiter.prev->next = waiter.next;
    } else {
      head_ = waiter.next;
    }
    if (waiter.next != nullptr) {
      waiter.next->prev = waiter.prev;
    } else {
      tail_ = waiter.prev;
    }
    waiter.prev = waiter.next = nullptr;
  }

  // The slow half of release(): someone was queued when we looked.
  ARMOR_BULKHEAD_COLD void hand_over() noexcept {
    const std::lock_guard lock(mutex_);
    const std::uint32_t max_inside = limits_.load().max_inside;  // stable: reconfigure() takes the lock
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (queued(w) == 0 || inside(w) > max_inside) {
        // The last waiter left before we got the lock, or a lowered limit:
        // the slot goes back instead of to a waiter.
        if (word_.compare_exchange_weak(w, w - one_inside, std::memory_order_release, std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      // Queued and holding the lock: nobody else can change the word now.
      word_.fetch_sub(one_queued, std::memory_order_acq_rel);
      queue_waiter* head = head_;
      unlink(*head);
      head->granted = true;
      head->wake();
      return;
    }
  }

  alignas(cache_line) std::atomic<std::uint64_t> word_{0};
  config_cell<limits> limits_;
  std::mutex mutex_;  // the queue; never taken while nobody waits
  queue_waiter* head_ = nullptr;
  queue_waiter* tail_ = nullptr;
  abandon_hook hook_ = nullptr;  // set by the bulkhead that owns the state
  void* hook_owner_ = nullptr;
};

/// The counters a bulkhead keeps for its stats (detail::counter_set).
enum class bulkhead_tally : std::uint8_t { rejected, abandoned, count };

}  // namespace armor::detail
