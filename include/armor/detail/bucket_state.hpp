// armor/detail/bucket_state.hpp: the lock-free GCRA state behind
// armor::token_bucket. Not API: anything here may change without notice.
//
// Representation (docs/token_bucket.md has the long version)
// -----------------------------------------------------------
// A rate of `count` tokens per `period` nanoseconds is reduced by their gcd
// to c tokens per p ns. The state measures time in *ticks* of 1/c ns, so the
// emission interval T = p/c ns is exactly p ticks and the burst tolerance is
// tau = burst * p ticks: every quantity GCRA needs is an integer, nothing is
// rounded, and the k-th token after an instant t0 is due exactly at the
// first whole nanosecond >= t0 + k*p/c. Over any run the bucket admits
// exactly burst + floor(rate * t) tokens, as the real-number definition
// (golang.org/x/time/rate) does.
//
// Ticks overflow int64 after 2^63/c ns, so the state is relative to a *base*
// time (ns) kept beside the rate in a config slot, and it is re-based when
// time has moved far from it. The hot state is one std::atomic<int64_t>:
//
//     bits 63..60  generation tag (which of two config slots is current)
//     bits 59..0   TAT, the theoretical arrival time, in ticks since the
//                  slot's base (signed, 60 bits)
//
// A config slot holds {c, p, burst, base}. Changing the rate (or the base)
// writes the slot the state does not use, then moves the state to it with
// one CAS that also converts the TAT: readers never wait and never see a
// TAT paired with the wrong rate (but see the ABA note in
// docs/token_bucket.md: a 4-bit tag can wrap). Writers of slots (re-basing)
// take a small claim flag among themselves; the read and grant paths never
// touch it.
#pragma once

#include <armor/detail/time.hpp>

#include <atomic>
#include <cstdint>
#include <thread>

namespace armor::detail {

__extension__ typedef __int128 bucket_int128;

/// A rate limit as the state uses it: `count` tokens every `period` ns, in
/// lowest terms, and the burst. One tick is 1/count ns; one token is
/// `period` ticks.
struct bucket_config {
  std::int64_t count = 1;   ///< c
  std::int64_t period = 1;  ///< p, ticks per token (and ns per c tokens)
  std::int64_t burst = 1;   ///< b, tokens

  /// The burst tolerance, in ticks. Fits: validated against bucket_max_span.
  [[nodiscard]] constexpr std::int64_t tau() const noexcept { return burst * period; }
  friend constexpr bool operator==(const bucket_config&, const bucket_config&) = default;
};

// The value field: 60-bit signed ticks, [-2^59, 2^59).
inline constexpr int bucket_tag_shift = 60;
inline constexpr std::uint64_t bucket_value_mask = (std::uint64_t{1} << bucket_tag_shift) - 1;
/// The oldest time the state represents, in ticks from the base. An older
/// TAT means "full" for every time the state can be asked about.
inline constexpr std::int64_t bucket_floor = -(std::int64_t{1} << 58);
/// From here on (ticks from the base to now) a caller tries to re-base.
inline constexpr std::int64_t bucket_soft_limit = std::int64_t{1} << 57;
/// Past here the state must be re-based before it is used.
inline constexpr std::int64_t bucket_hard_limit = std::int64_t{1} << 58;
/// The most ticks a TAT may lie ahead of now: tau plus the longest wait.
/// With the hard limit this keeps every TAT below 2^58 + 2^57 < 2^59.
inline constexpr std::int64_t bucket_max_span = std::int64_t{1} << 57;

/// What one acquire came to.
enum class bucket_outcome : std::uint8_t { granted, denied, too_large };

struct bucket_result {
  bucket_outcome outcome = bucket_outcome::denied;
  bucket_config config{};
  std::int64_t n = 0;     ///< tokens asked for
  std::int64_t debt = 0;  ///< ticks until full: after a grant, or as found by a denial (>= 0)
  std::int64_t late = 0;  ///< ticks until the n tokens are due: > 0 for a reservation or a denial
  std::int64_t word = 0;  ///< the state word a grant wrote (for giving it back)
};

/// A reading of the state without changing it.
struct bucket_snapshot {
  bucket_config config{};
  std::int64_t debt = 0;  ///< ticks until full (>= 0)
};

[[nodiscard]] constexpr std::int64_t bucket_word(unsigned tag, std::int64_t value) noexcept {
  return static_cast<std::int64_t>((std::uint64_t{tag & 15U} << bucket_tag_shift) |
                                   (static_cast<std::uint64_t>(value) & bucket_value_mask));
}
[[nodiscard]] constexpr unsigned bucket_tag(std::int64_t word) noexcept {
  return static_cast<unsigned>(static_cast<std::uint64_t>(word) >> bucket_tag_shift);
}
[[nodiscard]] constexpr std::int64_t bucket_value(std::int64_t word) noexcept {
  // Sign-extends the 60-bit field (arithmetic right shift is defined in C++20).
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(word) << (64 - bucket_tag_shift)) >>
         (64 - bucket_tag_shift);
}

