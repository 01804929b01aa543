// armor/detail/sharded_counter.hpp: a number per thread, and a counter
// split over cache lines by it, for tallies that many threads may bump at
// once (histograms, the refusals of a keyed map under a flood).
#pragma once

#include <armor/detail/config.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace armor::detail {

/// A number per thread, handed out in the order threads first ask: threads
/// take shards round-robin, so up to `shards` threads never share one.
[[nodiscard]] inline std::size_t this_thread_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  // Relaxed: only distinctness matters, which the atomic addition gives.
  thread_local const std::size_t slot = next.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

/// A counter of `Shards` (a power of two) relaxed atomics, each on its own
/// cache line: add() touches the calling thread's; load() adds them up (a
/// statistic: consistent shard by shard, not as a whole).
template <std::size_t Shards = 8>
class sharded_counter {
  static_assert(Shards > 0 && (Shards & (Shards - 1)) == 0, "Shards must be a power of two");

 public:
  sharded_counter() noexcept = default;
  /// Copies the sum into the first shard (for a policy's move constructor).
  sharded_counter(const sharded_counter& other) noexcept { cells_[0].n.store(other.load(), std::memory_order_relaxed); }
  sharded_counter& operator=(const sharded_counter&) = delete;

  void add(std::uint64_t n = 1) noexcept {
    // Relaxed: an independent tally read only for statistics.
    cells_[this_thread_slot() & (Shards - 1)].n.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t load() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& c : cells_) sum += c.n.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(cache_line) cell {
    std::atomic<std::uint64_t> n{0};
  };
  cell cells_[Shards]{};
};

}  // namespace armor::detail
