// armor::errc and armor::error.
#include <armor/error.hpp>

#include "armor_catch.hpp"

#include <string>
#include <system_error>

using namespace std::chrono_literals;

TEST_CASE("errc values are std::error_codes of the armor category") {
  const std::error_code ec = armor::errc::rate_limited;
  CHECK(ec.category() == armor::error_category());
  CHECK(std::string(ec.category().name()) == "armor");
  CHECK(ec.message() == "rate limited");
  CHECK(ec == armor::errc::rate_limited);
  CHECK(ec != armor::errc::circuit_open);
  CHECK(static_cast<bool>(ec));
}

TEST_CASE("every errc has its own message") {
  for (int v = static_cast<int>(armor::errc::circuit_open); v <= static_cast<int>(armor::errc::no_host);
       ++v) {
    const std::error_code ec{v, armor::error_category()};
    CHECK(ec.message() != "unknown armor error");
  }
  CHECK(std::error_code(999, armor::error_category()).message() == "unknown armor error");
}

TEST_CASE("errc maps onto the portable conditions where one fits") {
  CHECK(std::error_code(armor::errc::deadline_exceeded) == std::errc::timed_out);
  // A wait refused because it would not fit the deadline is the deadline's doing too.
  CHECK(std::error_code(armor::errc::wait_exceeds_deadline) == std::errc::timed_out);
  CHECK(std::error_code(armor::errc::cancelled) == std::errc::operation_canceled);
  CHECK(std::error_code(armor::errc::invalid_argument) == std::errc::invalid_argument);
  CHECK(std::error_code(armor::errc::rate_limited) != std::errc::timed_out);
}

TEST_CASE("wait_exceeds_deadline is its own code, named and explained") {
  const std::error_code ec = armor::errc::wait_exceeds_deadline;
  CHECK(ec != armor::errc::deadline_exceeded);
  CHECK(armor::to_string(armor::errc::wait_exceeds_deadline) == "wait_exceeds_deadline");
  CHECK(ec.message() == "wait would not fit before the deadline");
  CHECK(ec.message() != std::error_code(armor::errc::deadline_exceeded).message());
  // Appended: the values of the older codes did not move.
  CHECK(static_cast<int>(armor::errc::storage_unavailable) == 11);
  CHECK(static_cast<int>(armor::errc::wait_exceeds_deadline) == 12);
}

TEST_CASE("concurrency_limited is its own code, named, explained and try-again") {
  const std::error_code ec = armor::errc::concurrency_limited;
  CHECK(armor::to_string(armor::errc::concurrency_limited) == "concurrency_limited");
  CHECK(ec.message() == "an adaptive concurrency limit is reached");
  CHECK(ec == std::errc::resource_unavailable_try_again);
  CHECK(ec != armor::errc::bulkhead_full);
  CHECK(static_cast<int>(armor::errc::concurrency_limited) == 13);
}

TEST_CASE("client_throttled is its own code, named and explained") {
  const std::error_code ec = armor::errc::client_throttled;
  CHECK(armor::to_string(armor::errc::client_throttled) == "client_throttled");
  CHECK(ec.message() == "refused locally: the upstream has been refusing this client");
  CHECK(ec != armor::errc::rate_limited);
  // Appended after the older codes, whose values did not move.
  CHECK(static_cast<int>(armor::errc::client_throttled) == 14);
}

TEST_CASE("overloaded and draining are their own codes, named and explained") {
  const std::error_code over = armor::errc::overloaded;
  const std::error_code drain = armor::errc::draining;
  CHECK(armor::to_string(armor::errc::overloaded) == "overloaded");
  CHECK(armor::to_string(armor::errc::draining) == "draining");
  CHECK(over.message() == "overloaded: the service is shedding load");
  CHECK(drain.message() == "draining: the service is shutting down");
  CHECK(over == std::errc::resource_unavailable_try_again);
  CHECK(drain != std::errc::resource_unavailable_try_again);  // not worth trying here again
  CHECK(over != drain);
  // Appended after the older codes, whose values did not move.
  CHECK(static_cast<int>(armor::errc::overloaded) == 15);
  CHECK(static_cast<int>(armor::errc::draining) == 16);
}

TEST_CASE("no_host is its own code, named and explained") {
  const std::error_code none = armor::errc::no_host;
  CHECK(armor::to_string(armor::errc::no_host) == "no_host");
  CHECK(none.message() == "no host: the host set lists no host");
  CHECK(static_cast<int>(armor::errc::no_host) == 17);
}

TEST_CASE("armor::error is a system_error that carries retry_after") {
  const armor::error e{armor::errc::circuit_open, 30s};
  const std::system_error& base = e;
  CHECK(base.code() == armor::errc::circuit_open);
  REQUIRE(e.retry_after().has_value());
  CHECK(*e.retry_after() == 30s);
  CHECK_FALSE(armor::error{armor::errc::bulkhead_full}.retry_after().has_value());
  const armor::error with_text{armor::errc::invalid_argument, "armor::x: rate must be positive"};
  CHECK(std::string(with_text.what()).find("rate must be positive") != std::string::npos);
}
