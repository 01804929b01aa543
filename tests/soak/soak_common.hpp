// soak_common.hpp: what the soak tests share: their size (bounded for CI,
// full with ARMOR_SOAK=full), the resident memory of the process, and
// whether a sanitizer makes that figure meaningless.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <unistd.h>

namespace soak {

// AddressSanitizer keeps freed memory in a quarantine (256 MiB by default)
// and adds shadow memory, so the resident set grows with every free until
// the quarantine is full: under ASan the memory bound is not checked (the
// run still is, and LeakSanitizer checks that nothing is left behind).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr bool sanitized = false;
#endif

/// ARMOR_SOAK=full: the long form (scripts/soak); anything else, or unset:
/// the bounded form CTest runs.
[[nodiscard]] inline bool full() noexcept {
  const char* v = std::getenv("ARMOR_SOAK");
  return v != nullptr && std::string_view{v} == "full";
}

/// A size from the environment variable `name` when it is set to a positive
/// integer, else `fallback` (to try other sizes without rebuilding).
[[nodiscard]] inline std::uint64_t size_from_env(const char* name, std::uint64_t fallback) noexcept {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  return (end != nullptr && *end == '\0' && n > 0) ? static_cast<std::uint64_t>(n) : fallback;
}

/// The resident set of this process in bytes, from /proc/self/statm (its
/// second field, in pages); 0 if it cannot be read.
[[nodiscard]] inline std::uint64_t resident_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(page > 0 ? page : 4096);
}

[[nodiscard]] constexpr double mib(std::uint64_t bytes) noexcept { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

/// Writes `n` in decimal after `prefix` into `buf` and returns the view
/// (a key built without allocating).
template <std::size_t N>
[[nodiscard]] std::string_view make_key(char (&buf)[N], std::string_view prefix, std::uint64_t n) noexcept {
  static_assert(N >= 24, "make_key: the buffer must hold a prefix and 20 digits");
  std::size_t len = prefix.size() < N - 21 ? prefix.size() : N - 21;
  std::memcpy(buf, prefix.data(), len);
  char digits[20];
  std::size_t d = 0;
  do {
    digits[d++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  while (d > 0) buf[len++] = digits[--d];
  return {buf, len};
}

}  // namespace soak
