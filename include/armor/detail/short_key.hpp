// armor/detail/short_key.hpp: a key in 16 bytes, armor::keyed's per-entry
// copy of its key. Not API.
//
// Up to 15 characters (an IPv4 address, a short user or route name) sit
// inline, their count in the last byte; a longer key is one allocation of
// exactly its characters, its address and size in the first 12 bytes and
// 0xFF in the last. A std::string takes 32 bytes and keeps 15 inline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>

namespace armor::detail {

class short_key {
 public:
  static constexpr std::size_t inline_capacity = 15;

  /// Copies `key`; throws std::bad_alloc (a long key's allocation).
  explicit short_key(std::string_view key) {
    if (key.size() <= inline_capacity) {
      if (!key.empty()) std::memcpy(bytes_, key.data(), key.size());
      bytes_[15] = static_cast<unsigned char>(key.size());
      return;
    }
    if (key.size() > std::numeric_limits<std::uint32_t>::max()) throw std::bad_alloc();
    char* p = new char[key.size()];
    std::memcpy(p, key.data(), key.size());
    const auto size = static_cast<std::uint32_t>(key.size());
    std::memcpy(bytes_, &p, sizeof p);
    std::memcpy(bytes_ + 8, &size, sizeof size);
    bytes_[15] = long_mark;
  }
  short_key(const short_key&) = delete;
  short_key& operator=(const short_key&) = delete;
  ~short_key() {
    if (bytes_[15] == long_mark) delete[] out_of_line();
  }

  [[nodiscard]] std::string_view view() const noexcept {
    if (bytes_[15] != long_mark) return {reinterpret_cast<const char*>(bytes_), bytes_[15]};
    std::uint32_t size = 0;
    std::memcpy(&size, bytes_ + 8, sizeof size);
    return {out_of_line(), size};
  }
  // NOLINTNEXTLINE(google-explicit-constructor): a key reads as a string_view
  operator std::string_view() const noexcept { return view(); }
  friend bool operator==(const short_key& a, std::string_view b) noexcept { return a.view() == b; }

 private:
  static constexpr unsigned char long_mark = 0xFF;
  [[nodiscard]] char* out_of_line() const noexcept {
    char* p = nullptr;
    std::memcpy(&p, bytes_, sizeof p);
    return p;
  }
  unsigned char bytes_[16] = {};
};

static_assert(sizeof(short_key) == 16);

}  // namespace armor::detail
