// armor/detail/quota_word.hpp: a quota window's counter in one 64-bit word.
// Not API.
//
//   bits 63..40  the slice (period or bucket) the count belongs to, modulo 2^24
//   bits 39..0   units used in that slice, saturating at 2^40 - 2
//
// Keeping both in one word lets one compare-and-swap check the slice and
// the count together: a consumer that finds an older slice in the word
// starts the new slice at zero in the same CAS that adds its units, so no
// turnover can lose or double an addition.
//
// 24 bits cannot name a slice on their own; a reader names it relative to
// the slice its own clock reading falls in ("now"):
//
//   - a tag up to quota_skew_max slices ahead of now is that later slice
//     (a thread whose reading was a little later, or a wall clock that
//     stepped back): the count stays there, windows never move back;
//   - any other tag is an earlier slice, whose count no longer applies.
//
// The one misreading: a word left untouched for a multiple of 2^24 slices
// give or take quota_skew_max (16.7 million slices: 32 years of minute
// periods, 46 hours of 10 ms buckets) reads as current or slightly ahead.
// Its old count is then kept for at most quota_skew_max slices: fewer units
// admitted, never more. A clock stepped back by more than quota_skew_max
// slices starts the window afresh.
//
// A word that has never been written is `quota_empty`, which reads as an
// earlier slice whatever now is. Limits are at most 2^39 - 1 units, so a
// count at or below its limit plus a cost at or below the limit never
// reaches the cap; only settled overruns (counted without a limit check)
// can saturate.
#pragma once

#include <cstdint>

namespace armor::detail {

inline constexpr unsigned quota_used_bits = 40;
inline constexpr unsigned quota_tag_bits = 64 - quota_used_bits;
inline constexpr std::uint64_t quota_used_mask = (std::uint64_t{1} << quota_used_bits) - 1;
inline constexpr std::uint64_t quota_tag_mask = (std::uint64_t{1} << quota_tag_bits) - 1;
/// The largest count a word holds (one below the mask, so that no count
/// packs into quota_empty).
inline constexpr std::int64_t quota_used_cap = static_cast<std::int64_t>(quota_used_mask) - 1;
/// The largest limit a window may have.
inline constexpr std::int64_t quota_limit_max = (std::int64_t{1} << (quota_used_bits - 1)) - 1;
/// How far ahead of a reader's slice a word's slice may be and still count.
inline constexpr std::int64_t quota_skew_max = 4096;
/// A counter that has never been written.
inline constexpr std::uint64_t quota_empty = ~std::uint64_t{0};

[[nodiscard]] constexpr std::uint64_t quota_pack(std::int64_t slice, std::int64_t used) noexcept {
  return ((static_cast<std::uint64_t>(slice) & quota_tag_mask) << quota_used_bits) |
         (static_cast<std::uint64_t>(used) & quota_used_mask);
}

[[nodiscard]] constexpr std::int64_t quota_used(std::uint64_t word) noexcept {
  return word == quota_empty ? 0 : static_cast<std::int64_t>(word & quota_used_mask);
}

/// The word's slice, read from `now` (see the top of this file): now + d
/// for a slice d <= quota_skew_max later, else an earlier slice (more than
/// 2^24 slices earlier for an empty word).
[[nodiscard]] constexpr std::int64_t quota_slice(std::uint64_t word, std::int64_t now) noexcept {
  constexpr std::int64_t span = std::int64_t{1} << quota_tag_bits;
  if (word == quota_empty) return now - span;
  const std::uint64_t tag = word >> quota_used_bits;
  const auto d = static_cast<std::int64_t>((tag - static_cast<std::uint64_t>(now)) & quota_tag_mask);
  return d <= quota_skew_max ? now + d : now - (span - d);
}

/// Whether the word holds exactly slice s.
[[nodiscard]] constexpr bool quota_holds(std::uint64_t word, std::int64_t s) noexcept {
  return word != quota_empty && (word >> quota_used_bits) == (static_cast<std::uint64_t>(s) & quota_tag_mask);
}

/// a + b for non-negative a and b, saturating at the count's cap.
[[nodiscard]] constexpr std::int64_t quota_add(std::int64_t a, std::int64_t b) noexcept {
  return b >= quota_used_cap - a ? quota_used_cap : a + b;
}

}  // namespace armor::detail
