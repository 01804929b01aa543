// armor/context.hpp: what one call knows about itself.
//
// The driver creates one context per call and hands it to every policy and to
// the operation. The operation may take it to size its own I/O timeout:
//
//     p.execute([&](const armor::context& ctx) {
//         return http_get(url, ctx.remaining());   // never outlive the deadline
//     }, {.key = upstream, .cost = 1});
//
// now() is the clock reading the driver took for this attempt (one read per
// attempt, shared by every layer); remaining() is measured from it. See
// docs/architecture.md#deadlines.
#pragma once

#include <armor/clock.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace armor {

/// Per-call inputs given to execute(): which key a keyed policy should use
/// (client IP, upstream host), how many units the call costs (tokens for a
/// limiter, requests or micro-dollars for a quota; 1 by default), and an
/// optional time budget of its own, e.g. what is left of the caller's
/// deadline (`{.timeout = outer_ctx.remaining()}`), which every layer's
/// deadline then tightens further. A timeout of zero or less fails the call
/// with deadline_exceeded without running the operation.
struct call_options {
  std::string_view key{};
  std::int64_t cost = 1;
  std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max();  ///< max() = none
};

namespace detail {
struct context_access;
}

/// The state of one call, shared by the driver, the policies and the
/// operation. Not shared between threads; not copied by the driver.
class context {
 public:
  /// A context at time `now`, with no deadline.
  explicit context(timestamp now, const call_options& options = {}) noexcept
      : now_(now), key_(options.key), cost_(options.cost) {
    if (options.timeout != std::chrono::nanoseconds::max()) {
      const auto t = std::max<std::int64_t>(options.timeout.count(), 0);
      tighten_deadline(timestamp{std::chrono::nanoseconds{detail::saturating_add(now.time_since_epoch().count(), t)}});
    }
  }

  /// The clock reading of this attempt (the pipeline clock's epoch).
  [[nodiscard]] timestamp now() const noexcept { return now_; }

  /// The earliest deadline of the layers around this point;
  /// timestamp::max() when there is none.
  [[nodiscard]] timestamp deadline() const noexcept { return deadline_; }
  [[nodiscard]] bool has_deadline() const noexcept { return deadline_ != timestamp::max(); }

  /// Time left until the deadline as of now(); never negative;
  /// nanoseconds::max() when there is no deadline.
  [[nodiscard]] std::chrono::nanoseconds remaining() const noexcept {
    if (!has_deadline()) return std::chrono::nanoseconds::max();
    return deadline_ > now_ ? deadline_ - now_ : std::chrono::nanoseconds::zero();
  }

  /// True once now() has reached the deadline.
  [[nodiscard]] bool expired() const noexcept { return now_ >= deadline_; }

  /// How many times the operation has been called in this call, counting the
  /// current attempt: 1 during the first attempt, 0 before it.
  [[nodiscard]] unsigned attempt() const noexcept { return attempt_; }

  /// The key given in call_options (empty if none).
  [[nodiscard]] std::string_view key() const noexcept { return key_; }

  /// The cost given in call_options (1 if none): the estimate policies
  /// charge at admission.
  [[nodiscard]] std::int64_t cost() const noexcept { return cost_; }

  /// For the operation: the real cost of this attempt, once it is known (an
  /// LLM call's token count arrives with the response). Policies that charge
  /// by cost settle with it instead of the estimate. Callable through the
  /// const context the operation receives; not thread-safe (one call, one
  /// thread at a time).
  void report_cost(std::int64_t actual) const noexcept { reported_cost_ = actual; }

  /// The cost the operation reported for this attempt, if it did.
  [[nodiscard]] std::optional<std::int64_t> reported_cost() const noexcept {
    if (reported_cost_ < 0) return std::nullopt;
    return reported_cost_;
  }

  /// For policies: moves the deadline earlier to `t` (never later). The driver
  /// restores the outer deadline when the policy's layer is left, so a
  /// deadline inside a retry layer is a per-attempt timeout.
  void tighten_deadline(timestamp t) noexcept {
    if (t < deadline_) deadline_ = t;
  }

 private:
  friend struct detail::context_access;

  timestamp now_;
  timestamp deadline_ = timestamp::max();
  std::string_view key_;
  std::int64_t cost_;
  mutable std::int64_t reported_cost_ = -1;  // < 0: not reported
  unsigned attempt_ = 0;
};

namespace detail {

/// What drivers may change in a context and policies may not.
struct context_access {
  static void set_now(context& c, timestamp t) noexcept { c.now_ = t; }
  static void set_deadline(context& c, timestamp t) noexcept { c.deadline_ = t; }
  static void begin_attempt(context& c) noexcept {
    ++c.attempt_;
    c.reported_cost_ = -1;
  }
};

}  // namespace detail
}  // namespace armor
