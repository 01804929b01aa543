// armor/detail/wide_cas.hpp: a pair of 64-bit atomics updated together by
// one 16-byte compare-and-swap. Not API: anything here may change without
// notice.
//
// Why: token_bucket's state is a value (the theoretical arrival time) and a
// 64-bit generation that says which rate it is measured in. Only a
// generation that never wraps makes a stale reader's compare-and-swap fail
// for certain; it does not fit beside the value in one 64-bit word.
//
// How: each half is a std::atomic<uint64_t> of its own, so reading one half
// is an ordinary atomic load (a reader that only decides, and writes
// nothing, stays a reader). Changing the pair is one `lock cmpxchg16b` on
// x86-64, inline, without libatomic. Elsewhere, and under ThreadSanitizer
// (which must see the operation to reason about it), it is the compiler's
// 16-byte __atomic builtin, which may call libatomic: the CMake target links
// it where the platform needs it.
//
// A 16-byte CAS over two 8-byte atomics is outside what the C++ standard
// describes (it has no mixed-size atomics); it is what GCC and Clang
// document for their __atomic builtins and what the hardware guarantees:
// the 16 bytes change at once, and each aligned 8-byte load sees one state
// or the other.
//
// bucket_state.hpp also changes the first half alone with an 8-byte CAS,
// but only while the bucket is narrow, and the 16-byte CAS runs only once
// it is wide (a one-way switch): the two never race to succeed on the same
// word. On x86-64 an 8-byte `lock cmpxchg` and a `lock cmpxchg16b` on one
// aligned 16 bytes are atomic with each other anyway (one cache line); a
// fallback 16-byte CAS built on a lock (libatomic) does not exclude the
// 8-byte one, and is still sound only because of that mode rule: an 8-byte
// CAS can succeed only on a narrow word, a 16-byte one only on a wide one,
// and a failed lock-based CAS stores nothing.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#define ARMOR_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ARMOR_DETAIL_TSAN 1
#endif
#endif

namespace armor::detail {

__extension__ typedef unsigned __int128 wide_cas_u128 __attribute__((may_alias));

/// Two 64-bit values read one at a time and changed together.
struct alignas(16) atomic_pair {
  std::atomic<std::uint64_t> first{0};
  std::atomic<std::uint64_t> second{0};

  /// Replaces {f0, s0} with {f1, s1} if the pair is {f0, s0}, at once, with
  /// acquire-release ordering (a full barrier on x86-64). No spurious
  /// failure. Returns whether it did.
  bool compare_exchange(std::uint64_t f0, std::uint64_t s0, std::uint64_t f1, std::uint64_t s1) noexcept {
#if defined(__x86_64__) && !defined(ARMOR_DETAIL_TSAN)
    bool ok = false;
    // cmpxchg16b: compares rdx:rax with the 16 bytes, stores rcx:rbx if equal.
    __asm__ __volatile__("lock cmpxchg16b %1"
                         : "=@ccz"(ok), "+m"(*reinterpret_cast<wide_cas_u128*>(this)), "+a"(f0), "+d"(s0)
                         : "b"(f1), "c"(s1)
                         : "memory");
    return ok;
#else
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    wide_cas_u128 expected = (static_cast<wide_cas_u128>(s0) << 64) | f0;
    const wide_cas_u128 desired = (static_cast<wide_cas_u128>(s1) << 64) | f1;
#else
    wide_cas_u128 expected = (static_cast<wide_cas_u128>(f0) << 64) | s0;
    const wide_cas_u128 desired = (static_cast<wide_cas_u128>(f1) << 64) | s1;
#endif
    return __atomic_compare_exchange_n(reinterpret_cast<wide_cas_u128*>(this), &expected, desired, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
#endif
  }

  /// As compare_exchange(), and on failure {f0, s0} receive the pair's value
  /// as the compare-and-swap read it (one 16-byte state, never torn): a loop
  /// needs no fresh loads to retry.
  bool compare_exchange_update(std::uint64_t& f0, std::uint64_t& s0, std::uint64_t f1, std::uint64_t s1) noexcept {
#if defined(__x86_64__) && !defined(ARMOR_DETAIL_TSAN)
    bool ok = false;
    __asm__ __volatile__("lock cmpxchg16b %1"
                         : "=@ccz"(ok), "+m"(*reinterpret_cast<wide_cas_u128*>(this)), "+a"(f0), "+d"(s0)
                         : "b"(f1), "c"(s1)
                         : "memory");
    return ok;
#else
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    wide_cas_u128 expected = (static_cast<wide_cas_u128>(s0) << 64) | f0;
    const wide_cas_u128 desired = (static_cast<wide_cas_u128>(s1) << 64) | f1;
#else
    wide_cas_u128 expected = (static_cast<wide_cas_u128>(f0) << 64) | s0;
    const wide_cas_u128 desired = (static_cast<wide_cas_u128>(f1) << 64) | s1;
#endif
    const bool ok = __atomic_compare_exchange_n(reinterpret_cast<wide_cas_u128*>(this), &expected, desired, false,
                                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    if (!ok) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      f0 = static_cast<std::uint64_t>(expected);
      s0 = static_cast<std::uint64_t>(expected >> 64);
#else
      f0 = static_cast<std::uint64_t>(expected >> 64);
      s0 = static_cast<std::uint64_t>(expected);
#endif
    }
    return ok;
#endif
  }
};

static_assert(sizeof(atomic_pair) == 16 && alignof(atomic_pair) == 16);
static_assert(sizeof(std::atomic<std::uint64_t>) == 8, "armor: a 64-bit atomic must be a plain 64-bit object");

}  // namespace armor::detail