/// ceil(a / b) for a >= 0, b > 0.
[[nodiscard]] constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept {
  return a / b + (a % b != 0 ? 1 : 0);
}

class bucket_state {
 public:
  /// A full bucket with `config`, based at `now` (ns).
  bucket_state(const bucket_config& config, std::int64_t now) noexcept {
    write_slot(0, config, now);
    word_.store(bucket_word(0, bucket_floor), std::memory_order_relaxed);
  }

  /// A snapshot of another state (for moving a bucket before it is shared).
  bucket_state(const bucket_state& other) noexcept {
    const std::int64_t w = other.word_.load(std::memory_order_acquire);
    const unsigned tag = bucket_tag(w);
    const slot_values s = other.read_slot(tag);
    write_slot(tag, s.config, s.base);
    word_.store(w, std::memory_order_relaxed);
    modified_.store(other.modified(), std::memory_order_relaxed);
  }
  bucket_state& operator=(const bucket_state&) = delete;

  /// Takes n tokens at `now` if they are there; if not, and they will be
  /// within `wait_limit` ns (< 0: no waiting), reserves them (the TAT moves
  /// now, so later callers queue behind). A denial writes nothing.
  ///
  /// The common case (now near the base, n within the burst) is this
  /// small inline loop; everything else goes to acquire_general().
  [[nodiscard]] bucket_result acquire(std::int64_t n, std::int64_t now, std::int64_t wait_limit) noexcept {
    std::int64_t w = word_.load(std::memory_order_acquire);
    for (;;) {
      const unsigned tag = bucket_tag(w);
      const slot_values s = read_slot(tag);
      std::int64_t d = 0;
      std::int64_t nt = 0;
      if (__builtin_sub_overflow(now, s.base, &d) || __builtin_mul_overflow(d, s.config.count, &nt) ||
          nt > bucket_soft_limit || nt < bucket_floor || n > s.config.burst || wait_limit >= 0) [[unlikely]] {
        return acquire_general(n, now, wait_limit);
      }
      bucket_result r;
      r.config = s.config;
      r.n = n;
      const std::int64_t v = bucket_value(w);
      const std::int64_t start = v > nt ? v : nt;
      const std::int64_t end = start + n * s.config.period;
      r.late = end - nt - s.config.tau();
      if (r.late > 0 || n == 0) {
        if (!unchanged(w)) {
          w = word_.load(std::memory_order_acquire);
          continue;
        }
        r.outcome = r.late > 0 ? bucket_outcome::denied : bucket_outcome::granted;
        r.debt = start - nt;
        if (n == 0) r.word = w;
        return r;
      }
      // A failed CAS leaves the current word in w (acquire on failure, as a
      // load of it would be): retry from it at once, while this core still
      // owns the cache line. See acquire_general for the success order.
      if (word_.compare_exchange_weak(w, bucket_word(tag, end), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        r.outcome = bucket_outcome::granted;
        r.debt = end - nt;
        r.word = bucket_word(tag, end);
        return r;
      }
    }
  }

  /// acquire() for every case: re-basing, requests above the burst,
  /// reservations.
  [[gnu::noinline]] bucket_result acquire_general(std::int64_t n, std::int64_t now, std::int64_t wait_limit) noexcept {
    for (;;) {
      std::int64_t w = word_.load(std::memory_order_acquire);
      const unsigned tag = bucket_tag(w);
      const slot_values s = read_slot(tag);
      std::int64_t nt = 0;
      const span where = ticks_since(now, s.base, s.config.count, nt);
      if (where != span::near) [[unlikely]] {
        if (where == span::far) {
          rebase(now, true);
          continue;
        }
        if (rebase(now, false)) continue;  // else someone else is re-basing: the old base still serves
      }
      bucket_result r;
      r.config = s.config;
      r.n = n;
      const std::int64_t v = bucket_value(w);
      if (n > s.config.burst) [[unlikely]] {
        if (!unchanged(w)) continue;
        r.outcome = bucket_outcome::too_large;
        r.debt = v > nt ? v - nt : 0;
        return r;
      }
      const std::int64_t tau = s.config.tau();
      const std::int64_t start = v > nt ? v : nt;
      const std::int64_t end = start + n * s.config.period;  // n <= burst: fits (tau <= max span)
      r.late = end - nt - tau;
      if (r.late > 0) {
        // Not there yet: deny, or reserve if the wait is allowed.
        std::int64_t limit = -1;
        if (wait_limit >= 0) {
          limit = saturating_mul(wait_limit, s.config.count);
          if (limit > bucket_max_span - tau) limit = bucket_max_span - tau;
        }
        if (r.late > limit) {
          // Read, decide, return: the decision is valid if the word did
          // not change while the slot was read (a re-base or rate change).
          if (!unchanged(w)) continue;
          r.outcome = bucket_outcome::denied;
          r.debt = start - nt;
          return r;
        }
      }
      r.outcome = bucket_outcome::granted;
      if (n == 0) {
        if (!unchanged(w)) continue;
        r.debt = start - nt;
        r.late = 0;
        r.word = w;
        return r;
      }
      const std::int64_t next = bucket_word(tag, end);
      // acq_rel: release publishes nothing new, but keeps this RMW in the
      // release sequence of a slot writer's CAS; acquire pairs with it.
      if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        r.debt = end - nt;
        r.word = next;
        return r;
      }
    }
  }

