// armor/detail/host_set_state.hpp: what a host set shares with its permits:
// each host's state, the published list of hosts, and the read-side guard
// that lets a writer know when no pick still reads an old list.
// Not API: anything here may change without notice.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/counter_set.hpp>

#include <atomic>
#include <bit>
#include <cassert>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace armor::detail {

/// One host's state. Lives while some published list names it; once
/// unlisted, the first update() that finds no permit holding it (`pending`
/// counts the permits) frees it, or else the host set's destructor.
struct alignas(cache_line) host_state {
  explicit host_state(std::string name, std::int64_t now, double latency_ns)
      : id(std::move(name)), estimate(std::bit_cast<std::uint64_t>(latency_ns)), stamp(now) {}

  const std::string id;
  // Calls picked and not yet recorded. Incremented inside a read-side
  // section (so a writer past its grace period sees every increment),
  // decremented with release as a permit's last touch of this state.
  std::atomic<std::int64_t> pending{0};
  // The peak-EWMA latency estimate (a double, in ns) and the time of its
  // last observation. Updated with a compare-exchange and an exchange: each
  // observation is applied once; concurrent ones are applied in some order.
  std::atomic<std::uint64_t> estimate;
  std::atomic<std::int64_t> stamp;
  // Streaks and the counts of the current interval (relaxed: tallies).
  std::atomic<std::uint32_t> consecutive{0};
  std::atomic<std::uint32_t> consecutive_gateway{0};
  std::atomic<std::uint64_t> interval_successes{0};
  std::atomic<std::uint64_t> interval_failures{0};
  // Ejection state: written only by the judge (the holder of
  // host_set_core::judging), read relaxed by picks (a pick that sees a
  // stale flag picks as it would have a moment before).
  std::atomic<bool> ejected{false};
  std::atomic<std::int64_t> ejected_until{0};
  std::atomic<std::uint32_t> multiplier{0};
  std::atomic<std::uint64_t> times_ejected{0};
  // An ejection owed by a record() that found the judge busy: the reason
  // + 1, or 0. Taken (exchanged to 0) by the judge.
  std::atomic<std::uint8_t> owed_ejection{0};
  // Active health checks (armor/health_check.hpp): failing them keeps the
  // host out of picks as an ejection does; a passed check may owe the judge
  // an early return from an ejection (taken by the judge).
  std::atomic<bool> failing_active{false};
  std::atomic<bool> owed_return{false};
  // The judge's copies of the interval counts (the judge's alone).
  std::uint64_t judged_successes = 0;
  std::uint64_t judged_failures = 0;
};

/// One published host: its state and its weight in this list.
struct host_entry {
  host_state* state = nullptr;
  std::uint32_t weight = 1;
};

/// An immutable list of hosts, published whole.
struct host_list {
  std::vector<host_entry> hosts;
};

enum class host_set_counter : std::uint8_t { picks, panic_picks, no_host, ejections, ejections_capped, updates, count };

/// What a host set shares with its permits; allocated once, so permits stay
/// valid when the host set is moved.
struct host_set_core {
  std::atomic<host_list*> current{nullptr};
  // Read-side sections (a two-slot epoch scheme): a reader announces itself
  // in readers[epoch & 1] and checks the epoch did not move; a writer that
  // published a new list advances the epoch and waits until the old slot
  // drains, after which no reader can still hold the old list.
  alignas(cache_line) std::atomic<std::uint64_t> epoch{0};
  alignas(cache_line) std::atomic<std::int64_t> readers0{0};
  alignas(cache_line) std::atomic<std::int64_t> readers1{0};
  alignas(cache_line) std::atomic<std::int64_t> next_evaluation{0};
  std::atomic<bool> judging{false};
  // Work left for the judge by a call that found `judging` taken: set after
  // the work is written down (owed_evaluation, a host's owed_ejection) and
  // before trying `judging`; the judge clears it before doing the work and
  // reads it again after letting go of `judging` (seq_cst on both sides, so
  // either the caller takes `judging` or the judge sees the flag).
  std::atomic<bool> owed{false};
  std::atomic<std::int64_t> owed_evaluation{0};  // the time of an evaluation owed, or 0
  std::atomic<std::uint64_t> turn{0};  // round robin, least-pending tie breaks
  alignas(cache_line) counter_set<host_set_counter> counters;

  // Writer side (update, destructor): guarded by `writer`.
  std::mutex writer;
  std::vector<std::unique_ptr<host_state>> owned;  // every state not yet freed
  std::unique_ptr<host_list> list;                 // what `current` points to

  host_set_core() = default;
  host_set_core(const host_set_core&) = delete;
  host_set_core& operator=(const host_set_core&) = delete;
  // A permit still holding a host would record into freed memory.
  ~host_set_core() {
#ifndef NDEBUG
    for (const std::unique_ptr<host_state>& s : owned) {
      assert(s->pending.load(std::memory_order_acquire) == 0 && "armor::host_set destroyed while a permit holds a host");
    }
#endif
  }

  /// States not yet freed, listed or not (for tests).
  std::size_t states() {
    const std::scoped_lock lock(writer);
    return owned.size();
  }

  std::atomic<std::int64_t>& readers(std::uint64_t e) noexcept { return (e & 1) == 0 ? readers0 : readers1; }

  /// Enters a read-side section; returns the slot to leave.
  std::uint64_t enter() noexcept {
    for (;;) {
      const std::uint64_t e = epoch.load(std::memory_order_seq_cst);
      readers(e).fetch_add(1, std::memory_order_seq_cst);
      // seq_cst pairs with the writer's epoch store and readers load: either
      // this reader sees the new epoch (and retries on the new slot) or the
      // writer sees this reader in the old slot and waits for it.
      if (epoch.load(std::memory_order_seq_cst) == e) return e;
      readers(e).fetch_sub(1, std::memory_order_release);
    }
  }
  /// Leaves a read-side section (release: what the reader did happens
  /// before the writer's grace period ends).
  void leave(std::uint64_t e) noexcept { readers(e).fetch_sub(1, std::memory_order_release); }

  /// Publishes `next` (the writer holds `writer`), waits until no reader
  /// holds the old list, then frees it and every unlisted state no permit holds.
  void publish(std::unique_ptr<host_list> next) {
    current.store(next.get(), std::memory_order_seq_cst);
    std::unique_ptr<host_list> old = std::exchange(list, std::move(next));
    const std::uint64_t e = epoch.load(std::memory_order_relaxed);
    epoch.store(e + 1, std::memory_order_seq_cst);
    // A reader preempted inside its section only delays this writer.
    while (readers(e).load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    old.reset();
    std::erase_if(owned, [&](const std::unique_ptr<host_state>& s) {
      for (const host_entry& h : list->hosts) {
        if (h.state == s.get()) return false;
      }
      return s->pending.load(std::memory_order_acquire) == 0;
    });
  }

  /// A reader's guard.
  class guard {
   public:
    explicit guard(host_set_core& c) noexcept : core_(c), slot_(c.enter()) {}
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    ~guard() { core_.leave(slot_); }

   private:
    host_set_core& core_;
    std::uint64_t slot_;
  };
};

/// Lets tests reach a host set's core.
struct host_set_peek {
  template <class HostSet>
  static host_set_core& core(HostSet& h) noexcept {
    return *h.core_;
  }
};

}  // namespace armor::detail
