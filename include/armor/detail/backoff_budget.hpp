// armor/detail/backoff_budget.hpp: the shared state of a backoff policy: its
// retry budget (gRPC-style retry throttling) and its event counters.
// Not API: armor::backoff and armor::retry_budget are the public face.
//
// The budget is a token count, kept in thousandths of a token so that a
// ratio such as 0.1 is exact integer arithmetic:
//
//   - an attempt that fails retryably (failure or timeout) takes one token,
//     never going below zero;
//   - an attempt that succeeds gives back `token_ratio` tokens, never going
//     above `max_tokens`;
//   - a retry is allowed only while more than half of `max_tokens` is left.
//
// So a service whose upstream fails more than about ratio / (1 + ratio) of
// attempts (9 % for the default 0.1) stops retrying altogether and offers the
// upstream only first attempts, until successes refill the bucket. No clock
// is read, and a healthy service (bucket full) only ever reads the atomic.
//
// Memory orders: every access is relaxed. The token count and the counters
// are standalone numbers; no other memory is published or consumed through
// them, so only the atomicity of each read-modify-write matters.
#pragma once

#include <armor/detail/config.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace armor::detail {

/// Thousandths of a token per token.
inline constexpr std::int64_t milli_tokens = 1000;

/// A budget's validated configuration, in milli-tokens. Read-only after
/// construction; `max == 0` means "no budget".
struct retry_budget_config {
  std::int64_t max = 0;        ///< the bucket's size (and its starting level)
  std::int64_t refill = 0;     ///< given back per successful attempt
  std::int64_t threshold = 0;  ///< retries are allowed while the level is above this

  [[nodiscard]] constexpr bool enabled() const noexcept { return max > 0; }
};

/// Everything a backoff policy writes, on one cache line of its own so that
/// the read-only configuration next to it is never invalidated by a write,
/// and so that a failing call dirties one line, not several. Every member is
/// a standalone number accessed relaxed (see the top of this file).
struct alignas(cache_line) backoff_counters {
  std::atomic<std::int64_t> tokens{0};
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> successes_after_retry{0};
  std::atomic<std::uint64_t> exhausted{0};
  std::atomic<std::uint64_t> budget_refusals{0};
  std::atomic<std::uint64_t> deadline_stops{0};
  std::atomic<std::uint64_t> non_retryable{0};

  backoff_counters() = default;
  backoff_counters(const backoff_counters&) = delete;
  backoff_counters& operator=(const backoff_counters&) = delete;

  /// Takes over `other`'s values. Not atomic as a whole: only for building a
  /// policy (a move), never while other threads use either object.
  void copy_from(const backoff_counters& other) noexcept {
    copy(tokens, other.tokens);
    copy(calls, other.calls);
    copy(retries, other.retries);
    copy(successes_after_retry, other.successes_after_retry);
    copy(exhausted, other.exhausted);
    copy(budget_refusals, other.budget_refusals);
    copy(deadline_stops, other.deadline_stops);
    copy(non_retryable, other.non_retryable);
  }

  /// Adds one to a counter. Relaxed: the counter orders nothing else.
  static void bump(std::atomic<std::uint64_t>& counter) noexcept { counter.fetch_add(1, std::memory_order_relaxed); }

 private:
  template <class T>
  static void copy(std::atomic<T>& to, const std::atomic<T>& from) noexcept {
    // Relaxed: construction happens before the object is shared; whatever
    // publishes the new object (thread start, a mutex) orders this store.
    to.store(from.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
};

/// A retryable failure takes one token (not below zero). Returns the level
/// after this failure, on which the retry decision is made.
inline std::int64_t budget_drain(std::atomic<std::int64_t>& tokens) noexcept {
  // Relaxed: the level is a standalone number; the CAS makes each take atomic.
  std::int64_t cur = tokens.load(std::memory_order_relaxed);
  std::int64_t next = 0;
  do {
    if (cur <= 0) return 0;  // empty: nothing to write
    next = std::max<std::int64_t>(cur - milli_tokens, 0);
  } while (!tokens.compare_exchange_weak(cur, next, std::memory_order_relaxed, std::memory_order_relaxed));
  return next;
}

/// A success gives back `refill` (not above `max`). A full bucket, the
/// healthy steady state, is only read, never written, so callers that share
/// the policy do not fight over its cache line.
inline void budget_refill(std::atomic<std::int64_t>& tokens, const retry_budget_config& c) noexcept {
  // Relaxed: as in budget_drain.
  std::int64_t cur = tokens.load(std::memory_order_relaxed);
  while (cur < c.max &&
         !tokens.compare_exchange_weak(cur, std::min(cur + c.refill, c.max), std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
  }
}

}  // namespace armor::detail
