// armor/detail/key_tally.hpp: a count per key for the first N keys counted,
// and one shared count for every other key (armor::keyed's refusals per
// key, exported with a bound on the number of series).
#pragma once

#include <armor/detail/sharded_counter.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

namespace armor::detail {

/// Counts events per key for the first `keys` distinct keys it sees; keys
/// seen later, keys longer than max_key_size, the key "other" (so that its
/// series is never written twice) and a key met while another thread is
/// still storing it are counted together in other(). A key, once it has its
/// own count, keeps it for the life of the tally: every count only grows,
/// which is what a Prometheus counter series needs.
///
/// add() takes no lock and allocates nothing: an insert-only open-addressed
/// table (twice as many slots as keys, so probes stay short), each slot
/// claimed once with a compare-and-swap and published with a release
/// store; later readers find it with an acquire load. Memory: 88 bytes a
/// slot, bit_ceil(2 x keys) slots, plus a pointer per key (about 180 to 360
/// bytes per key) and 512 for other(), allocated at construction.
class key_tally {
 public:
  static constexpr std::size_t max_key_size = 64;
  static constexpr std::size_t max_keys = 1024;
  static constexpr std::string_view other_key = "other";

  key_tally() noexcept = default;

  /// Room for `keys` keys (at most max_keys; 0 counts nothing at all).
  explicit key_tally(std::size_t keys) : keys_(keys) {
    if (keys == 0) return;
    const std::size_t slots = std::bit_ceil(2 * keys);
    mask_ = slots - 1;
    slots_ = std::make_unique<slot[]>(slots);
    order_ = std::make_unique<std::atomic<const slot*>[]>(keys);
  }

  /// Not thread-safe: move a tally before sharing it.
  key_tally(key_tally&& other) noexcept
      : slots_(std::move(other.slots_)),
        order_(std::move(other.order_)),
        mask_(other.mask_),
        keys_(std::exchange(other.keys_, 0)),
        claimed_(other.claimed_.load(std::memory_order_relaxed)),
        other_(other.other_) {}
  key_tally& operator=(key_tally&&) = delete;
  key_tally(const key_tally&) = delete;
  key_tally& operator=(const key_tally&) = delete;
  ~key_tally() = default;

  /// Counts one event of `key`, whose hash is `hash`.
  void add(std::string_view key, std::size_t hash) noexcept {
    if (keys_ == 0) return;
    if (key.size() > max_key_size || key == other_key) {
      other_.add();
      return;
    }
    const auto h32 = static_cast<std::uint32_t>(hash);
    std::size_t i = hash & mask_;
    for (std::size_t probe = 0; probe <= mask_; ++probe, i = (i + 1) & mask_) {
      slot& s = slots_[i];
      // Acquire: a ready slot's key was written before its release store.
      std::uint32_t state = s.state.load(std::memory_order_acquire);
      if (state == empty) {
        if (claimed_.load(std::memory_order_relaxed) >= keys_) break;  // no room for a new key
        if (s.state.compare_exchange_strong(state, claiming, std::memory_order_acquire)) {
          claim(s, key, h32);
          return;
        }
        // Another thread took the slot first: state is now what it holds.
      }
      if (state == claiming) break;  // perhaps this very key, not readable yet
      if (s.hash == h32 && s.size == key.size() && std::memcmp(s.key, key.data(), key.size()) == 0) {
        // Relaxed: an independent tally read only for statistics.
        s.count.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    other_.add();
  }

  /// Calls `f(std::string_view key, std::uint64_t count)` for every key with
  /// a count of its own, in the order they were first counted.
  template <class F>
  void for_each(F&& f) const {
    const std::size_t n = std::min(claimed_.load(std::memory_order_relaxed), keys_);
    for (std::size_t k = 0; k < n; ++k) {
      // Acquire: pairs with claim()'s release; null while still being stored.
      if (const slot* s = order_[k].load(std::memory_order_acquire)) {
        f(std::string_view{s->key, s->size}, s->count.load(std::memory_order_relaxed));
      }
    }
  }

  /// The events of every key without a count of its own.
  [[nodiscard]] std::uint64_t other() const noexcept { return other_.load(); }

  /// The most keys with a count of their own (0: the tally is off).
  [[nodiscard]] std::size_t capacity() const noexcept { return keys_; }

 private:
  static constexpr std::uint32_t empty = 0;
  static constexpr std::uint32_t claiming = 1;
  static constexpr std::uint32_t ready = 2;

  struct slot {
    std::atomic<std::uint32_t> state{empty};
    std::uint32_t hash = 0;
    std::uint32_t size = 0;
    std::atomic<std::uint64_t> count{0};
    char key[max_key_size];
  };

  // With `s` claimed: takes a ticket; within the bound, stores the key and
  // publishes the slot, else gives the slot back and counts under other.
  void claim(slot& s, std::string_view key, std::uint32_t h32) noexcept {
    // Relaxed: the ticket only bounds the number of keys; the slot's own
    // release store publishes it.
    const std::size_t ticket = claimed_.fetch_add(1, std::memory_order_relaxed);
    if (ticket >= keys_) {
      s.state.store(empty, std::memory_order_relaxed);  // nobody read past it: they stop at claiming
      other_.add();
      return;
    }
    std::memcpy(s.key, key.data(), key.size());
    s.size = static_cast<std::uint32_t>(key.size());
    s.hash = h32;
    s.count.store(1, std::memory_order_relaxed);
    s.state.store(ready, std::memory_order_release);
    order_[ticket].store(&s, std::memory_order_release);
  }

  std::unique_ptr<slot[]> slots_;
  std::unique_ptr<std::atomic<const slot*>[]> order_;
  std::size_t mask_ = 0;
  std::size_t keys_ = 0;
  std::atomic<std::size_t> claimed_{0};
  sharded_counter<> other_{};
};

}  // namespace armor::detail
