// armor::result and armor::failure.
#include <armor/result.hpp>

#include "armor_catch.hpp"

#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

TEST_CASE("a result holds a value") {
  armor::result<std::string> r = std::string("body");
  REQUIRE(r.has_value());
  CHECK(static_cast<bool>(r));
  CHECK(*r == "body");
  CHECK(r->size() == 4);
  CHECK(r.value() == "body");
  CHECK_FALSE(r.code());
  CHECK_FALSE(r.retry_after().has_value());
  CHECK(r.value_or("x") == "body");
}

TEST_CASE("a failure made by armor throws armor::error from value()") {
  armor::result<int> r = armor::failure{armor::errc::rate_limited, 3s, nullptr};
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(*r.retry_after() == 3s);
  CHECK(r.value_or(-1) == -1);
  CHECK_FALSE(r.error().from_operation());
  try {
    (void)r.value();
    FAIL("value() did not throw");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::rate_limited);
    CHECK(*e.retry_after() == 3s);
  }
}

TEST_CASE("a failure of the operation rethrows its own exception from value()") {
  const auto cause = std::make_exception_ptr(std::out_of_range("gone"));
  armor::result<int> r = armor::failure{armor::errc::retries_exhausted, std::nullopt, cause};
  CHECK(r.error().from_operation());
  CHECK_THROWS_AS(r.value(), std::out_of_range);
}

TEST_CASE("a void result has a value or a failure") {
  armor::result<void> ok{std::in_place};
  CHECK(ok.has_value());
  CHECK_NOTHROW(ok.value());
  armor::result<void> bad = armor::failure{armor::errc::deadline_exceeded, std::nullopt, nullptr};
  CHECK_FALSE(bad.has_value());
  CHECK_THROWS_AS(bad.value(), armor::error);
}

TEST_CASE("a result can be moved out of") {
  armor::result<std::string> r = std::string(100, 'x');
  std::string s = std::move(r).value();
  CHECK(s.size() == 100);
}
