// armor/deadline.hpp: one time budget for everything inside it.
//
//     auto p = armor::pipeline{
//         armor::deadline{2s},                       // the whole call: 2 s
//         armor::backoff{{.max_attempts = 5}},
//         armor::deadline{500ms},                    // each attempt: 500 ms
//     };
//
// Every retry, every wait and every attempt inside a deadline share its
// budget. Nested deadlines take the earliest. When the budget is spent the
// driver fails the call with errc::deadline_exceeded without calling the
// operation again, and it never starts a wait (rate limiter, backoff delay)
// that would end past the deadline. The operation sees the budget as
// `ctx.remaining()` and should use it as its own I/O timeout: the sync driver
// cannot interrupt a blocking call; the Asio driver cancels it. See
// docs/architecture.md#deadlines.
#pragma once

#include <armor/context.hpp>
#include <armor/detail/time.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/verdict.hpp>

#include <chrono>
#include <string>

namespace armor {

/// A time budget, measured from the moment the call (or, inside a retry
/// layer, the attempt) enters this layer. Stateless and thread-safe; costs one
/// addition per call. Throws armor::error(errc::invalid_argument) for a zero
/// or negative budget.
class deadline {
 public:
  using permit_type = no_permit;

  template <class Rep, class Period>
  explicit deadline(std::chrono::duration<Rep, Period> budget) : budget_(checked(detail::to_ns(budget))) {}

  /// The budget this layer grants.
  [[nodiscard]] std::chrono::nanoseconds budget() const noexcept { return budget_; }

  [[nodiscard]] admission<> admit(context& ctx) const noexcept {
    ctx.tighten_deadline(timestamp{std::chrono::nanoseconds{
        detail::saturating_add(ctx.now().time_since_epoch().count(), budget_.count())}});
    return admission<>::admit();
  }

  void settle(context&, no_permit, const verdict&) const noexcept {}

 private:
  static std::chrono::nanoseconds checked(std::int64_t ns) {
    if (ns <= 0) {
      detail::invalid_config("armor::deadline: the budget must be positive (got " + std::to_string(ns) + " ns)");
    }
    return std::chrono::nanoseconds{ns};
  }

  std::chrono::nanoseconds budget_;
};

}  // namespace armor