  /// Gives back `amount` ticks a grant took, if the state is still exactly
  /// the word that grant wrote (nothing was granted or reserved after it, no
  /// rate change): the state becomes what it would be had the grant never
  /// happened. Otherwise gives nothing back and returns false.
  bool give_back(std::int64_t word, std::int64_t amount) noexcept {
    std::int64_t expected = word;
    const std::int64_t back = bucket_word(bucket_tag(word), bucket_value(word) - amount);
    return word_.compare_exchange_strong(expected, back, std::memory_order_acq_rel, std::memory_order_relaxed);
  }

  /// The state at `now`, unchanged.
  [[nodiscard]] bucket_snapshot peek(std::int64_t now) const noexcept {
    for (;;) {
      const std::int64_t w = word_.load(std::memory_order_acquire);
      const slot_values s = read_slot(bucket_tag(w));
      if (!unchanged(w)) continue;
      const bucket_int128 nt = clamped_ticks(now, s);
      const bucket_int128 debt = static_cast<bucket_int128>(bucket_value(w)) - nt;
      return {s.config, debt > 0 ? static_cast<std::int64_t>(debt) : 0};
    }
  }

  /// The current config.
  [[nodiscard]] bucket_config config() const noexcept {
    for (;;) {
      const std::int64_t w = word_.load(std::memory_order_acquire);
      const slot_values s = read_slot(bucket_tag(w));
      if (unchanged(w)) return s.config;
    }
  }

