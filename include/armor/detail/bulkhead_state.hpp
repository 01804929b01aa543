// armor/detail/bulkhead_state.hpp: the shared state of a bulkhead.
// Not API: anything here may change without notice.
//
// One std::atomic<uint64_t> holds both counts: the calls inside (low 32
// bits) and the callers waiting in the queue (high 32 bits). Two rules keep
// the fast path to a counter and make the queue fair:
//
//   - a caller enters at once only when a slot is free AND nobody is queued
//     (so a newcomer never overtakes a waiter): one load and one CAS, and
//     since `queued` is the high half, "free and nobody queued" is the one
//     comparison `word < max_inside`;
//   - leaving is one fetch_sub of one inside, whoever waits; only when the
//     word it replaced had someone queued does the caller go on to the slow
//     path, take the lock and hand the freed slot to the head of the queue.
//
// `queued` changes only under `mutex` (joining the queue, leaving it
// unserved, being served); `inside` grows without the lock only while
// nobody is queued (the CAS above), and shrinks without it at any time (a
// release). So, under the lock, while someone is queued the word can only
// lose calls inside, and a holder of the lock serves the queue with one
// fetch_add per waiter (one more inside, one fewer queued) as long as
// inside < max_inside. Between a release's fetch_sub and its serving, a
// slot may be free while someone is queued; nobody can take it (the CAS
// sees `queued > 0`), and the release serves it once it has the lock (it
// serves everyone the free slots allow, so several releases racing to the
// lock hand over each slot once). Outside that window `queued > 0` implies
// `inside >= max_inside`. A served waiter is told by its wake-up; a waiter
// that gives up takes the lock and either finds it was granted meanwhile
// (then it holds the slot) or unlinks itself: a slot is never handed to a
// waiter that has left, and never lost.
//
// The limits live in two places: max_inside and max_queue, the only ones a
// decision without the lock reads, in one word (a config cell,
// config_cell.hpp: one relaxed load); max_wait beside it. reconfigure()
// stores both under the lock, so a reader holding the lock (join(), the
// hand-over) sees one reconfiguration whole. A lowered max_inside lets the
// calls inside finish: a released slot goes back (not to a waiter) while
// inside >= max_inside after it. A raised one hands the new slots to
// waiters at once (reconfigure(), under the lock).
//
// Layout: the word, the lock and the queue links fill the first 64 bytes
// (written by every call; the rest only when someone queues); the limits
// and the abandon hook sit in the next 64, written only by reconfigure()
// and construction, so a call on another core that writes the word does
// not take the limits' line away from a reader. The state stays one
// cache_line (128 bytes on x86-64), as before.
//
// The bulkhead sets an abandon hook: leave() calls it, after the lock is
// released, when a waiter left unserved (the permit that holds the place
// knows the state, not the bulkhead), to count it and tell its listener. A
// state without a hook tests it once.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/policy.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>

// Out of line, but not `cold`: GCC then takes every path that may reach
// the function for cold too, and moved the whole release (which reaches
// serve() only when someone is queued) to the cold section. The branches
// that lead to these carry ARMOR_UNLIKELY instead.
#if defined(__GNUC__) || defined(__clang__)
#define ARMOR_BULKHEAD_COLD __attribute__((noinline))
#define ARMOR_BULKHEAD_NOINLINE __attribute__((noinline))
#else
#define ARMOR_BULKHEAD_COLD
#define ARMOR_BULKHEAD_NOINLINE
#endif

namespace armor::detail {

/// A bulkhead's limits, as one value.
struct bulkhead_limits {
  std::uint32_t max_inside = 1;
  std::uint32_t max_queue = 0;
  std::int64_t max_wait_ns = 0;
};

/// The limits a decision without the lock reads: one word (trivial, as a
/// config cell's value must be).
struct bulkhead_admit_limits {
  std::uint32_t max_inside;
  std::uint32_t max_queue;
};

class bulkhead_state {
 public:
  static constexpr std::uint64_t one_inside = 1;
  static constexpr std::uint64_t one_queued = std::uint64_t{1} << 32;

  using limits = bulkhead_limits;
  using admit_limits = bulkhead_admit_limits;

  explicit bulkhead_state(const limits& l) noexcept
      : admit_(admit_limits{l.max_inside, l.max_queue}), max_wait_ns_(l.max_wait_ns) {}

  /// Not thread-safe (a bulkhead is moved before it is shared); the queue
  /// must be empty. The abandon hook is not copied (its new owner sets its
  /// own).
  bulkhead_state(const bulkhead_state& other) noexcept
      : word_(other.word_.load(std::memory_order_relaxed)), admit_(other.admit_), max_wait_ns_(other.max_wait_ns_) {}
  bulkhead_state& operator=(const bulkhead_state&) = delete;
  ~bulkhead_state() = default;

