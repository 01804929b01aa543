// armor/detail/keyed_table.hpp: the small open-addressing table of one shard
// of armor::keyed. Not API.
//
// Each shard holds at most a few dozen keys (armor::keyed sizes its shards
// so), so a flat array of pointers with linear probing is the cheapest map:
// a lookup hashes once, reads a few adjacent slots and compares a stored hash
// before the key; nothing allocates except the table itself, once, on the
// shard's first insert (and again only if pinned entries push it past its
// load limit). Deletion shifts later entries back (no tombstones), so probe
// sequences stay short however many keys come and go.
//
// Cache misses per lookup: the whole table is one word (the array's address
// with log2 of its length in the low bits), so the shard's lock and the
// table share a cache line; the array is 64-byte aligned; each slot keeps 8
// bits of the hash beside the pointer (bits 48 to 55, which user-space
// pointers leave zero on x86-64 and arm64, with bit 0 set to say so; a
// pointer that uses them is stored as it is and always compared), so a
// probe past another key does not read that key's entry. prefetch() lets a caller start loading a slot
// before it takes the shard's lock.
//
// The shard's lock guards every change; find_pinned() alone reads without
// it (slots published with release, replaced arrays kept until the table goes).
#pragma once

#include <bit>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <utility>

namespace armor::detail {

/// Node must have a member `std::uint32_t hash` (the low bits of the key's
/// hash; the shard is picked by the high bits) and either a member `key`
/// comparable with std::string_view by == or a function key_view().
template <class Node>
class keyed_table {
  static_assert(alignof(Node) >= 2, "keyed_table marks tagged slots in bit 0 of the pointer");

 public:
  /// An empty table that will hold about `capacity` entries.
  explicit keyed_table(std::size_t capacity = 0) noexcept : want_(slots_for(capacity)) {}
  /// Not while the tables are shared.
  keyed_table(keyed_table&& other) noexcept
      : word_(std::exchange(other.word_, 0)),
        size_(std::exchange(other.size_, 0)),
        want_(other.want_),
        retired_(std::exchange(other.retired_, nullptr)) {}
  keyed_table& operator=(keyed_table&& other) noexcept {
    if (this != &other) {
      release();
      word_ = std::exchange(other.word_, 0);
      size_ = std::exchange(other.size_, 0);
      want_ = other.want_;
      retired_ = std::exchange(other.retired_, nullptr);
    }
    return *this;
  }
  keyed_table(const keyed_table&) = delete;
  keyed_table& operator=(const keyed_table&) = delete;
  ~keyed_table() { release(); }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t slot_count() const noexcept { return word_ == 0 ? 0 : mask_of(word_) + 1; }
  /// The entry in slot i (nullptr if empty); i < slot_count().
  [[nodiscard]] Node* slot(std::size_t i) const noexcept {
    return untag(slots_of(word_)[i].load(std::memory_order_relaxed));
  }

  /// The table's one word (0 before its first insert): what prefetch() takes.
  [[nodiscard]] std::uintptr_t word() const noexcept { return word_; }
  /// Starts loading the slot where a lookup of `hash` begins, in a table
  /// whose word() was `word` (a stale word is harmless: a prefetch never
  /// faults).
  static void prefetch(std::uintptr_t word, std::uint32_t hash) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    if (word != 0) __builtin_prefetch(slots_of(word) + (hash & mask_of(word)));
#else
    (void)word;
    (void)hash;
#endif
  }

