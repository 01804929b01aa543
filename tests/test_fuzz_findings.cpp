// Regressions for issue 26: what fuzzing the HTTP parsers found (findings
// 1-6) and what comparing the token bucket with x/time/rate found (7-8).
// Each case failed before its fix.
#include <armor/http.hpp>
#include <armor/rate.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;
using std::chrono::seconds;
namespace http = armor::http;

namespace {

http::wall_time unix_time(nanoseconds d) { return http::wall_time{std::chrono::duration_cast<http::wall_time::duration>(d)}; }

std::int64_t unix_ns(http::wall_time t) {
  return std::chrono::duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }
using bucket = armor::token_bucket<armor::manual_clock>;

}  // namespace

TEST_CASE("issue 26 (1): parse_retry_after is defined for any now, even 1869 with a date in 2262",
          "[http][date][fuzz]") {
  // The latest date a wall_time holds, seen from a century before 1970: the
  // difference does not fit in int64 nanoseconds; it used to wrap to a
  // negative wait.
  const http::wall_time now = unix_time(-100LL * 365 * 86400 * 1s);
  const auto w = http::parse_retry_after("Fri, 11 Apr 2262 23:47:15 GMT", now);
  CHECK_FALSE(w.has_value());  // far beyond max_server_hint
  // From just before 1970, a date a few seconds after it is an ordinary wait.
  const auto near = http::parse_retry_after("Thu, 01 Jan 1970 00:00:05 GMT", unix_time(-1500ms));
  REQUIRE(near);
  CHECK(*near == 6500ms);
}

TEST_CASE("issue 26 (2): parse_rate_limit_reset with a wait from a now near time_point::max() does not overflow",
          "[http][rate_limit][fuzz]") {
  const http::wall_time now = http::wall_time::max() - 30s;
  CHECK_FALSE(http::parse_rate_limit_reset("60", now));        // now + 60 s cannot be held
  CHECK_FALSE(http::parse_rate_limit_reset("1m0s", now));      // a Go duration too
  const auto fits = http::parse_rate_limit_reset("10", now);  // now + 10 s can
  REQUIRE(fits);
  CHECK(fits->after == 10s);
  CHECK(fits->at == now + 10s);
}

TEST_CASE("issue 26 (3): a Retry-After date a fraction of a second beyond max_server_hint is refused",
          "[http][date][fuzz]") {
  // 2024-11-14T22:13:20Z is exactly 366 days after 2023-11-14T22:13:20Z.
  const std::string_view date = "Thu, 14 Nov 2024 22:13:20 GMT";
  const auto target = http::parse_http_date(date);
  REQUIRE(target);
  const http::wall_time exact = *target - std::chrono::duration_cast<http::wall_time::duration>(http::max_server_hint);
  CHECK(unix_ns(exact) == 1'700'000'000LL * 1'000'000'000);
  const auto at_limit = http::parse_retry_after(date, exact);
  REQUIRE(at_limit);
  CHECK(*at_limit == http::max_server_hint);
  CHECK_FALSE(http::parse_retry_after(date, exact - 500ms));  // 366 days + 0.5 s
  CHECK_FALSE(http::parse_retry_after(date, exact - 1ns));
}

TEST_CASE("issue 26 (4): an RFC 850 year is resolved against now's year even just before a New Year before 1970",
          "[http][date][fuzz]") {
  // 1969-12-31T23:59:59.5Z: the year is 1969, so "20" is 1920 (at most 50
  // years ahead), not 2020 (which it would be from 1970).
  const http::wall_time now = unix_time(-500ms);
  const auto d = http::parse_http_date("Thursday, 01-Jan-20 00:00:00 GMT", now);
  const auto expected = http::parse_http_date("Thu, 01 Jan 1920 00:00:00 GMT");
  REQUIRE(d);
  REQUIRE(expected);
  CHECK(*d == *expected);
  // From 1970 itself it is 2020.
  const auto later = http::parse_http_date("Wednesday, 01-Jan-20 00:00:00 GMT", unix_time(500ms));
  REQUIRE(later);
  CHECK(*later == *http::parse_http_date("Wed, 01 Jan 2020 00:00:00 GMT"));
}

