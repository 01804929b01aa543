// armor/detail/config.hpp: compiler and target facts used by the headers.
// Not API: anything here may change without notice.
#pragma once

#include <cstddef>

namespace armor::detail {

// The distance that keeps two hot atomics from sharing a cache line. x86-64
// prefetches cache lines in adjacent pairs and Apple's arm64 cores have
// 128-byte lines, so 128 there; 64 elsewhere. We do not use
// std::hardware_destructive_interference_size: g++ 12 warns when a header uses
// it (its value may differ between translation units) and libstdc++ with
// clang 14 does not define it.
#if defined(__x86_64__) || defined(_M_X64) || defined(__aarch64__) || defined(_M_ARM64)
inline constexpr std::size_t cache_line = 128;
#else
inline constexpr std::size_t cache_line = 64;
#endif

}  // namespace armor::detail

#if defined(__GNUC__) || defined(__clang__)
#define ARMOR_LIKELY(x) __builtin_expect(!!(x), 1)
#define ARMOR_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define ARMOR_LIKELY(x) (x)
#define ARMOR_UNLIKELY(x) (x)
#endif

// For the few tiny functions on the per-call path that both drivers share:
// left to itself, GCC outlines them once a translation unit has many callers,
// which costs more than the function body.
#if defined(__GNUC__) || defined(__clang__)
#define ARMOR_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define ARMOR_ALWAYS_INLINE inline
#endif