  /// With the writer's lock (or alone).
  [[nodiscard]] Node* find(std::string_view key, std::uint32_t hash) const noexcept {
    if (word_ == 0) return nullptr;
    const std::atomic<std::uintptr_t>* slots = slots_of(word_);
    const std::size_t mask = mask_of(word_);
    const std::uintptr_t want = tag_of(hash);
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
      const std::uintptr_t v = slots[i].load(std::memory_order_relaxed);
      if (v == 0) return nullptr;
      if ((v & 1) != 0 && (v & tag_mask) != want) continue;  // another key's entry: not read
      Node* n = untag(v);
      prefetch_rest(n);
      if (n->hash == hash && key_of(n) == key) return n;
    }
  }

  /// Without the lock, in a table whose word() was `word` (published with
  /// release): the entry for `key`, pinned by `pin(n)` (false: it is being
  /// freed or evicted; the caller takes the lock), or nullptr. An entry
  /// pinned that turns out to hold another key is released with unpin(n).
  template <class Pin, class Unpin>
  [[nodiscard]] static Node* find_pinned(std::uintptr_t word, std::string_view key, std::uint32_t hash, Pin&& pin,
                                         Unpin&& unpin) noexcept {
    if (word == 0) return nullptr;
    const std::atomic<std::uintptr_t>* slots = slots_of(word);
    const std::size_t mask = mask_of(word);
    const std::uintptr_t want = tag_of(hash);
    for (std::size_t i = hash & mask, probes = 0; probes <= mask; i = (i + 1) & mask, ++probes) {
      // Acquire: the entry's hash and key, written before it was published.
      const std::uintptr_t v = slots[i].load(std::memory_order_acquire);
      if (v == 0) return nullptr;
      if ((v & 1) != 0 && (v & tag_mask) != want) continue;
      Node* n = untag(v);
      prefetch_rest(n);
      if (!pin(n)) return nullptr;
      if (n->hash == hash && key_of(n) == key) return n;
      unpin(n);  // reused for another key meanwhile, or a tag collision
    }
    return nullptr;
  }

  /// Adds a node whose key is not in the table. May allocate (the first
  /// insert, or growth past the load limit); throws std::bad_alloc then.
  void insert(Node* node) {
    if (word_ == 0) word_ = allocate(want_);
    if ((size_ + 1) * 4 > (mask_of(word_) + 1) * 3) grow();
    place(slots_of(word_), mask_of(word_), node);
    ++size_;
  }

  /// Removes `node` (which is in the table).
  void erase(Node* node) noexcept {
    std::atomic<std::uintptr_t>* slots = slots_of(word_);
    const std::size_t mask = mask_of(word_);
    std::size_t i = node->hash & mask;
    while (untag(slots[i].load(std::memory_order_relaxed)) != node) i = (i + 1) & mask;
    // Backward-shift deletion: move later members of the probe run into the
    // hole when their home slot does not lie cyclically in (hole, j].
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
      const std::uintptr_t v = slots[j].load(std::memory_order_relaxed);
      if (v == 0) break;
      const std::size_t home = untag(v)->hash & mask;
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (!stays) {
        slots[hole].store(v, std::memory_order_relaxed);
        hole = j;
      }
    }
    slots[hole].store(0, std::memory_order_relaxed);
    --size_;
  }

 private:
  static constexpr std::size_t array_alignment = 64;
  static constexpr std::uintptr_t log_mask = array_alignment - 1;
  // Tags need 64-bit pointers; with narrower ones every slot is untagged.
  static constexpr bool tagged = sizeof(std::uintptr_t) >= 8;
  static constexpr int tag_shift = tagged ? 48 : 0;
  static constexpr std::uintptr_t tag_mask = tagged ? std::uintptr_t{0xFF} << tag_shift : 0;

  // 8 bits of the hash (not those that pick the home slot in a table of up
  // to 2^24 slots).
  static constexpr std::uintptr_t tag_of(std::uint32_t hash) noexcept {
    return tagged ? static_cast<std::uintptr_t>(hash >> 24) << tag_shift : 0;
  }
  // A tagged slot has bit 0 set; an untagged one is the pointer as it is.
  static Node* untag(std::uintptr_t v) noexcept {
    return reinterpret_cast<Node*>((v & 1) != 0 ? v & ~(tag_mask | 1) : v);
  }
  static std::atomic<std::uintptr_t>* slots_of(std::uintptr_t word) noexcept {
    return reinterpret_cast<std::atomic<std::uintptr_t>*>(word & ~log_mask);
  }
  static std::string_view key_of(const Node* n) noexcept {
    if constexpr (requires { n->key_view(); }) {
      return n->key_view();
    } else {
      return n->key;
    }
  }
  static void prefetch_rest([[maybe_unused]] const Node* n) noexcept {
#if defined(__GNUC__) || defined(__clang__)
    // The rest of an entry of up to 3 cache lines (its instance, for a small
    // key) loads while the first is compared.
    if constexpr (sizeof(Node) > 48) {
      __builtin_prefetch(reinterpret_cast<const char*>(n) + 64);
      __builtin_prefetch(reinterpret_cast<const char*>(n) + sizeof(Node) - 1);
    }
#endif
  }
  static std::size_t mask_of(std::uintptr_t word) noexcept { return (std::size_t{1} << (word & log_mask)) - 1; }

  static std::size_t slots_for(std::size_t capacity) noexcept {
    std::size_t n = 8;
    while (n < capacity * 2) n *= 2;  // load factor at most 1/2 at capacity
    return n;
  }

  // The array is aligned by hand (glibc's aligned allocation keeps up to
  // the alignment again in use; this wastes at most 48 bytes); the word
  // after the array keeps the allocation's address.
  static std::uintptr_t allocate(std::size_t n) {
    constexpr std::size_t extra = array_alignment - __STDCPP_DEFAULT_NEW_ALIGNMENT__ + sizeof(void*);
    void* raw = ::operator new(n * sizeof(std::uintptr_t) + extra);
    const std::uintptr_t at = (reinterpret_cast<std::uintptr_t>(raw) + log_mask) & ~log_mask;
    std::memcpy(reinterpret_cast<void*>(at + n * sizeof(std::uintptr_t)), &raw, sizeof raw);
    auto* slots = reinterpret_cast<std::atomic<std::uintptr_t>*>(at);
    for (std::size_t i = 0; i < n; ++i) ::new (static_cast<void*>(slots + i)) std::atomic<std::uintptr_t>(0);
    return at | static_cast<std::uintptr_t>(std::countr_zero(n));
  }
  static void deallocate(std::uintptr_t word) noexcept {
    if (word == 0) return;
    void* raw = nullptr;
    std::memcpy(&raw, reinterpret_cast<const void*>(slots_of(word) + mask_of(word) + 1), sizeof raw);
    ::operator delete(raw);
  }
  void release() noexcept {
    deallocate(word_);
    word_ = 0;
    while (retired_ != nullptr) {
      retired* r = retired_;
      retired_ = r->next;
      deallocate(r->word);
      delete r;
    }
  }

  static void place(std::atomic<std::uintptr_t>* slots, std::size_t mask, Node* node) noexcept {
    std::size_t i = node->hash & mask;
    while (slots[i].load(std::memory_order_relaxed) != 0) i = (i + 1) & mask;
    const auto p = reinterpret_cast<std::uintptr_t>(node);
    // Release: a reader that loads the slot sees the entry's hash and key.
    const bool tag = tagged && (p & (tag_mask | 1)) == 0;
    slots[i].store(tag ? p | tag_of(node->hash) | 1 : p, std::memory_order_release);
  }

  void grow() {
    const std::size_t old_count = mask_of(word_) + 1;
    auto r = std::make_unique<retired>();                   // may throw: the table is still intact
    const std::uintptr_t fresh = allocate(old_count * 2);  // likewise
    const std::uintptr_t old = std::exchange(word_, fresh);
    for (std::size_t i = 0; i < old_count; ++i) {
      if (const std::uintptr_t v = slots_of(old)[i].load(std::memory_order_relaxed); v != 0) {
        place(slots_of(fresh), old_count * 2 - 1, untag(v));
      }
    }
    // Readers without the lock may still probe the old array.
    r->word = old;
    r->next = retired_;
    retired_ = r.release();
  }

  struct retired {
    retired* next = nullptr;
    std::uintptr_t word = 0;
  };

  std::uintptr_t word_ = 0;  // first: it shares the shard lock's cache line
  std::size_t size_ = 0;
  std::size_t want_;
  retired* retired_ = nullptr;  // arrays replaced by growth
};

}  // namespace armor::detail
