// armor/fallback.hpp: when the call fails, answer with something else.
// Defines armor::fallback<F>, fallback_options and errc_set.
//
//     using namespace std::chrono_literals;
//     auto p = armor::pipeline{
//         armor::fallback{[&](const armor::failure&, const armor::context&) {
//             return cache.get(key);                      // a stale answer beats none
//         }},
//         armor::deadline{2s},
//         std::ref(breaker),
//     };
//     std::string body = p.execute([&] { return fetch(key); });   // live, or the cached copy
//
// Which failures it handles, what `fn` may take and must return, where to
// put it and how fallbacks stack: docs/policies_order.md#fallback.
#pragma once

#include <armor/context.hpp>
#include <armor/error.hpp>
#include <armor/policy.hpp>
#include <armor/result.hpp>
#include <armor/verdict.hpp>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <system_error>
#include <type_traits>
#include <utility>

namespace armor {

/// A small set of armor::errc values (a bit mask; no allocation).
class errc_set {
 public:
  constexpr errc_set() noexcept = default;
  constexpr errc_set(std::initializer_list<errc> codes) noexcept {  // NOLINT(google-explicit-constructor)
    for (errc e : codes) mask_ |= bit(e);
  }

  [[nodiscard]] constexpr bool empty() const noexcept { return mask_ == 0; }
  [[nodiscard]] constexpr bool contains(errc e) const noexcept { return (mask_ & bit(e)) != 0; }
  /// True when `code` is an armor::errc in the set.
  [[nodiscard]] bool contains(const std::error_code& code) const noexcept {
    if (code.category() != error_category()) return false;
    const int v = code.value();
    return v > 0 && v < 64 && (mask_ & (std::uint64_t{1} << v)) != 0;
  }

 private:
  static constexpr std::uint64_t bit(errc e) noexcept {
    const int v = static_cast<int>(e);
    return v > 0 && v < 64 ? std::uint64_t{1} << v : 0;
  }
  std::uint64_t mask_ = 0;
};

/// Which failures a fallback handles. An aggregate:
/// `{.on_failure = false, .codes = {armor::errc::circuit_open}}`.
struct fallback_options {
  /// The upstream failed (verdict `failure`): an exception, an error value, a 5xx.
  bool on_failure = true;
  /// The upstream throttled the call (verdict `throttled`): a 429, an
  /// exhausted rate limit, once the layers inside stopped retrying it.
  bool on_throttled = true;
  /// The time budget ran out (verdict `timeout`, or deadline_exceeded before an
  /// attempt), or a wait would not fit in it (wait_exceeds_deadline).
  bool on_timeout = true;
  /// armor refused the call (verdict `rejected`): circuit_open, rate_limited,
  /// quota_exhausted, bulkhead_full, ...
  bool on_rejected = true;
  /// The caller cancelled (Asio). Off by default: nobody waits for the answer.
  bool on_cancelled = false;
  /// When not empty, only failures whose code is one of these (the code
  /// try_execute would report: e.g. circuit_open, quota_exhausted,
  /// deadline_exceeded, operation_failed, retries_exhausted).
  errc_set codes{};
};

/// A layer that answers with `fn`'s value when the layers inside it end in
/// a failure it handles (see fallback_options). An armor::policy with no
/// permit. `fn` may take `(const armor::failure&, const armor::context&)`,
/// `(const armor::failure&)` or nothing, and must return the operation's
/// type (void for a void operation); the pipeline checks this at compile
/// time. If `fn` throws, the call fails with that exception. Both drivers
/// run fallbacks (with the Asio driver `fn` is still a plain function).
/// Stateless: costs one test of the verdict on success; no allocation.
template <class F>
class fallback {
 public:
  using permit_type = no_permit;
  /// Tells the drivers to ask handles() and recover() after the inner layers.
  static constexpr bool recovers = true;

  explicit fallback(F fn, const fallback_options& options = {}) : fn_(std::move(fn)), options_(options) {}

  [[nodiscard]] admission<> admit(context&) const noexcept { return admission<>::admit(); }
  void settle(context&, no_permit, const verdict&) const noexcept {}

  /// Whether this fallback answers for a call that ended with `v` and `why`.
  [[nodiscard]] bool handles(const verdict& v, const failure& why) const noexcept {
    bool kind = false;
    // A refusal before any attempt on a spent budget, or of a wait that would
    // not fit in it, is a timeout to the caller.
    const bool deadline = why.code == errc::deadline_exceeded || why.code == errc::wait_exceeds_deadline;
    switch (v.kind) {
      case outcome::success: return false;
      case outcome::failure: kind = options_.on_failure; break;
      case outcome::throttled: kind = options_.on_throttled; break;
      case outcome::timeout: kind = options_.on_timeout; break;
      case outcome::rejected: kind = deadline ? options_.on_timeout : options_.on_rejected; break;
      case outcome::cancelled: kind = options_.on_cancelled; break;
    }
    return kind && (options_.codes.empty() || options_.codes.contains(why.code));
  }

  /// The answer for operation result type R.
  template <class R>
  R recover(const failure& why, const context& ctx) const {
    using ret = decltype(call(why, ctx));
    if constexpr (std::is_void_v<R>) {
      static_assert(std::is_void_v<ret>,
                    "armor::fallback: the operation returns void, so the fallback function must return void too");
      call(why, ctx);
    } else {
      static_assert(std::is_convertible_v<ret, R>,
                    "armor::fallback: the fallback function must return the operation's type (or one convertible to "
                    "it)");
      return call(why, ctx);
    }
  }

  [[nodiscard]] const fallback_options& options() const noexcept { return options_; }

 private:
  decltype(auto) call(const failure& why, const context& ctx) const {
    if constexpr (std::is_invocable_v<const F&, const failure&, const context&>) {
      return std::invoke(fn_, why, ctx);
    } else if constexpr (std::is_invocable_v<const F&, const failure&>) {
      return std::invoke(fn_, why);
    } else {
      static_assert(std::is_invocable_v<const F&>,
                    "armor::fallback: the fallback function must be callable as f(const armor::failure&, const "
                    "armor::context&), f(const armor::failure&) or f()");
      return std::invoke(fn_);
    }
  }

  F fn_;
  fallback_options options_;
};

template <class F>
fallback(F) -> fallback<F>;
template <class F>
fallback(F, const fallback_options&) -> fallback<F>;

}  // namespace armor