  /// True once reconfigure() has changed the config (re-basing does not count).
  /// Relaxed: a hint for armor::keyed's eviction, read after the entry's
  /// reference count has ordered everything its last user did.
  [[nodiscard]] bool modified() const noexcept { return modified_.load(std::memory_order_relaxed); }

  /// Switches to `next` at `now`, keeping the number of tokens (as
  /// golang.org/x/time/rate's SetLimit/SetBurst do): tokens at the old rate
  /// are converted to time at the new one. Tokens above the new burst are
  /// dropped (the bucket is full); a fraction of a token that the new tick
  /// cannot express is rounded down (less than 1/period of a token). Returns
  /// false if `next` is the current config (nothing to do).
  bool reconfigure(const bucket_config& next, std::int64_t now) noexcept {
    claim_guard guard(claim_);
    for (;;) {
      std::int64_t w = word_.load(std::memory_order_acquire);
      const unsigned tag = bucket_tag(w);
      const slot_values s = read_slot(tag);
      if (s.config == next) return false;
      const bucket_int128 nt = clamped_ticks(now, s);
      bucket_int128 debt = static_cast<bucket_int128>(bucket_value(w)) - nt;  // old ticks
      if (debt < 0) debt = 0;
      // tokens = b1 - debt / p1  ->  new debt = (b2 - tokens) * p2 ticks of the new size.
      const bucket_int128 scaled = debt * next.period;
      bucket_int128 converted = scaled / s.config.period + (scaled % s.config.period != 0 ? 1 : 0);
      converted += static_cast<bucket_int128>(next.burst - s.config.burst) * next.period;
      std::int64_t value = 0;  // the new base is now: a TAT of 0 is "full at now"
      if (converted > bucket_hard_limit) {
        value = bucket_hard_limit;  // more debt than the state holds: keep the most it can
      } else if (converted > 0) {
        value = static_cast<std::int64_t>(converted);
      }
      write_slot(tag + 1, next, now);
      if (word_.compare_exchange_strong(w, bucket_word(tag + 1, value), std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
        modified_.store(true, std::memory_order_relaxed);
        return true;
      }
    }
  }

 private:
  struct slot {
    std::atomic<std::int64_t> count{1};
    std::atomic<std::int64_t> period{1};
    std::atomic<std::int64_t> burst{1};
    std::atomic<std::int64_t> base{0};
  };
  struct slot_values {
    bucket_config config;
    std::int64_t base;
  };

  enum class span : std::uint8_t { near, soft, far };

  // Test and test-and-set: a busy claim is only read, not written.
  static bool try_take(std::atomic<std::uint32_t>& c) noexcept {
    return c.load(std::memory_order_relaxed) == 0 && c.exchange(1, std::memory_order_acquire) == 0;
  }

  // Holds the writers' claim; spins (yielding) while another writer has it.
  // Only slot writers (reconfigure, re-base) ever take it.
  class claim_guard {
   public:
    explicit claim_guard(std::atomic<std::uint32_t>& c) noexcept : c_(c) {
      while (!try_take(c_)) std::this_thread::yield();
    }
    /// Adopts a claim the caller already took with try_take().
    claim_guard(std::atomic<std::uint32_t>& c, bool /*adopt*/) noexcept : c_(c) {}
    claim_guard(const claim_guard&) = delete;
    claim_guard& operator=(const claim_guard&) = delete;
    ~claim_guard() { c_.store(0, std::memory_order_release); }

   private:
    std::atomic<std::uint32_t>& c_;
  };

  // Read after an acquire load of the word. That load sees the slot as its
  // writer left it: the writer stored the fields before the CAS that
  // published the tag, and every later change of the word is an RMW, so that
  // CAS heads a release sequence every reader of the word synchronises with.
  // The loads are acquire themselves for the opposite case, a slot being
  // rewritten under a reader holding a stale word (see write_slot): then the
  // reader's re-check of the word, or its CAS, must fail. On x86 an acquire
  // load is a plain load; unlike a fence, ThreadSanitizer understands it.
  [[nodiscard]] slot_values read_slot(unsigned tag) const noexcept {
    const slot& s = slots_[tag & 1U];
    return {{s.count.load(std::memory_order_acquire), s.period.load(std::memory_order_acquire),
             s.burst.load(std::memory_order_acquire)},
            s.base.load(std::memory_order_acquire)};
  }

  // Called only with the claim held, on the slot the word does not use.
  // Release: a reader whose acquire load sees one of these values then sees
  // the word as at least the state this writer observed before writing (a
  // newer tag), so its re-check or CAS fails and it retries: a reader never
  // acts on a word paired with a slot rewritten for a later generation
  // (short of 16 generations passing between its two loads; see the docs).
  void write_slot(unsigned tag, const bucket_config& c, std::int64_t base) noexcept {
    slot& s = slots_[tag & 1U];
    s.count.store(c.count, std::memory_order_release);
    s.period.store(c.period, std::memory_order_release);
    s.burst.store(c.burst, std::memory_order_release);
    s.base.store(base, std::memory_order_release);
  }

  // True if the word is still `w` after the slot was read (seqlock-style
  // validation for paths that decide without a CAS). Relaxed suffices: the
  // slot loads before it are acquire, so it cannot be reordered before them,
  // and it cannot read a word older than one it already depends on.
  [[nodiscard]] bool unchanged(std::int64_t w) const noexcept {
    return word_.load(std::memory_order_relaxed) == w;
  }

  // Ticks from `base` to `now`, clamped below at the floor (an older time is
  // judged as the oldest representable one: fewer tokens, never more).
  static span ticks_since(std::int64_t now, std::int64_t base, std::int64_t count, std::int64_t& out) noexcept {
    const std::int64_t d = saturating_sub(now, base);
    std::int64_t t = 0;
    if (__builtin_mul_overflow(d, count, &t)) {
      if (d < 0) {
        out = bucket_floor;
        return span::near;
      }
      return span::far;
    }
    if (t < bucket_floor) t = bucket_floor;
    out = t;
    if (t <= bucket_soft_limit) return span::near;
    return t <= bucket_hard_limit ? span::soft : span::far;
  }

  // Ticks from the slot's base to `now` in 128 bits (never overflows),
  // clamped below at the floor.
  static bucket_int128 clamped_ticks(std::int64_t now, const slot_values& s) noexcept {
    const bucket_int128 t = (static_cast<bucket_int128>(now) - s.base) * s.config.count;
    return t < bucket_floor ? bucket_int128{bucket_floor} : t;
  }

  // Moves the base to `now` (same rate), converting the TAT. With `wait`
  // false it gives up at once if another writer holds the claim. Returns
  // true if the state is now near its base (re-based by this call or by
  // another writer before it).
  bool rebase(std::int64_t now, bool wait) noexcept {
    if (wait) {
      claim_guard guard(claim_);
      return rebase_claimed(now);
    }
    if (!try_take(claim_)) return false;
    claim_guard guard(claim_, true);
    return rebase_claimed(now);
  }

  bool rebase_claimed(std::int64_t now) noexcept {
    for (;;) {
      std::int64_t w = word_.load(std::memory_order_acquire);
      const unsigned tag = bucket_tag(w);
      const slot_values s = read_slot(tag);
      const bucket_int128 nt = clamped_ticks(now, s);
      if (nt <= bucket_soft_limit) return true;  // done by another writer
      const bucket_int128 moved = static_cast<bucket_int128>(bucket_value(w)) - nt;
      const std::int64_t value = moved < bucket_floor ? bucket_floor : static_cast<std::int64_t>(moved);
      write_slot(tag + 1, s.config, now);
      if (word_.compare_exchange_strong(w, bucket_word(tag + 1, value), std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
        return true;
      }
    }
  }

  std::atomic<std::int64_t> word_{0};
  std::atomic<std::uint32_t> claim_{0};
  std::atomic<bool> modified_{false};
  slot slots_[2];
};

}  // namespace armor::detail
