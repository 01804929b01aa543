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
// Not thread-safe: the shard's lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

namespace armor::detail {

/// Node must have members `std::uint32_t hash` (the low bits of the key's
/// hash; the shard is picked by the high bits) and `std::string key`.
template <class Node>
class keyed_table {
 public:
  /// An empty table that will hold about `capacity` entries.
  explicit keyed_table(std::size_t capacity = 0) noexcept : want_(slots_for(capacity)) {}

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t slot_count() const noexcept { return mask_ + (slots_ ? 1 : 0); }
  /// The entry in slot i (nullptr if empty); i < slot_count().
  [[nodiscard]] Node* slot(std::size_t i) const noexcept { return slots_[i]; }

  [[nodiscard]] Node* find(std::string_view key, std::uint32_t hash) const noexcept {
    if (!slots_) return nullptr;
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Node* n = slots_[i];
      if (n == nullptr) return nullptr;
      if (n->hash == hash && n->key == key) return n;
    }
  }

  /// Adds a node whose key is not in the table. May allocate (the first
  /// insert, or growth past the load limit); throws std::bad_alloc then.
  void insert(Node* node) {
    if (!slots_) allocate(want_);
    if ((size_ + 1) * 4 > (mask_ + 1) * 3) grow();
    place(node);
    ++size_;
  }

  /// Removes `node` (which is in the table).
  void erase(Node* node) noexcept {
    std::size_t i = node->hash & mask_;
    while (slots_[i] != node) i = (i + 1) & mask_;
    // Backward-shift deletion: move later members of the probe run into the
    // hole when their home slot does not lie cyclically in (hole, j].
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      Node* n = slots_[j];
      if (n == nullptr) break;
      const std::size_t home = n->hash & mask_;
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (!stays) {
        slots_[hole] = n;
        hole = j;
      }
    }
    slots_[hole] = nullptr;
    --size_;
  }

 private:
  static std::size_t slots_for(std::size_t capacity) noexcept {
    std::size_t n = 8;
    while (n < capacity * 2) n *= 2;  // load factor at most 1/2 at capacity
    return n;
  }

  void allocate(std::size_t n) {
    slots_ = std::make_unique<Node*[]>(n);  // value-initialised: all nullptr
    mask_ = n - 1;
  }

  void place(Node* node) noexcept {
    std::size_t i = node->hash & mask_;
    while (slots_[i] != nullptr) i = (i + 1) & mask_;
    slots_[i] = node;
  }

  void grow() {
    const std::size_t old_count = mask_ + 1;
    auto fresh = std::make_unique<Node*[]>(old_count * 2);  // may throw: the table is still intact
    std::unique_ptr<Node*[]> old = std::exchange(slots_, std::move(fresh));
    mask_ = old_count * 2 - 1;
    for (std::size_t i = 0; i < old_count; ++i) {
      if (old[i] != nullptr) place(old[i]);
    }
  }

  std::unique_ptr<Node*[]> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::size_t want_;
};

}  // namespace armor::detail