  static constexpr std::uint32_t inside(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
  static constexpr std::uint32_t queued(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }

  [[nodiscard]] std::uint64_t load() const noexcept { return word_.load(std::memory_order_acquire); }
  /// max_inside and max_queue now, read whole (one relaxed load).
  [[nodiscard]] ARMOR_ALWAYS_INLINE admit_limits admit_config() const noexcept { return admit_.load(); }
  /// The limits now. max_inside and max_queue are read whole; max_wait
  /// apart from them (outside the lock, a reconfiguration may fall
  /// between; under it, it cannot).
  [[nodiscard]] limits config() const noexcept {
    const admit_limits a = admit_.load();
    return {a.max_inside, a.max_queue, max_wait_ns_.load()};
  }

  /// Replaces the limits. When max_inside grows, waiters take the new slots
  /// now (in queue order); when it shrinks, calls inside finish as usual and
  /// no new one enters until inside < max_inside.
  void reconfigure(const limits& l) noexcept {
    const std::lock_guard lock(mutex_);  // not a hot path; orders against join() and serve()
    max_wait_ns_.store(l.max_wait_ns);
    admit_.store(admit_limits{l.max_inside, l.max_queue});
    serve_locked(l.max_inside);
  }

  /// Takes a slot if one is free and nobody waits. A refusal writes nothing.
  [[nodiscard]] ARMOR_ALWAYS_INLINE bool try_enter(std::uint32_t max_inside) noexcept {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    do {
      // queued is the high half: below max_inside means nobody queued and a slot free.
      if (w >= max_inside) return false;
    } while (!word_.compare_exchange_weak(w, w + one_inside, std::memory_order_acquire, std::memory_order_relaxed));
    return true;
  }

  /// Gives a slot back: one fetch_sub; and, if someone was queued, hands
  /// the slot to the head of the queue (under the lock).
  ARMOR_ALWAYS_INLINE void release() noexcept {
    const std::uint64_t before = word_.fetch_sub(one_inside, std::memory_order_release);
    if (ARMOR_UNLIKELY(queued(before) != 0)) serve();
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
    l = config();  // whole: reconfigure() stores under the lock
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (queued(w) == 0 && inside(w) < l.max_inside) {
        if (word_.compare_exchange_weak(w, w + one_inside, std::memory_order_acquire, std::memory_order_relaxed)) {
          return join_result::entered;
        }
        continue;
      }
      // Someone is queued (a slot a release freed is theirs: it serves
      // them once it has the lock), or every slot is taken.
      if (queued(w) >= l.max_queue) return join_result::full;
      // Without the lock the word may still lose calls inside, or (while
      // nobody is queued) gain them: hence the CAS.
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

  // The slow half of release(): someone was queued when it gave its slot back.
  ARMOR_BULKHEAD_COLD void serve() noexcept {
    const std::lock_guard lock(mutex_);
    serve_locked(admit_.load().max_inside);  // stable: reconfigure() takes the lock
  }

  // Under the lock: hands free slots to the head of the queue, one by one,
  // while someone is queued and inside < max_inside. `queued` cannot change
  // meanwhile (we hold the lock) and `inside` can only drop (no CAS enters
  // while someone is queued), so each check stays true until its fetch_add.
  void serve_locked(std::uint32_t max_inside) noexcept {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    while (queued(w) != 0 && inside(w) < max_inside) {
      // One more inside, one fewer queued. Acquire: the slot's last holder
      // released it; the waiter sees its work through the lock and wake().
      w = word_.fetch_add(one_inside - one_queued, std::memory_order_acq_rel) + (one_inside - one_queued);
      queue_waiter* head = head_;
      unlink(*head);
      head->granted = true;
      head->wake();
    }
  }

  // First line: written by every call (the word), and by queueing callers.
  alignas(cache_line) std::atomic<std::uint64_t> word_{0};
  std::mutex mutex_;  // the queue; never taken while nobody waits
  queue_waiter* head_ = nullptr;
  queue_waiter* tail_ = nullptr;
  // The next 64-byte line (the state is 128 bytes, as before): read by
  // every call, written by reconfigure() only.
  alignas(64) config_cell<admit_limits> admit_;
  config_cell<std::int64_t> max_wait_ns_;
  abandon_hook hook_ = nullptr;  // set by the bulkhead that owns the state
  void* hook_owner_ = nullptr;
};

/// The counters a bulkhead keeps for its stats (detail::counter_set).
enum class bulkhead_tally : std::uint8_t { rejected, abandoned, count };

}  // namespace armor::detail
