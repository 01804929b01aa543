// armor/detail/counter_set.hpp: a set of relaxed atomic counters indexed by
// an enumeration, and their snapshot. The one place the pattern "struct of
// atomics, bumped relaxed, read one by one for stats()" is written.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace armor::detail {

/// Counters named by the enumerators of `E`, which must end with `count`.
/// Relaxed everywhere: each counter is an independent tally read only for
/// statistics, so no ordering with anything else is needed. Copying reads
/// each counter once (a snapshot, consistent counter by counter).
template <class E>
  requires std::is_enum_v<E>
class counter_set {
 public:
  static constexpr std::size_t size = static_cast<std::size_t>(E::count);

  counter_set() noexcept = default;
  counter_set(const counter_set& other) noexcept {
    for (std::size_t i = 0; i < size; ++i) c_[i].store(other.c_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  counter_set& operator=(const counter_set&) = delete;

  void add(E which, std::uint64_t n = 1) noexcept {
    c_[static_cast<std::size_t>(which)].fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t load(E which) const noexcept {
    return c_[static_cast<std::size_t>(which)].load(std::memory_order_relaxed);
  }
  /// Sets every counter to zero (not atomic as a whole).
  void clear() noexcept {
    for (auto& c : c_) c.store(0, std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<std::uint64_t>, size> c_{};
};

}  // namespace armor::detail
