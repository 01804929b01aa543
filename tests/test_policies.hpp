// Test doubles for the driver tests: small policies whose behaviour is
// scripted and whose calls are recorded. Single-threaded use only.
#pragma once

#include <armor/clock.hpp>
#include <armor/policy.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace armor_test {

/// Records "admit:<name>" and "settle:<name>:<kind>" into a shared log.
struct tracing_policy {
  using permit_type = armor::no_permit;
  std::string name;
  std::vector<std::string>* log;

  armor::admission<> admit(armor::context&) {
    log->push_back("admit:" + name);
    return armor::admission<>::admit();
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict& v) {
    log->push_back("settle:" + name + ":" + std::to_string(static_cast<int>(v.kind)));
  }
};

/// Rejects every call with the given code and retry_after.
struct rejecting_policy {
  using permit_type = armor::no_permit;
  std::error_code code;
  std::optional<std::chrono::nanoseconds> retry_after;
  bool retryable = true;
  int admits = 0;

  armor::admission<> admit(armor::context&) {
    ++admits;
    return armor::admission<>::reject(code, retry_after, retryable);
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict&) {}
};

/// Counts how its permits end: settled, or dropped unsettled.
struct permit_log {
  int issued = 0;
  int settled = 0;
  int dropped = 0;
};

/// A permit that tells its log whether it was settled or dropped.
class logged_permit {
 public:
  logged_permit() = default;
  explicit logged_permit(permit_log* log) : log_(log) { ++log_->issued; }
  logged_permit(logged_permit&& o) noexcept : log_(std::exchange(o.log_, nullptr)) {}
  logged_permit& operator=(logged_permit&& o) noexcept {
    release();
    log_ = std::exchange(o.log_, nullptr);
    return *this;
  }
  ~logged_permit() { release(); }
  void settle() {
    if (log_ != nullptr) ++log_->settled;
    log_ = nullptr;
  }

 private:
  void release() {
    if (log_ != nullptr) ++log_->dropped;
    log_ = nullptr;
  }
  permit_log* log_ = nullptr;
};

/// Asks the driver to wait `delay` before every attempt; the permit stands
/// for a reservation.
struct waiting_policy {
  using permit_type = logged_permit;
  std::chrono::nanoseconds delay;
  permit_log* log;
  std::vector<armor::verdict> verdicts{};

  armor::admission<logged_permit> admit(armor::context&) {
    return armor::admission<logged_permit>::wait(delay, logged_permit(log));
  }
  void settle(armor::context&, logged_permit p, const armor::verdict& v) {
    p.settle();
    verdicts.push_back(v);
  }
};

/// A looping policy: retries retryable verdicts up to `max_attempts`, with a
/// fixed delay; records the verdict and the context time of every round.
struct scripted_retry {
  using permit_type = armor::no_permit;
  struct loop_state {
    int rounds = 0;
  };
  int max_attempts = 3;
  std::chrono::nanoseconds delay{};
  std::vector<armor::verdict> seen{};

  armor::admission<> admit(armor::context&) { return armor::admission<>::admit(); }
  void settle(armor::context&, armor::no_permit, const armor::verdict&) {}
  armor::step next(const armor::context&, const armor::verdict& v, loop_state& s) {
    seen.push_back(v);
    if (v.ok() || !v.retryable || ++s.rounds >= max_attempts) return armor::step::done();
    return armor::step::retry_after(delay);
  }
};

/// Records every verdict it settles and the context time at settle.
struct verdict_recorder {
  using permit_type = armor::no_permit;
  std::vector<armor::verdict> verdicts{};
  std::vector<armor::timestamp> settled_at{};

  armor::admission<> admit(armor::context&) { return armor::admission<>::admit(); }
  void settle(armor::context& ctx, armor::no_permit, const armor::verdict& v) {
    verdicts.push_back(v);
    settled_at.push_back(ctx.now());
  }
};

/// Like verdict_recorder, but asks the driver to read the clock after the
/// operation (as a breaker timing slow calls does).
struct timing_recorder : verdict_recorder {
  static constexpr bool needs_completion_time = true;
};

/// A manual clock that also counts how often it is read.
class counting_clock {
 public:
  using rep = armor::manual_clock::rep;
  using period = armor::manual_clock::period;
  using duration = armor::manual_clock::duration;
  using time_point = armor::manual_clock::time_point;

  explicit counting_clock(armor::manual_clock base, int* reads) : base_(std::move(base)), reads_(reads) {}
  time_point now() const noexcept {
    ++*reads_;
    return base_.now();
  }
  void sleep_until(time_point t) const noexcept { base_.sleep_until(t); }

 private:
  armor::manual_clock base_;
  int* reads_;
};

}  // namespace armor_test
