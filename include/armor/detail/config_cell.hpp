// armor/detail/config_cell.hpp: a policy's limits, changeable at run time
// and read whole on every call without a lock. Not API: anything here may
// change without notice.
//
// A value of T (trivially copyable) that fits in 8 bytes lives in one
// atomic word: a load is the whole value, a store replaces it.
//
// A larger value lives in two slots of atomic words beside one word that
// holds the generation (bits 1..63) and the writers' claim (bit 0); the
// current value is in slot (generation & 1). A writer takes the claim, fills
// the other slot and publishes it by storing generation + 1 (and no claim)
// with release. A reader loads the generation (acquire), copies the slot it
// names (acquire loads), and loads the generation again: unchanged means no
// writer began rewriting that slot while it was copied. A slot is rewritten
// only by the writer of two generations later, which took its claim after
// the generation between had been published; its stores to the slot are
// releases, so a reader whose acquire load reads one of them also sees that
// newer generation on its second load. No fences (ThreadSanitizer does not
// model them); on x86-64 these acquires and releases are plain moves.
//
// A reader retries only when a reconfiguration completed during its copy; a
// writer preempted half-way blocks no reader (the slot readers use is not
// the one being written). The generation has 63 bits and never wraps. No
// allocation, no lock: a reader does 2 + words loads.
#pragma once

#include <armor/error.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>

namespace armor::detail {

/// Refuses a reconfiguration that changes an option fixed at construction.
[[noreturn]] inline void fixed_at_construction(const char* who, const char* option) {
  invalid_config(std::string(who) + ": " + option +
                 " cannot change at run time (it shapes the policy's state); build a new one to change it");
}

template <class T, bool Narrow = (sizeof(T) <= sizeof(std::uint64_t))>
class config_cell;

/// One word: the value is the word.
template <class T>
class config_cell<T, true> {
  static_assert(std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>);

 public:
  explicit config_cell(const T& value) noexcept : word_(encode(value)) {}
  config_cell(const config_cell& other) noexcept : word_(other.word_.load(std::memory_order_relaxed)) {}
  config_cell& operator=(const config_cell&) = delete;

  /// The current value. Relaxed: the word is the whole value, nothing else
  /// is published with it.
  [[nodiscard]] T load() const noexcept { return decode(word_.load(std::memory_order_relaxed)); }
  /// Replaces the value.
  void store(const T& value) noexcept { word_.store(encode(value), std::memory_order_relaxed); }

 private:
  static std::uint64_t encode(const T& value) noexcept {
    std::uint64_t w = 0;
    std::memcpy(&w, &value, sizeof(T));
    return w;
  }
  static T decode(std::uint64_t w) noexcept {
    T value;
    std::memcpy(&value, &w, sizeof(T));
    return value;
  }

  std::atomic<std::uint64_t> word_;
};

/// Several words: two slots and a generation (see the top of this file).
template <class T>
class config_cell<T, false> {
  static_assert(std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>);
  static constexpr std::size_t words = (sizeof(T) + sizeof(std::uint64_t) - 1) / sizeof(std::uint64_t);

 public:
  explicit config_cell(const T& value) noexcept { write(0, value); }
  /// Copies the current value (for moving a policy before it is shared).
  config_cell(const config_cell& other) noexcept { write(0, other.load()); }
  config_cell& operator=(const config_cell&) = delete;

  /// The current value, whole: never part of one value and part of another.
  [[nodiscard]] T load() const noexcept {
    std::uint64_t buf[words];
    for (;;) {
      const std::uint64_t g = gen_.load(std::memory_order_acquire) >> 1;
      const std::atomic<std::uint64_t>* s = slots_[g & 1];
      // Acquire: keeps the second load of the generation after these, and
      // shows a newer generation to a reader that reads a rewriting writer's word.
      for (std::size_t i = 0; i < words; ++i) buf[i] = s[i].load(std::memory_order_acquire);
      if ((gen_.load(std::memory_order_relaxed) >> 1) == g) break;  // a claim alone changes no slot
    }
    T value;
    std::memcpy(&value, buf, sizeof(T));
    return value;
  }

  /// Replaces the value. Writers wait for each other; readers never wait.
  void store(const T& value) noexcept {
    std::uint64_t g = gen_.load(std::memory_order_relaxed);
    for (;;) {
      if ((g & 1) != 0) {  // another writer holds the claim
        std::this_thread::yield();
        g = gen_.load(std::memory_order_relaxed);
        continue;
      }
      // Acquire: the previous writer's slot and generation come before ours.
      if (gen_.compare_exchange_weak(g, g | 1, std::memory_order_acquire, std::memory_order_relaxed)) break;
    }
    const std::uint64_t next = (g >> 1) + 1;
    write(next & 1, value);
    gen_.store(next << 1, std::memory_order_release);
  }

 private:
  void write(std::uint64_t slot, const T& value) noexcept {
    std::uint64_t buf[words] = {};
    std::memcpy(buf, &value, sizeof(T));
    // Release: a reader that reads one of these words also sees the
    // generation this writer saw when it took its claim (see the top).
    for (std::size_t i = 0; i < words; ++i) slots_[slot][i].store(buf[i], std::memory_order_release);
  }

  std::atomic<std::uint64_t> gen_{0};  // generation << 1 | claimed
  std::atomic<std::uint64_t> slots_[2][words];
};

}  // namespace armor::detail
