// armor/detail/breaker_word.hpp: the circuit breaker's two packed words.
// Not API: armor::circuit_breaker is the public face.
//
// The state word (one std::atomic<uint64_t>) holds everything a decision
// needs, so that every transition and every probe is one compare-exchange:
//
//   bits  0..2   phase        closed, open, half_open, isolated, disabled
//   bits  3..23  generation   +1 on every transition (21 bits, wraps)
//   bits 24..31  trips        consecutive trips since the breaker last closed
//   bits 32..47  a            closed/disabled: consecutive failures
//                             half_open: probes in flight
//                             isolated: 1 once the end is published
//   bits 48..63  b            half_open: probe successes so far
//                             isolated: bumped by an end left unpublished
//
// Every permit carries the generation it was admitted in; an outcome whose
// generation is no longer the word's is stale and ignored. A call would have
// to stay in flight across 2^21 transitions (about 700 000 open/half-open/
// closed cycles) for its generation to come round again.
//
// The info word (a second std::atomic<uint64_t>) holds the one time a phase
// needs: when `open` ends, or when `half_open` began (for half_open_timeout):
//
//   bits  0..11  tag          the low 12 bits of the generation it belongs to
//   bits 12..63  time         microseconds since the breaker's base time, signed
//                             (52 bits: +-71 years around the base)
//
// The thread that wins a transition writes it right after (see
// breaker_core::publish). A reader that finds a tag other than the state
// word's generation knows the winner has not written it yet and decides
// without it (an open breaker rejects and stays open meanwhile). Microseconds
// keep the time and its tag in one word, so a reader never pairs the time of
// one generation with the state of another; times are rounded up to the
// microsecond (on the base's grid), so an open breaker never half-opens early.
#pragma once

#include <armor/detail/config.hpp>
#include <armor/detail/time.hpp>

#include <cstdint>

namespace armor::detail {

/// The breaker's phases (armor::breaker_state, value for value:
/// armor/circuit_breaker.hpp checks every enumerator).
enum class breaker_phase : std::uint8_t {
  closed = 0,
  open = 1,
  half_open = 2,
  isolated = 3,
  disabled = 4,
};

inline constexpr std::uint32_t breaker_gen_bits = 21;
inline constexpr std::uint32_t breaker_gen_mask = (1U << breaker_gen_bits) - 1;
inline constexpr std::uint32_t breaker_field_max = 0xFFFF;  ///< largest value of a and b
inline constexpr std::uint32_t breaker_trips_max = 0xFF;

/// The next generation (wraps within breaker_gen_bits).
[[nodiscard]] constexpr std::uint32_t breaker_next_gen(std::uint32_t gen) noexcept {
  return (gen + 1) & breaker_gen_mask;
}

/// The state word, unpacked.
struct breaker_word {
  breaker_phase phase = breaker_phase::closed;
  std::uint32_t gen = 0;
  std::uint32_t trips = 0;
  std::uint32_t a = 0;
  std::uint32_t b = 0;

  [[nodiscard]] ARMOR_ALWAYS_INLINE static constexpr breaker_word decode(std::uint64_t w) noexcept {
    breaker_word s;
    s.phase = static_cast<breaker_phase>(w & 0x7U);
    s.gen = static_cast<std::uint32_t>(w >> 3) & breaker_gen_mask;
    s.trips = static_cast<std::uint32_t>(w >> 24) & breaker_trips_max;
    s.a = static_cast<std::uint32_t>(w >> 32) & breaker_field_max;
    s.b = static_cast<std::uint32_t>(w >> 48) & breaker_field_max;
    return s;
  }

  [[nodiscard]] ARMOR_ALWAYS_INLINE constexpr std::uint64_t encode() const noexcept {
    return static_cast<std::uint64_t>(phase) | (static_cast<std::uint64_t>(gen & breaker_gen_mask) << 3) |
           (static_cast<std::uint64_t>(trips & breaker_trips_max) << 24) |
           (static_cast<std::uint64_t>(a & breaker_field_max) << 32) |
           (static_cast<std::uint64_t>(b & breaker_field_max) << 48);
  }

  /// The word `phase` would have after a transition from this one: next
  /// generation, every counter cleared but `trips`, which the caller sets.
  [[nodiscard]] constexpr breaker_word moved_to(breaker_phase to, std::uint32_t new_trips = 0) const noexcept {
    breaker_word s;
    s.phase = to;
    s.gen = breaker_next_gen(gen);
    s.trips = new_trips;
    return s;
  }
};

static_assert(breaker_word::decode(breaker_word{breaker_phase::half_open, breaker_gen_mask, 255, 65535, 65535}.encode())
                  .gen == breaker_gen_mask);

// ------------------------------------------------------------------ info word

inline constexpr std::uint32_t breaker_tag_bits = 12;
inline constexpr std::uint64_t breaker_tag_mask = (std::uint64_t{1} << breaker_tag_bits) - 1;
inline constexpr std::int64_t breaker_info_us_max = (std::int64_t{1} << 51) - 1;

/// The tag of a generation in the info word.
[[nodiscard]] constexpr std::uint64_t breaker_info_tag(std::uint32_t gen) noexcept { return gen & breaker_tag_mask; }

/// Packs (generation, time) with the time rounded up to the microsecond
/// after `base_ns`.
[[nodiscard]] constexpr std::uint64_t breaker_info_encode(std::uint32_t gen, std::int64_t t_ns,
                                                          std::int64_t base_ns) noexcept {
  const std::int64_t d = saturating_sub(t_ns, base_ns);
  std::int64_t us = d / 1000;
  if (d % 1000 > 0) ++us;  // round up: never half-open before the time
  if (us > breaker_info_us_max) us = breaker_info_us_max;
  if (us < -breaker_info_us_max) us = -breaker_info_us_max;
  return (static_cast<std::uint64_t>(us) << breaker_tag_bits) | breaker_info_tag(gen);
}

/// The time (ns on the caller's clock) stored in an info word.
[[nodiscard]] constexpr std::int64_t breaker_info_time(std::uint64_t info, std::int64_t base_ns) noexcept {
  // An arithmetic shift restores the sign (well defined since C++20).
  // |us| < 2^51, so us * 1000 fits in 62 bits.
  const std::int64_t us = static_cast<std::int64_t>(info) >> breaker_tag_bits;
  return saturating_add(base_ns, us * 1000);
}

/// True when the info word was written for generation `gen`.
[[nodiscard]] constexpr bool breaker_info_is_for(std::uint64_t info, std::uint32_t gen) noexcept {
  return (info & breaker_tag_mask) == breaker_info_tag(gen);
}

static_assert(breaker_info_time(breaker_info_encode(7, 30'000'000'001, 0), 0) == 30'000'001'000);
static_assert(breaker_info_time(breaker_info_encode(7, -5'000, 1'000), 1'000) == -5'000);
static_assert(breaker_info_is_for(breaker_info_encode(4096 + 7, 1, 0), 7));

}  // namespace armor::detail