TEST_CASE("issue 26 (5): a response with no status (0) is a failure whose code is an error", "[http][status][fuzz]") {
  const armor::verdict v = http::classify_status(0);
  CHECK(v.kind == armor::outcome::failure);
  CHECK_FALSE(v.retryable);
  CHECK(static_cast<bool>(v.code));
  CHECK(v.code == std::errc::protocol_error);
  const armor::verdict w = http::status_classifier{}.judge_status(0);
  CHECK(static_cast<bool>(w.code));
  // Every other status keeps its own code.
  CHECK(http::classify_status(-1).code == http::make_status_code(-1));
  CHECK(http::classify_status(600).code == http::make_status_code(600));
}

TEST_CASE("issue 26 (6): token_bucket_options::parse refuses a trailing separator, as its grammar says",
          "[token_bucket][parse][fuzz]") {
  for (const std::string_view bad : {"100/s,", "100/s;", "100/s, ", "100/s burst=2,", "100/s,burst=2;"}) {
    INFO(bad);
    CHECK_THROWS_AS(armor::token_bucket_options::parse(bad), armor::error);
  }
  CHECK(armor::token_bucket_options::parse("100/s ").burst == 1);
  CHECK(armor::token_bucket_options::parse("100/s, burst=2 ").burst == 2);
  CHECK_THROWS_AS(armor::rate::parse("100/s,"), armor::error);
}

TEST_CASE("issue 26 (7): reserve(0) while reservations are owed waits as try_acquire(0) says",
          "[token_bucket][fuzz]") {
  armor::manual_clock clock;
  bucket b{{.rate = {1, 1s}, .burst = 1}, clock};
  auto first = b.reserve(1, 10s, at(0ns));
  auto second = b.reserve(1, 10s, at(0ns));
  REQUIRE(first);
  REQUIRE(second);
  CHECK(second.wait() == 1s);  // the tokens stand at -1
  const auto probe = b.try_acquire(0, at(0ns));
  CHECK_FALSE(probe);
  CHECK(probe.retry_after() == 1s);
  const auto short_wait = b.reserve(0, 999ms, at(0ns));
  CHECK_FALSE(short_wait);
  CHECK(short_wait.retry_after() == 1s);
  const auto long_wait = b.reserve(0, 1s, at(0ns));
  REQUIRE(long_wait);
  CHECK(long_wait.wait() == 1s);  // was 0
  CHECK_FALSE(long_wait.permit());  // nothing is held for zero tokens
  // Nothing was taken: at 1 s the level is back at 0, and zero tokens pass at once.
  const auto later = b.reserve(0, 0s, at(1s));
  REQUIRE(later);
  CHECK(later.wait() == 0s);
  // Without debt, reserve(0) is granted at once as before.
  bucket fresh{{.rate = {1, 1s}, .burst = 1}, clock};
  const auto free_call = fresh.reserve(0, 0s, at(0ns));
  REQUIRE(free_call);
  CHECK(free_call.wait() == 0s);
  first.permit().commit();
  second.permit().commit();
}

TEST_CASE("issue 26 (8): stats().available is negative while reservations are owed", "[token_bucket][fuzz]") {
  armor::manual_clock clock;
  bucket b{{.rate = {1, 1s}, .burst = 1}, clock};
  auto r1 = b.reserve(1, 10s, at(0ns));
  auto r2 = b.reserve(1, 10s, at(0ns));
  auto r3 = b.reserve(1, 10s, at(0ns));
  REQUIRE((r1 && r2 && r3));
  CHECK(b.stats(at(0ns)).available == -2);
  CHECK(b.stats(at(500ms)).available == -2);  // -1.5 tokens: whole tokens, rounded down
  CHECK(b.stats(at(1s)).available == -1);
  CHECK(b.stats(at(3s)).available == 1);
  CHECK(b.stats(at(0ns)).until_full == 3s);
  CHECK(b.available(at(0ns)) == 0);  // what can be taken: never below 0
  r1.permit().commit();
  r2.permit().commit();
  r3.permit().commit();
}
