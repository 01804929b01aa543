// armor/detail/cache_table.hpp: the storage behind armor::cache. Nothing
// here is named by users; docs/cache.md describes the design.
//
// A shard is a set-associative table: 2^k buckets of `ways` slots each. A key
// lives in one bucket (by hash) and in any of its ways. A slot carries a pin
// word: readers add one while they copy the entry, a writer (who also holds
// the shard's mutex) sets the writer bit and waits for the readers already
// in to leave, and readers that meet the bit give up and take the slow path. Readers never wait and
// never write anything but the pin and the CLOCK reference bit.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/time.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace armor::detail {

inline constexpr std::size_t cache_ways = 8;
inline constexpr std::uint32_t cache_writer_bit = 0x8000'0000U;

/// Absolute instants (nanoseconds on the cache's clock) that bound what an
/// entry may be used for.
struct cache_times {
  std::int64_t stored_at = 0;
  std::int64_t fresh_until = 0;       // answers without a call before this
  std::int64_t revalidate_until = 0;  // answers stale (and refreshes) before this
  std::int64_t error_until = 0;       // answers stale on a failed call before this

  [[nodiscard]] std::int64_t expires() const noexcept { return std::max(revalidate_until, error_until); }
};

template <class Key, class T>
struct alignas(64) cache_slot {
  // Readers: fetch_add(1, acquire) then fetch_sub(1, release); the acquire
  // pairs with the writer's release of the bit, so a reader that got in sees
  // everything the last writer wrote. A writer sets the bit first (so that
  // no new reader gets in: a stream of readers cannot starve it), then waits
  // with acquire loads for the count to reach 0 (pairing with the readers'
  // release, so their reads of the fields happen before its writes).
  std::atomic<std::uint32_t> pin{0};
  // CLOCK's second chance: set by hits (relaxed: a hint for eviction, which
  // reads it under the shard's mutex and tolerates a stale value).
  std::atomic<std::uint8_t> referenced{0};
  // Set by the one stale reader that is to start the entry's refresh
  // (exchange, acq_rel: exactly one reader wins); cleared by a writer that
  // stores a new value, or under the mutex when the refresh ends without one.
  std::atomic<std::uint8_t> refreshing{0};
  bool used = false;
  std::uint64_t hash = 0;
  std::optional<Key> key;
  std::shared_ptr<const T> value;
  cache_times times;
  std::uint64_t generation = 0;  // the shard's store count when stored here
  std::size_t bytes = 0;

  /// A reader's pin. False: a writer is there (the caller takes the slow path).
  [[nodiscard]] bool try_pin() noexcept {
    if ((pin.fetch_add(1, std::memory_order_acquire) & cache_writer_bit) == 0) return true;
    pin.fetch_sub(1, std::memory_order_release);
    return false;
  }
  void unpin() noexcept { pin.fetch_sub(1, std::memory_order_release); }

  /// A writer's lock, taken under the shard's mutex: waits for the readers
  /// in the slot (each copies one entry and leaves) to go.
  void lock_for_write() noexcept {
    // Only one writer at a time (the mutex): the bit is clear here. Readers
    // that arrive from now on back off (try_pin undoes its add at once).
    std::uint32_t seen = pin.fetch_or(cache_writer_bit, std::memory_order_acquire);
    for (unsigned spins = 0; (seen & ~cache_writer_bit) != 0; ++spins) {
      if (spins > 64) std::this_thread::yield();
      seen = pin.load(std::memory_order_acquire);
    }
  }
  void unlock_for_write() noexcept { pin.fetch_sub(cache_writer_bit, std::memory_order_release); }

  /// True for the one caller that is to refresh this (stale) entry.
  [[nodiscard]] bool claim_refresh() noexcept {
    return refreshing.load(std::memory_order_relaxed) == 0 &&
           refreshing.exchange(1, std::memory_order_acq_rel) == 0;
  }

  void touch() noexcept {
    // Read first: a hot entry's bit is already set, and a load does not
    // take the cache line away from the other readers.
    if (referenced.load(std::memory_order_relaxed) == 0) referenced.store(1, std::memory_order_relaxed);
  }
};

/// The tag a bucket keeps for a hash: its high half, never 0 (0 = empty way).
[[nodiscard]] constexpr std::uint32_t cache_tag(std::uint64_t h) noexcept {
  return static_cast<std::uint32_t>(h >> 32) | 1U;
}

/// std::hash of an integer is often the integer: mix the bits, so that
/// shard, bucket and tag each get bits of their own.
[[nodiscard]] constexpr std::uint64_t cache_mix(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

[[nodiscard]] constexpr std::size_t cache_pow2_at_least(std::size_t n) noexcept {
  std::size_t p = 1;
  while (p < n) p <<= 1U;
  return p;
}

}  // namespace armor::detail
