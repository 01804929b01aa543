// The default classifier's rules.
#include <armor/verdict.hpp>

#include "armor_catch.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

using namespace std::chrono_literals;

namespace {

// A minimal expected-like type (std::expected is C++23).
struct fetched {
  bool ok;
  std::error_code err;
  [[nodiscard]] bool has_value() const { return ok; }
  [[nodiscard]] std::error_code error() const { return err; }
};

template <class T>
armor::verdict judge(const T& v) {
  return armor::default_classifier{}(v);
}

armor::verdict judge_throw(std::exception_ptr e) { return armor::default_classifier{}(e); }

}  // namespace

TEST_CASE("plain values and void are successes") {
  CHECK(judge(42).ok());
  CHECK(judge(std::string("x")).ok());
  CHECK(judge(std::optional<int>{}).ok());  // an empty optional is an answer, not an error
  CHECK(armor::default_classifier{}().ok());
}

TEST_CASE("a truthy std::error_code is a retryable failure carrying the code") {
  const auto v = judge(std::make_error_code(std::errc::connection_refused));
  CHECK(v.kind == armor::outcome::failure);
  CHECK(v.retryable);
  CHECK(v.code == std::errc::connection_refused);
  CHECK(judge(std::error_code{}).ok());
}

TEST_CASE("a result-like value without a value is a retryable failure") {
  const auto v = judge(fetched{false, std::make_error_code(std::errc::host_unreachable)});
  CHECK(v.kind == armor::outcome::failure);
  CHECK(v.retryable);
  CHECK(v.code == std::errc::host_unreachable);
  CHECK(judge(fetched{true, {}}).ok());
}

TEST_CASE("an armor::result keeps its code and retry_after") {
  const armor::result<int> r = armor::failure{armor::errc::rate_limited, 2s, nullptr};
  const auto v = judge(r);
  CHECK(v.kind == armor::outcome::rejected);
  CHECK(v.code == armor::errc::rate_limited);
  CHECK(*v.retry_after == 2s);
  CHECK(judge(armor::result<int>{7}).ok());
}

TEST_CASE("exceptions are retryable failures; system_error keeps its code") {
  auto v = judge_throw(std::make_exception_ptr(std::runtime_error("x")));
  CHECK(v.kind == armor::outcome::failure);
  CHECK(v.retryable);
  v = judge_throw(std::make_exception_ptr(std::system_error(std::make_error_code(std::errc::broken_pipe))));
  CHECK(v.code == std::errc::broken_pipe);
}

TEST_CASE("armor::error from a nested pipeline keeps its meaning") {
  auto v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::circuit_open, 10s)));
  CHECK(v.kind == armor::outcome::rejected);
  CHECK(*v.retry_after == 10s);
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::deadline_exceeded)));
  CHECK(v.kind == armor::outcome::timeout);
  // A wait it refused for its deadline: the upstream was not called.
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::wait_exceeds_deadline, 3s)));
  CHECK(v.kind == armor::outcome::rejected);
  CHECK(v.retryable);
  CHECK(*v.retry_after == 3s);
  // An adaptive throttle's local refusal: the upstream was not called either.
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::client_throttled, 2s)));
  CHECK(v.kind == armor::outcome::rejected);
  CHECK(v.retryable);
  CHECK(*v.retry_after == 2s);
  // A load shedder's refusal: retryable later; a draining instance's: not here.
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::overloaded, 1s)));
  CHECK(v.kind == armor::outcome::rejected);
  CHECK(v.retryable);
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::draining)));
  CHECK(v.kind == armor::outcome::rejected);
  CHECK_FALSE(v.retryable);
  // A host set with no host listed: nothing was called; a retry finds none either.
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::no_host)));
  CHECK(v.kind == armor::outcome::rejected);
  CHECK_FALSE(v.retryable);
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::cancelled)));
  CHECK(v.kind == armor::outcome::cancelled);
  CHECK_FALSE(v.retryable);
  v = judge_throw(std::make_exception_ptr(armor::error(armor::errc::retries_exhausted)));
  CHECK(v.kind == armor::outcome::failure);
}

TEST_CASE("verdict helpers build what they say") {
  CHECK(armor::verdict::success().ok());
  CHECK_FALSE(armor::verdict::permanent_failure().retryable);
  const auto later = armor::verdict::retry_later(30s);
  CHECK(later.retryable);
  CHECK(*later.retry_after == 30s);
  CHECK(later.kind == armor::outcome::failure);
  const auto slow_down = armor::verdict::throttled(armor::errc::operation_failed, 2s);
  CHECK(slow_down.kind == armor::outcome::throttled);
  CHECK(slow_down.retryable);
  CHECK(*slow_down.retry_after == 2s);
  CHECK_FALSE(slow_down.ok());
  CHECK_FALSE(armor::verdict::throttled().retry_after);
  CHECK(armor::to_string(armor::outcome::throttled) == "throttled");
}
