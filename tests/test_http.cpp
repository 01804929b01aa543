// armor::http: HTTP-date, Retry-After and rate-limit header parsing (valid
// forms, and adversarial input: truncations, embedded NULs, huge numbers,
// every byte value), header access for several response shapes, the status
// classifier and its use in a pipeline.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/http.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cctype>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;
using std::chrono::seconds;
namespace http = armor::http;

namespace {

/// Wall time at a Unix second.
http::wall_time unix_time(std::int64_t s) { return http::wall_time{std::chrono::duration_cast<http::wall_time::duration>(seconds{s})}; }

std::int64_t unix_seconds(http::wall_time t) {
  return std::chrono::duration_cast<seconds>(t.time_since_epoch()).count();
}

/// 2023-11-14T22:13:20Z: a fixed "now" for every test.
const http::wall_time now = unix_time(1'700'000'000);

/// A response shaped like cpp-httplib's: `int status` and a `headers`
/// multimap (httplib's compares names case-insensitively; armor does not
/// rely on that and searches linearly).
struct member_response {
  int status = 200;
  std::multimap<std::string, std::string> headers;
};

/// A response that only exposes its fields through the ADL customization point.
struct opaque_response {
  int code = 200;
  std::vector<std::pair<std::string, std::string>> fields;
  mutable int lookups = 0;
};
std::optional<std::string_view> armor_http_header(const opaque_response& r, std::string_view name) {
  ++r.lookups;
  for (const auto& [k, v] : r.fields) {
    if (k == name) return std::string_view(v);  // exact case, as this user decided
  }
  return std::nullopt;
}
int armor_http_status(const opaque_response& r) { return r.code; }

member_response with(int status, std::initializer_list<std::pair<const std::string, std::string>> h) {
  return member_response{status, std::multimap<std::string, std::string>(h)};
}

static_assert(http::response<member_response>);
static_assert(http::response<opaque_response>);
static_assert(http::response<http::header_map>);
static_assert(!http::response<int>);
static_assert(!http::response<std::string>);

/// IMF-fixdate of a Unix second, written independently of the parser with
/// std::chrono's calendar.
std::string imf(std::int64_t s) {
  using namespace std::chrono;
  const sys_seconds t{seconds{s}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> hms{t - day};
  static constexpr const char* wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02lld:%02lld:%02lld GMT", wd[weekday{day}.c_encoding()],
                static_cast<unsigned>(ymd.day()), mon[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<long long>(hms.hours().count()),
                static_cast<long long>(hms.minutes().count()), static_cast<long long>(hms.seconds().count()));
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------
// HTTP-date

TEST_CASE("http: the three HTTP-date forms denote the same instant", "[http][date]") {
  const std::int64_t expected = 784'111'777;  // 1994-11-06T08:49:37Z
  for (const std::string_view s : {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                   "Sun Nov  6 08:49:37 1994", "  Sun, 06 Nov 1994 08:49:37 GMT\t",
                                   "sun, 06 nov 1994 08:49:37 gmt", "SUNDAY, 06-NOV-94 08:49:37 GMT"}) {
    INFO(s);
    const auto t = http::parse_http_date(s, now);
    REQUIRE(t);
    CHECK(unix_seconds(*t) == expected);
  }
  // asctime with a two-digit day
  CHECK(unix_seconds(*http::parse_http_date("Wed Nov 16 08:49:37 1994", now)) == expected + 10 * 86400);
  // the one-argument form reads the clock only for RFC 850; same answer here
  CHECK(unix_seconds(*http::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")) == expected);
}

TEST_CASE("http: every day of 1900-2200 round-trips through IMF-fixdate", "[http][date]") {
  // Cross-check against std::chrono's calendar, one instant per day at a
  // varying time of day (including the first and last second of the day).
  const std::int64_t first = -2'208'988'800;  // 1900-01-01
  const std::int64_t last = 7'258'118'400;    // 2200-01-01
  std::int64_t mismatches = 0;
  std::int64_t checked = 0;
  std::int64_t k = 0;
  for (std::int64_t day = first; day < last; day += 86400, ++k) {
    const std::int64_t s = day + (k * 7919) % 86400;
    const auto t = http::parse_http_date(imf(s), now);
    if (!t || unix_seconds(*t) != s) ++mismatches;
    ++checked;
  }
  CHECK(checked > 100'000);
  CHECK(mismatches == 0);
  CHECK(unix_seconds(*http::parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", now)) == 0);
  CHECK(unix_seconds(*http::parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT", now)) == -1);
}

TEST_CASE("http: calendar edge cases", "[http][date]") {
  CHECK(http::parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT", now));
  CHECK(http::parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT", now));   // divisible by 400
  CHECK_FALSE(http::parse_http_date("Wed, 29 Feb 2023 00:00:00 GMT", now));
  CHECK_FALSE(http::parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT", now));  // divisible by 100
  CHECK_FALSE(http::parse_http_date("Thu, 31 Apr 2024 00:00:00 GMT", now));
  CHECK_FALSE(http::parse_http_date("Thu, 32 Jan 2024 00:00:00 GMT", now));
  CHECK_FALSE(http::parse_http_date("Thu, 00 Jan 2024 00:00:00 GMT", now));
  // A leap second reads as the next minute's first second.
  CHECK(unix_seconds(*http::parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT", now)) ==
        unix_seconds(*http::parse_http_date("Sun, 01 Jan 2017 00:00:00 GMT", now)));
  CHECK_FALSE(http::parse_http_date("Sat, 31 Dec 2016 23:59:61 GMT", now));
  CHECK_FALSE(http::parse_http_date("Sat, 31 Dec 2016 24:00:00 GMT", now));
  CHECK_FALSE(http::parse_http_date("Sat, 31 Dec 2016 23:60:00 GMT", now));
  // Outside what system_clock::time_point holds (libstdc++: nanoseconds, 1677-2262).
  CHECK_FALSE(http::parse_http_date("Sat, 01 Jan 0000 00:00:00 GMT", now));
  CHECK_FALSE(http::parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT", now));
  CHECK_FALSE(http::parse_http_date("Sun Jan  1 00:00:00 1600", now));
}

TEST_CASE("http: RFC 850 two-digit years are at most 50 years ahead of now", "[http][date]") {
  // now is 2023: "73" is 2073 (50 years ahead), "74" is 1974.
  CHECK(unix_seconds(*http::parse_http_date("Sunday, 01-Jan-73 00:00:00 GMT", now)) ==
        unix_seconds(*http::parse_http_date("Sun, 01 Jan 2073 00:00:00 GMT", now)));
  CHECK(unix_seconds(*http::parse_http_date("Tuesday, 01-Jan-74 00:00:00 GMT", now)) ==
        unix_seconds(*http::parse_http_date("Tue, 01 Jan 1974 00:00:00 GMT", now)));
  CHECK(unix_seconds(*http::parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT", now)) == 946'684'800);
  // The pivot moves with now.
  const auto in_2090 = unix_time(3'786'912'000);  // 2090-01-01
  CHECK(unix_seconds(*http::parse_http_date("Saturday, 01-Jan-94 00:00:00 GMT", in_2090)) ==
        unix_seconds(*http::parse_http_date("Sat, 01 Jan 2094 00:00:00 GMT", now)));
  // 2140 is 50 years ahead of 2090: the next century; 2141 is not: 2041.
  CHECK(unix_seconds(*http::parse_http_date("Saturday, 01-Jan-40 00:00:00 GMT", in_2090)) ==
        unix_seconds(*http::parse_http_date("Sat, 01 Jan 2140 00:00:00 GMT", now)));
  CHECK(unix_seconds(*http::parse_http_date("Saturday, 01-Jan-41 00:00:00 GMT", in_2090)) ==
        unix_seconds(*http::parse_http_date("Sat, 01 Jan 2041 00:00:00 GMT", now)));
}

TEST_CASE("http: malformed HTTP-dates are rejected", "[http][date][adversarial]") {
  for (const std::string_view s : {
           "", " ", "GMT", "Sun", "Sun,", "Sun, ", "0", "784111777",
           "Sun, 06 Nov 1994 08:49:37 UTC",        // only GMT
           "Sun, 06 Nov 1994 08:49:37 +0000",
           "Sun, 06 Nov 1994 08:49:37",            // no zone
           "Sun, 6 Nov 1994 08:49:37 GMT",         // IMF needs two-digit days
           "Sun, 06 Nov 94 08:49:37 GMT",          // and four-digit years
           "Sun, 06 Nov 01994 08:49:37 GMT",
           "Sun, 06 Nov 1994 8:49:37 GMT",
           "Sun, 06 Nov 1994 08:49 GMT",
           "Sun, 06 Nov 1994 08:49:37.5 GMT",
           "Sun, 06 Foo 1994 08:49:37 GMT",
           "Sun, 06 November 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 08:49:37 GMT x",      // trailing garbage
           "Sun, 06 Nov 1994 08:49:37 GMTx",
           "Sun,06 Nov 1994 08:49:37 GMT",         // missing blank
           "Sun,  06 Nov 1994 08:49:37 GMT",       // extra blank
           "Sun, 06  Nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 08:49:37  GMT",
           "Sun, 06 Nov 1994 08:49:37GMT",
           "Sun, 06-Nov-1994 08:49:37 GMT",
           "Sunday, 06 Nov 1994 08:49:37 GMT",     // long weekday with IMF layout
           "Sun, 06-Nov-94 08:49:37 GMT",          // short weekday with RFC 850 layout
           "Sunday, 06-Nov-94 08:49:37",
           "Sunday, 06-Nov-994 08:49:37 GMT",
           "Sundae, 06-Nov-94 08:49:37 GMT",
           "Xyz, 06 Nov 1994 08:49:37 GMT",
           "Sun Nov 6 08:49:37 1994",              // asctime: one-digit day needs a leading blank
           "Sun Nov  6 08:49:37 94",
           "Sun Nov 06 08:49:37 1994 GMT",
           "Sun Nov  6 08:49:37 1994x",
           "Sun Nov   6 08:49:37 1994",
           "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  // two values
           "Sun, -6 Nov 1994 08:49:37 GMT",
           "Sun, +6 Nov 1994 08:49:37 GMT",
           "Sun, 06 Nov 1994 08:-9:37 GMT",
           "\xEF\xBB\xBFSun, 06 Nov 1994 08:49:37 GMT",  // a byte-order mark
           "Sun, \xD9\xA0\xD9\xA6 Nov 1994 08:49:37 GMT",  // Arabic-Indic digits
       }) {
    INFO('"' << std::string(s) << '"');
    CHECK_FALSE(http::parse_http_date(s, now));
  }
}

TEST_CASE("http: every proper prefix of a date, and a NUL anywhere, is rejected", "[http][date][adversarial]") {
  for (const std::string full : {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                 "Sun Nov  6 08:49:37 1994"}) {
    REQUIRE(http::parse_http_date(full, now));
    int accepted = 0;
    for (std::size_t n = 0; n < full.size(); ++n) {
      if (http::parse_http_date(std::string_view(full).substr(0, n), now)) ++accepted;
      std::string with_nul = full;
      with_nul[n] = '\0';
      if (http::parse_http_date(with_nul, now)) ++accepted;
      std::string inserted = full;
      inserted.insert(n, 1, '\0');
      if (http::parse_http_date(inserted, now)) ++accepted;
    }
    std::string appended = full;
    appended.push_back('\0');
    if (http::parse_http_date(appended, now)) ++accepted;
    CHECK(accepted == 0);
  }
}

TEST_CASE("http: any single byte changed gives a valid date or nothing", "[http][date][adversarial]") {
  // Replacing one byte by each of the 256 values must never crash (this runs
  // under ASan and UBSan in CI); whatever parses must be exactly the date
  // the text says, as std::chrono's calendar writes it (the weekday aside:
  // it is not checked against the date).
  const std::string full = "Sun, 06 Nov 1994 08:49:37 GMT";
  int parsed = 0;
  int wrong = 0;
  for (std::size_t i = 0; i < full.size(); ++i) {
    for (int b = 0; b < 256; ++b) {
      std::string s = full;
      s[i] = static_cast<char>(b);
      if (const auto t = http::parse_http_date(s, now)) {
        ++parsed;
        const std::string back = imf(unix_seconds(*t));
        bool same = back.size() == s.size();
        for (std::size_t k = 3; same && k < s.size(); ++k) {
          same = std::tolower(static_cast<unsigned char>(back[k])) == std::tolower(static_cast<unsigned char>(s[k]));
        }
        if (!same) {
          ++wrong;
          INFO(s << " read as " << back);
          CHECK(same);
        }
      }
    }
  }
  CHECK(parsed > 50);  // other digits and other cases give other valid dates
  CHECK(wrong == 0);
}

TEST_CASE("http: long and huge inputs", "[http][date][adversarial]") {
  const std::string many_a(1 << 20, 'A');
  CHECK_FALSE(http::parse_http_date(many_a, now));
  CHECK_FALSE(http::parse_retry_after(many_a, now));
  const std::string many_digits(1 << 20, '9');
  CHECK_FALSE(http::parse_http_date(many_digits, now));
  CHECK_FALSE(http::parse_retry_after(many_digits, now));
  CHECK_FALSE(http::parse_rate_limit_reset(many_digits, now));
  CHECK_FALSE(http::parse_rate_limit_count(many_digits));
  const std::string many_zeros = std::string(1 << 20, '0') + "7";
  CHECK(http::parse_retry_after(many_zeros, now) == nanoseconds{7s});
  const std::string blanks = std::string(1 << 16, ' ') + "5" + std::string(1 << 16, '\t');
  CHECK(http::parse_retry_after(blanks, now) == nanoseconds{5s});
  const std::string long_date = "Sun, 06 Nov 1994 08:49:37 GMT" + std::string(1 << 16, 'x');
  CHECK_FALSE(http::parse_http_date(long_date, now));
}

// ---------------------------------------------------------------------------
// Retry-After

TEST_CASE("http: Retry-After delta-seconds", "[http][retry-after]") {
  CHECK(http::parse_retry_after("120", now) == nanoseconds{120s});
  CHECK(http::parse_retry_after("0", now) == nanoseconds{0});
  CHECK(http::parse_retry_after("000120", now) == nanoseconds{120s});
  CHECK(http::parse_retry_after(" \t120 \t", now) == nanoseconds{120s});
  CHECK(http::parse_retry_after("31622400", now) == nanoseconds{http::max_server_hint});  // exactly 366 days
  CHECK_FALSE(http::parse_retry_after("31622401", now));  // beyond: rejected, not clamped
  CHECK_FALSE(http::parse_retry_after("1700000000", now));  // a Unix time sent by mistake
  CHECK_FALSE(http::parse_retry_after("9223372036854775807", now));
  CHECK_FALSE(http::parse_retry_after("9223372036854775808", now));
  CHECK_FALSE(http::parse_retry_after("99999999999999999999999999999999", now));
  for (const std::string_view s : {"", " ", "\t", "-1", "-0", "+1", "1.5", "1.", ".5", "1e3", "12s", "0x10",
                                   "1 2", "1,2", "120, 60", "١٢", "inf", "NaN", "1\r\n"}) {
    INFO('"' << std::string(s) << '"');
    CHECK_FALSE(http::parse_retry_after(s, now));
  }
  const std::string nul_inside("1\0" "2", 3);
  CHECK_FALSE(http::parse_retry_after(nul_inside, now));
  const std::string nul_after("12\0", 3);
  CHECK_FALSE(http::parse_retry_after(nul_after, now));
}

TEST_CASE("http: Retry-After as a date, relative to now", "[http][retry-after]") {
  // now is Tue, 14 Nov 2023 22:13:20 GMT
  CHECK(http::parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now) == nanoseconds{30s});
  CHECK(http::parse_retry_after("Tuesday, 14-Nov-23 22:14:20 GMT", now) == nanoseconds{60s});
  CHECK(http::parse_retry_after("Tue Nov 14 22:13:21 2023", now) == nanoseconds{1s});
  CHECK(http::parse_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", now) == nanoseconds{0});
  CHECK(http::parse_retry_after("Mon, 13 Nov 2023 22:13:20 GMT", now) == nanoseconds{0});  // past: now
  CHECK(http::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == nanoseconds{0});
  CHECK(http::parse_retry_after("Thu, 14 Nov 2024 22:13:20 GMT", now) == nanoseconds{366 * 24h});
  CHECK_FALSE(http::parse_retry_after("Thu, 14 Nov 2024 22:13:21 GMT", now));  // beyond max_server_hint
  CHECK_FALSE(http::parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now));
  CHECK_FALSE(http::parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT garbage", now));
}

// ---------------------------------------------------------------------------
// Rate-limit values

TEST_CASE("http: rate-limit resets: waits, Unix times, durations, dates", "[http][rate-limit]") {
  auto after = [](std::string_view v) -> std::optional<nanoseconds> {
    const auto r = http::parse_rate_limit_reset(v, now);
    if (!r) return std::nullopt;
    CHECK(r->at == now + r->after);  // consistent whenever the reset is not in the past
    return r->after;
  };
  CHECK(after("30") == nanoseconds{30s});
  CHECK(after("0") == nanoseconds{0});
  CHECK(after("1.5") == nanoseconds{1500ms});
  CHECK(after("0.001") == nanoseconds{1ms});
  CHECK(after("0.0000000019") == nanoseconds{1});  // below a nanosecond: truncated
  CHECK(after("1700000060") == nanoseconds{60s});  // GitHub: Unix seconds
  CHECK(after("1700000000.25") == nanoseconds{250ms});  // Discord: Unix seconds with a fraction
  CHECK(after("1700000060000") == nanoseconds{60s});  // Unix milliseconds
  CHECK(after("6m0s") == nanoseconds{6min});  // OpenAI
  CHECK(after("1h2m3.5s") == nanoseconds{1h + 2min + 3500ms});
  CHECK(after("20ms") == nanoseconds{20ms});
  CHECK(after("7us") == nanoseconds{7us});
  CHECK(after("7\xC2\xB5s") == nanoseconds{7us});
  CHECK(after("Tue, 14 Nov 2023 22:14:20 GMT") == nanoseconds{60s});
  CHECK(after("999999") == nanoseconds{999999s});
  // A reset in the past is due now; its absolute time is kept.
  const auto past = http::parse_rate_limit_reset("1699999990", now);
  REQUIRE(past);
  CHECK(past->after == nanoseconds{0});
  CHECK(unix_seconds(past->at) == 1'699'999'990);

  for (const std::string_view s : {"", " ", "-5", "+5", "abc", "1e9", "5x", "6m0", "m", "1..5", "1.", ".5",
                                   "1.2.3", "s5", "5 s", "5S", "1d", "0x1F",
                                   "999999999",        // 31 years as a wait: beyond max_server_hint
                                   "99999999999",      // Unix seconds in the year 5138
                                   "150000000000",     // between the seconds and the milliseconds ranges
                                   "100000000000000",  // milliseconds beyond the range
                                   "9223372036854775808", "9223372036.854775808", "2562048h"}) {
    INFO('"' << std::string(s) << '"');
    CHECK_FALSE(http::parse_rate_limit_reset(s, now));
  }
  CHECK(http::parse_rate_limit_count("5000") == 5000);
  CHECK(http::parse_rate_limit_count(" 0 ") == 0);
  CHECK_FALSE(http::parse_rate_limit_count("-1"));
  CHECK_FALSE(http::parse_rate_limit_count("5000.0"));
  CHECK_FALSE(http::parse_rate_limit_count("9223372036854775808"));
}

TEST_CASE("http: read_rate_limit understands what real servers send", "[http][rate-limit]") {
  SECTION("GitHub") {
    const auto r = with(200, {{"x-ratelimit-limit", "5000"},
                              {"x-ratelimit-remaining", "4999"},
                              {"x-ratelimit-reset", "1700003600"},
                              {"x-ratelimit-used", "1"},
                              {"x-ratelimit-resource", "core"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 5000);
    CHECK(i.remaining == 4999);
    CHECK(i.used == 1);
    CHECK(i.reset_after == nanoseconds{1h});
    REQUIRE(i.reset_at);
    CHECK(unix_seconds(*i.reset_at) == 1'700'003'600);
    CHECK_FALSE(i.window);
  }
  SECTION("Discord: Reset-After wins over the Unix time") {
    const auto r = with(200, {{"X-RateLimit-Limit", "5"},
                              {"X-RateLimit-Remaining", "0"},
                              {"X-RateLimit-Reset", "1700000001.5"},
                              {"X-RateLimit-Reset-After", "1.25"},
                              {"X-RateLimit-Bucket", "abcd1234"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 5);
    CHECK(i.remaining == 0);
    CHECK(i.reset_after == nanoseconds{1250ms});
  }
  SECTION("X (Twitter)") {
    const auto r = with(200, {{"x-rate-limit-limit", "900"},
                              {"x-rate-limit-remaining", "899"},
                              {"x-rate-limit-reset", "1700000900"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 900);
    CHECK(i.remaining == 899);
    CHECK(i.reset_after == nanoseconds{900s});
  }
  SECTION("OpenAI") {
    const auto r = with(200, {{"x-ratelimit-limit-requests", "60"},
                              {"x-ratelimit-remaining-requests", "59"},
                              {"x-ratelimit-reset-requests", "1s"},
                              {"x-ratelimit-limit-tokens", "150000"},
                              {"x-ratelimit-remaining-tokens", "149984"},
                              {"x-ratelimit-reset-tokens", "6m0s"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 60);
    CHECK(i.remaining == 59);
    CHECK(i.reset_after == nanoseconds{1s});
  }
  SECTION("IETF draft 06 and earlier: RateLimit-Limit/Remaining/Reset, policy in the limit") {
    const auto r = with(200, {{"RateLimit-Limit", "100, 100;w=60, 1000;w=3600"},
                              {"RateLimit-Remaining", "40"},
                              {"RateLimit-Reset", "20"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 100);
    CHECK(i.remaining == 40);
    CHECK(i.reset_after == nanoseconds{20s});
    CHECK(i.window == nanoseconds{60s});
  }
  SECTION("IETF draft 06: separate RateLimit-Policy") {
    const auto r = with(200, {{"RateLimit-Limit", "10"},
                              {"RateLimit-Remaining", "9"},
                              {"RateLimit-Reset", "3"},
                              {"RateLimit-Policy", "10;w=5"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 10);
    CHECK(i.window == nanoseconds{5s});
  }
  SECTION("IETF draft 07: RateLimit dictionary and RateLimit-Policy matched by limit") {
    const auto r = with(200, {{"RateLimit", "limit=1000, remaining=90, reset=200"},
                              {"RateLimit-Policy", "100;w=60, 1000;w=86400"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 1000);
    CHECK(i.remaining == 90);
    CHECK(i.reset_after == nanoseconds{200s});
    CHECK(i.window == nanoseconds{86400s});
  }
  SECTION("IETF draft 08+: the policy with the fewest remaining, matched by name") {
    const auto r = with(200, {{"RateLimit", "\"burst\";r=40;t=5, \"daily\";r=3;t=7200"},
                              {"RateLimit-Policy", "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.remaining == 3);
    CHECK(i.reset_after == nanoseconds{7200s});
    CHECK(i.limit == 1000);
    CHECK(i.window == nanoseconds{86400s});
  }
  SECTION("IETF draft 08+: a single policy with a token name, quoted commas and semicolons elsewhere") {
    const auto r = with(200, {{"RateLimit", "default;r=50;t=30"},
                              {"RateLimit-Policy", "\"odd, ;name\";q=7;w=1, default;q=100;w=60;qu=\"requests\""}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.remaining == 50);
    CHECK(i.reset_after == nanoseconds{30s});
    // "default" is a token, not a quoted name: matched as the only... no, two
    // policies are listed and names only match quoted strings, so no limit.
    CHECK_FALSE(i.limit);
  }
  SECTION("armor's own server headers round-trip") {
    armor::token_bucket<armor::manual_clock> bucket{{.rate = {10, 1s}, .burst = 5}, armor::manual_clock{}};
    for (int k = 0; k < 3; ++k) (void)bucket.try_acquire();
    const armor::token_bucket_decision<> d = bucket.try_acquire();
    member_response r;
    http::rate_limit_headers(d, [&](std::string_view n, std::string_view v) { r.headers.emplace(n, v); },
                              {.wall_now = now});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 5);
    CHECK(i.remaining == 1);
    CHECK(i.reset_after == nanoseconds{1s});  // 400 ms of debt, rounded up to the second
    // RateLimit-Policy says 10;w=1 (the refill rate); RateLimit-Limit, the
    // expiring limit, is the burst. The policy's window is not the limit's.
    CHECK(http::header(r, "RateLimit-Policy") == "10;w=1");
    CHECK_FALSE(i.window);
    // A bucket whose burst refills in whole seconds: limit and window pair up.
    armor::token_bucket<armor::manual_clock> even{{.rate = {10, 1s}, .burst = 20}, armor::manual_clock{}};
    member_response e;
    http::rate_limit_headers(even.try_acquire(), [&](std::string_view n, std::string_view v) {
      e.headers.emplace(n, v);
    });
    const auto j = http::read_rate_limit(e, now);
    CHECK(http::header(e, "RateLimit-Policy") == "20;w=2");
    CHECK(j.limit == 20);
    CHECK(j.window == nanoseconds{2s});
  }
  SECTION("IETF draft 06: a lone policy whose quota is not the limit is not the limit's window") {
    const auto r = with(200, {{"RateLimit-Limit", "5"},
                              {"RateLimit-Remaining", "4"},
                              {"RateLimit-Reset", "1"},
                              {"RateLimit-Policy", "10;w=1"}});
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 5);  // RateLimit-Limit, not the policy's quota
    CHECK(i.remaining == 4);
    CHECK_FALSE(i.window);
    // Without RateLimit-Limit the lone policy gives both.
    const auto p = http::read_rate_limit(with(200, {{"RateLimit-Policy", "10;w=1"}}), now);
    CHECK(p.limit == 10);
    CHECK(p.window == nanoseconds{1s});
  }
  SECTION("malformed fields are absent, the rest still read") {
    const auto r = with(200, {{"X-RateLimit-Limit", "lots"},
                              {"X-RateLimit-Remaining", "-3"},
                              {"X-RateLimit-Used", "7"},
                              {"X-RateLimit-Reset", "soon"},
                              {"RateLimit", "\"unterminated;r=5;t=1"},
                              {"RateLimit-Policy", ";;;,,,=,\"\",q=,w="}});
    const auto i = http::read_rate_limit(r, now);
    CHECK_FALSE(i.limit);
    CHECK_FALSE(i.remaining);
    CHECK(i.used == 7);
    CHECK_FALSE(i.reset_after);
    CHECK_FALSE(i.window);
    CHECK_FALSE(i.empty());
  }
  SECTION("no rate-limit headers") {
    const auto i = http::read_rate_limit(with(200, {{"Content-Type", "text/plain"}}), now);
    CHECK(i.empty());
  }
}

TEST_CASE("http: structured-field garbage never breaks the RateLimit reader", "[http][rate-limit][adversarial]") {
  const std::string base = "\"burst\";r=40;t=5, \"daily\";r=3;t=7200";
  int read = 0;
  for (std::size_t n = 0; n <= base.size(); ++n) {
    for (const char c : {'\0', '"', ',', ';', '=', '\\', ' ', 'x'}) {
      std::string s = base.substr(0, n);
      s.push_back(c);
      s += base.substr(n);
      const auto i = http::read_rate_limit(with(200, {{"RateLimit", s}, {"RateLimit-Policy", s}}), now);
      if (i.remaining) {
        ++read;
        CHECK(*i.remaining >= 0);
        CHECK(*i.remaining <= 400);
      }
    }
  }
  CHECK(read > 0);
  const std::string huge = "r=" + std::string(1 << 16, '9') + ";t=" + std::string(1 << 16, '9');
  CHECK(http::read_rate_limit(with(200, {{"RateLimit", huge}}), now).empty());
}

// ---------------------------------------------------------------------------
// Header access

namespace {

/// A rate limiter's answer that is not armor's: the writers take any type
/// with limit(), remaining(), reset(), retry_after() and explicit bool.
struct foreign_decision {
  bool granted = false;
  std::int64_t lim = 10;
  std::int64_t left = 0;
  nanoseconds until_whole{2'500'000'000};
  nanoseconds wait{1'200'000'000};
  explicit operator bool() const noexcept { return granted; }
  std::int64_t limit() const noexcept { return lim; }
  std::int64_t remaining() const noexcept { return left; }
  nanoseconds reset() const noexcept { return until_whole; }
  nanoseconds retry_after() const noexcept { return wait; }
};

struct not_a_decision {
  explicit operator bool() const noexcept { return true; }
  std::int64_t limit() const noexcept { return 1; }
};

std::map<std::string, std::string> written(const foreign_decision& d, const http::rate_limit_header_options& o = {}) {
  std::map<std::string, std::string> h;
  http::rate_limit_headers(d, [&](std::string_view n, std::string_view v) { h.emplace(n, v); }, o);
  return h;
}

}  // namespace

static_assert(http::rate_limit_decision<foreign_decision>);
static_assert(!http::rate_limit_decision<not_a_decision>);
static_assert(http::rate_limit_decision<decltype(std::declval<armor::token_bucket<>&>().try_acquire())>);
static_assert(http::rate_limit_decision<decltype(std::declval<armor::token_bucket<>&>().reserve(1, 1s))>);

TEST_CASE("http: rate_limit_headers writes any limiter's decision", "[http][rate-limit][server]") {
  SECTION("a refusal: the numbers, rounded up, and Retry-After") {
    CHECK(written({}) == std::map<std::string, std::string>{{"RateLimit-Limit", "10"},
                                                            {"RateLimit-Remaining", "0"},
                                                            {"RateLimit-Reset", "3"},
                                                            {"X-RateLimit-Limit", "10"},
                                                            {"X-RateLimit-Remaining", "0"},
                                                            {"X-RateLimit-Reset", "3"},
                                                            {"Retry-After", "2"}});
  }
  SECTION("a grant has no Retry-After") {
    const auto h = written({.granted = true, .left = 4, .wait = nanoseconds::zero()});
    CHECK(h.count("Retry-After") == 0);
    CHECK(h.at("RateLimit-Remaining") == "4");
  }
  SECTION("a refusal no wait can fix has no Retry-After") {
    CHECK(written({.wait = nanoseconds::max()}).count("Retry-After") == 0);
  }
  SECTION("options choose the spellings; X-RateLimit-Reset as Unix time") {
    const auto h = written({}, {.standard = false, .retry_after = false, .wall_now = now});
    CHECK(h == std::map<std::string, std::string>{
                   {"X-RateLimit-Limit", "10"}, {"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "1700000003"}});
  }
  SECTION("the list form holds the same headers") {
    const auto list = http::rate_limit_headers(foreign_decision{});
    CHECK(list.size() == 7);
    std::map<std::string, std::string> h;
    for (const auto& f : list) h.emplace(f.name, f.value());
    CHECK(h == written({}));
    CHECK(list.find("Retry-After") == std::optional<std::string_view>{"2"});
    CHECK_FALSE(list.find("retry-after"));  // exact spelling
  }
  SECTION("what is written is read back") {
    member_response r;
    http::rate_limit_headers(foreign_decision{.left = 0}, [&](std::string_view n, std::string_view v) {
      r.headers.emplace(n, v);
    });
    const auto i = http::read_rate_limit(r, now);
    CHECK(i.limit == 10);
    CHECK(i.remaining == 0);
    CHECK(i.reset_after == nanoseconds{3s});
    CHECK(http::parse_retry_after(*http::header(r, "Retry-After"), now) == nanoseconds{2s});
  }
}

namespace {
__extension__ typedef __int128 i128;

/// A decision that also knows its limiter's rate: it gets RateLimit-Policy.
struct rated_decision : foreign_decision {
  armor::rate r{10, 1s};
  armor::rate rate() const noexcept { return r; }
};

std::string policy_of(armor::rate r, std::int64_t burst) {
  rated_decision d;
  d.r = r;
  d.lim = burst;
  const auto list = http::rate_limit_headers(d);
  const auto v = list.find("RateLimit-Policy");
  return v ? std::string(*v) : std::string("(none)");
}
}  // namespace

static_assert(http::rate_limit_decision<rated_decision>);
static_assert(http::rate_limit_decision_with_rate<rated_decision>);
static_assert(!http::rate_limit_decision_with_rate<foreign_decision>);
static_assert(http::rate_limit_policy_for(10, 1s, 10) == http::rate_limit_policy{10, 1s});
static_assert(http::rate_limit_policy_for(100, 1min, 10) == http::rate_limit_policy{10, 6s});

TEST_CASE("http: rate_limit_policy_for refuses what no header can say", "[http][rate-limit][server]") {
  CHECK_FALSE(http::rate_limit_policy_for(0, 1s, 1));
  CHECK_FALSE(http::rate_limit_policy_for(1, 0s, 1));
  CHECK_FALSE(http::rate_limit_policy_for(1, 1s, 0));
  CHECK_FALSE(http::rate_limit_policy_for(-1, 1s, 1));
  CHECK_FALSE(http::rate_limit_policy_for(INT64_MAX, 1ns, 1));  // 9.2e27 a second
  CHECK_FALSE(http::rate_limit_policy_for(1, nanoseconds{INT64_MAX}, INT64_MAX));
  // A large but sayable one: a billion a second, burst 10^12 (1000 s to fill).
  CHECK(http::rate_limit_policy_for(1, 1ns, 1'000'000'000'000) ==
        http::rate_limit_policy{1'000'000'000'000, std::chrono::seconds{1000}});
}

TEST_CASE("http: RateLimit-Policy gives a token bucket's quota and window (IETF draft)", "[http][rate-limit][server]") {
  SECTION("quota = burst, window = the time an empty bucket takes to fill, when that is whole seconds") {
    CHECK(policy_of({10, 1s}, 10) == "10;w=1");
    CHECK(policy_of({10, 1s}, 20) == "20;w=2");
    CHECK(policy_of({1, 2s}, 3) == "3;w=6");
    CHECK(policy_of({100, 1min}, 10) == "10;w=6");
    CHECK(policy_of({5000, 1h}, 100) == "100;w=72");
    CHECK(policy_of({1, 1h}, 1) == "1;w=3600");
  }
  SECTION("otherwise the next window that refills whole tokens, and those tokens as the quota") {
    CHECK(policy_of({10, 1s}, 5) == "10;w=1");      // fills in 0.5 s
    CHECK(policy_of({50, 1s}, 5) == "50;w=1");      // 0.1 s
    CHECK(policy_of({10, 1s}, 15) == "20;w=2");     // 1.5 s
    CHECK(policy_of({5000, 1h}, 1) == "25;w=18");   // one token per 720 ms: 25 tokens in 18 s
    CHECK(policy_of({60, 1min}, 1) == "1;w=1");     // the rate in lowest terms: one per second
    CHECK(policy_of({1000, 1ns * 1'000'000'000}, 1) == "1000;w=1");
  }
  SECTION("no such window within 366 days: the fill time rounded up, the quota rounded down") {
    CHECK(policy_of({1, 333'333'333ns}, 1) == "3;w=1");  // 3.000000003 per second
  }
  SECTION("q/w is the refill rate, never more; the quota is never below the burst") {
    int checked = 0;
    for (const armor::rate r : {armor::rate{10, 1s}, armor::rate{1, 720ms}, armor::rate{7, 3s}, armor::rate{3, 1ms},
                                armor::rate{1, 333'333'333ns}, armor::rate{1, 24h}, armor::rate{999, 1min}}) {
      for (const std::int64_t burst : {1LL, 2LL, 5LL, 10LL, 99LL, 1000LL}) {
        rated_decision d;
        d.r = r;
        d.lim = burst;
        const auto headers = http::rate_limit_headers(d);  // find() views into the list: keep it
        const auto v = headers.find("RateLimit-Policy");
        REQUIRE(v);
        const std::string s(*v);
        const std::size_t semi = s.find(";w=");
        REQUIRE(semi != std::string::npos);
        const long long q = std::stoll(s.substr(0, semi));
        const long long w = std::stoll(s.substr(semi + 3));
        INFO(s << " for " << r.count << " per " << r.per.count() << " ns, burst " << burst);
        CHECK(w >= 1);
        CHECK(q >= burst);
        // q per w s <= count per per: q * per <= count * w * 1e9
        CHECK(static_cast<i128>(q) * r.per.count() <= static_cast<i128>(r.count) * w * 1'000'000'000);
        ++checked;
      }
    }
    CHECK(checked == 42);
  }
  SECTION("only a decision that knows its rate gets one; options turn it off") {
    CHECK_FALSE(http::rate_limit_headers(foreign_decision{}).find("RateLimit-Policy"));
    CHECK(http::rate_limit_headers(rated_decision{}).size() == 8);
    CHECK_FALSE(http::rate_limit_headers(rated_decision{}, {.policy = false}).find("RateLimit-Policy"));
    CHECK_FALSE(http::rate_limit_headers(rated_decision{}, {.standard = false}).find("RateLimit-Policy"));
    armor::token_bucket<armor::manual_clock> bucket{{.rate = {1, 2s}, .burst = 3}, armor::manual_clock{}};
    CHECK(bucket.try_acquire().rate() == armor::rate{1, 2s});
    CHECK(http::rate_limit_headers(bucket.try_acquire()).find("RateLimit-Policy") ==
          std::optional<std::string_view>{"3;w=6"});
  }
}

TEST_CASE("http: retry_after_seconds is whole seconds, rounded up, at least 1", "[http][retry-after]") {
  static_assert(http::retry_after_seconds(nanoseconds{1}) == 1);
  CHECK(http::retry_after_seconds(0ns) == 1);
  CHECK(http::retry_after_seconds(-5s) == 1);
  CHECK(http::retry_after_seconds(2s) == 2);
  CHECK(http::retry_after_seconds(2001ms) == 3);
}

TEST_CASE("http: header_map collects libcurl's header lines", "[http][headers]") {
  http::header_map h;
  for (const std::string_view line : {"HTTP/1.1 301 Moved Permanently\r\n", "Location: /new\r\n", "\r\n",
                                      "HTTP/1.1 100 Continue\r\n", "\r\n", "HTTP/1.1 503 Service Unavailable\r\n",
                                      "Retry-After:   7  \r\n", "retry-after: 99\r\n", "X-Empty:\r\n",
                                      "  folded continuation\r\n", "no colon here\r\n", ": no name\r\n",
                                      "X-RateLimit-Remaining: 0\n", "\r\n"}) {
    h.add_line(line);
  }
  CHECK(h.status() == 503);
  CHECK(h.find("Retry-After") == "7");  // the first of two, trimmed
  CHECK(h.find("RETRY-AFTER") == "7");
  CHECK_FALSE(h.find("Location"));  // the redirect's headers were dropped
  CHECK(h.find("x-empty") == "");
  CHECK(h.find("x-ratelimit-remaining") == "0");
  CHECK(h.size() == 4);
  CHECK(http::status(h) == 503);
  CHECK(http::header(h, "retry-after") == "7");

  h.add_line("HTTP/2 200\r\n");
  CHECK(h.status() == 200);
  CHECK(h.size() == 0);
  for (const std::string_view bad : {"HTTP/1.1 5x3 Oops\r\n", "HTTP/1.1 5030 Oops\r\n", "HTTP/1.1\r\n", "HTTP/"}) {
    h.add_line(bad);
    INFO(std::string(bad));
    CHECK(h.status() == 0);
  }
  h.add("Name", " value ");
  CHECK(h.find("name") == "value");
  h.clear();
  CHECK(h.size() == 0);
  CHECK_FALSE(h.find("name"));
}

TEST_CASE("http: header access through members and through ADL", "[http][headers]") {
  const auto m = with(429, {{"retry-after", "3"}});
  CHECK(http::status(m) == 429);
  CHECK(http::header(m, "Retry-After") == "3");  // armor searches case-insensitively
  CHECK_FALSE(http::header(m, "Retry-Afte"));
  CHECK_FALSE(http::header(m, "Retry-After2"));

  opaque_response o{503, {{"Retry-After", "4"}}};
  CHECK(http::status(o) == 503);
  CHECK(http::header(o, "Retry-After") == "4");
  CHECK_FALSE(http::header(o, "retry-after"));  // the user's function decides: exact case
  CHECK(o.lookups == 2);
  const armor::verdict v = http::status_classifier{}(o, now);
  CHECK(v.retry_after == nanoseconds{4s});
}

// ---------------------------------------------------------------------------
// Classification

TEST_CASE("http: default status rules", "[http][classify]") {
  for (int s = 0; s < 1000; ++s) {
    INFO(s);
    const armor::verdict v = http::classify_status(s);
    const bool retryable = s == 408 || s == 500 || s == 502 || s == 503 || s == 504;
    if (s == 429) {
      CHECK(v.kind == armor::outcome::throttled);
      CHECK(v.retryable);
      CHECK(v.code == http::make_status_code(s));
      CHECK(http::default_status_rule(s) == http::status_rule::throttled);
    } else if (retryable) {
      CHECK(v.kind == armor::outcome::failure);
      CHECK(v.retryable);
      CHECK(v.code == http::make_status_code(s));
    } else if (s >= 100 && s < 500) {
      CHECK(v.ok());
      CHECK_FALSE(v.retryable);
      CHECK(v.code.value() == 0);
    } else {
      CHECK(v.kind == armor::outcome::failure);
      CHECK_FALSE(v.retryable);
    }
  }
  CHECK(http::classify_status(503, 2s).retry_after == nanoseconds{2s});
  CHECK(http::classify_status(503, 2s).kind == armor::outcome::failure);  // a 503 is the upstream's health
  CHECK(http::classify_status(429, 2s).retry_after == nanoseconds{2s});
  CHECK_FALSE(http::classify_status(501, 2s).retry_after);  // not retryable: no hint
}

TEST_CASE("http: status_rule has a name for every rule", "[http][classify]") {
  static_assert(http::to_string(http::status_rule::retryable_failure) == "retryable_failure");
  CHECK(to_string(http::status_rule::success) == "success");  // found by ADL
  CHECK(to_string(http::status_rule::retryable_failure) == "retryable_failure");
  CHECK(to_string(http::status_rule::failure) == "failure");
  CHECK(to_string(http::status_rule::throttled) == "throttled");
  CHECK(to_string(static_cast<http::status_rule>(7)) == "unknown");
}

TEST_CASE("http: status codes as error codes", "[http][classify]") {
  CHECK(http::make_status_code(503).message() == "HTTP 503 Service Unavailable");
  CHECK(http::make_status_code(299).message() == "HTTP 299");
  CHECK(std::string(http::status_category().name()) == "http");
  CHECK(http::make_status_code(504) == std::errc::timed_out);
  CHECK(http::make_status_code(408) == std::errc::timed_out);
  CHECK(http::make_status_code(429) == std::errc::resource_unavailable_try_again);
  CHECK(http::make_status_code(500) != std::errc::timed_out);
}

TEST_CASE("http: transport errors", "[http][classify]") {
  using e = std::errc;
  for (const e c : {e::connection_refused, e::connection_reset, e::connection_aborted, e::timed_out,
                    e::host_unreachable, e::network_unreachable, e::network_down, e::broken_pipe, e::not_connected,
                    e::resource_unavailable_try_again, e::interrupted, e::address_not_available}) {
    const armor::verdict v = http::classify_transport_error(c);
    INFO(std::make_error_code(c).message());
    CHECK(v.kind == armor::outcome::failure);
    CHECK(v.retryable);
    CHECK(v.code == c);
  }
  // A system_category code (what sockets report) matches too.
  CHECK(http::classify_transport_error(std::error_code(ECONNREFUSED, std::system_category())).retryable);
  for (const e c : {e::invalid_argument, e::permission_denied, e::address_family_not_supported,
                    e::protocol_not_supported}) {
    const armor::verdict v = http::classify_transport_error(c);
    CHECK(v.kind == armor::outcome::failure);
    CHECK_FALSE(v.retryable);
  }
  CHECK(http::classify_transport_error(std::error_code{}).ok());
}

TEST_CASE("http: status_classifier overrides and hints", "[http][classify]") {
  http::status_classifier c;
  c.set(404, http::status_rule::failure).set(501, http::status_rule::retryable_failure).set(503,
                                                                                              http::status_rule::success);
  CHECK(c.rule(404) == http::status_rule::failure);
  CHECK(c.rule(501) == http::status_rule::retryable_failure);
  CHECK(c.rule(503) == http::status_rule::success);
  CHECK(c.rule(500) == http::status_rule::retryable_failure);
  c.set(404, http::status_rule::success);  // replaces, does not add
  CHECK(c.rule(404) == http::status_rule::success);

  CHECK_THROWS_AS(c.set(99, http::status_rule::success), armor::error);
  CHECK_THROWS_AS(c.set(600, http::status_rule::success), armor::error);
  http::status_classifier full;
  for (int s = 0; s < static_cast<int>(http::status_classifier::max_overrides); ++s) {
    full.set(400 + s, http::status_rule::failure);
  }
  CHECK_THROWS_AS(full.set(499, http::status_rule::failure), armor::error);
  CHECK_NOTHROW(full.set(400, http::status_rule::success));  // existing entry
  try {
    full.set(499, http::status_rule::failure);
  } catch (const armor::error& ex) {
    CHECK(std::string(ex.what()).find("status_classifier") != std::string::npos);
  }

  const http::status_classifier def;
  CHECK(def(with(503, {{"Retry-After", "12"}}), now).retry_after == nanoseconds{12s});
  CHECK(def(with(503, {{"Retry-After", "Tue, 14 Nov 2023 22:13:50 GMT"}}), now).retry_after == nanoseconds{30s});
  const armor::verdict garbage = def(with(503, {{"Retry-After", "soon"}}), now);
  CHECK(garbage.retryable);
  CHECK_FALSE(garbage.retry_after);
  // A 429 without Retry-After: the rate-limit reset, when nothing remains.
  CHECK(def(with(429, {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "1700000045"}}), now).retry_after ==
        nanoseconds{45s});
  CHECK_FALSE(def(with(429, {{"X-RateLimit-Remaining", "3"}, {"X-RateLimit-Reset", "1700000045"}}), now).retry_after);
  // Hints on successes and permanent failures are ignored.
  CHECK(def(with(200, {{"Retry-After", "12"}}), now).ok());
  CHECK_FALSE(def(with(501, {{"Retry-After", "12"}}), now).retry_after);
}

TEST_CASE("http: GitHub's rate-limit 403s", "[http][classify]") {
  const http::status_classifier c;
  const auto primary = with(403, {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1700000600"}});
  const armor::verdict v = c(primary, now);
  CHECK(v.kind == armor::outcome::throttled);
  CHECK(v.retryable);
  CHECK(v.retry_after == nanoseconds{600s});
  CHECK(v.code == http::make_status_code(403));
  const armor::verdict secondary = c(with(403, {{"retry-after", "60"}}), now);
  CHECK(secondary.kind == armor::outcome::throttled);
  CHECK(secondary.retryable);
  CHECK(secondary.retry_after == nanoseconds{60s});
  // The IETF fields say the same as GitHub's.
  CHECK(c(with(403, {{"RateLimit-Remaining", "0"}, {"RateLimit-Reset", "30"}}), now).kind ==
        armor::outcome::throttled);
  CHECK(c(with(403, {{"x-ratelimit-remaining", "12"}}), now).ok());  // an ordinary 403
  CHECK(c(with(403, {{"retry-after", "soon"}}), now).ok());          // no valid wait, no exhausted limit
  CHECK(c(with(403, {}), now).ok());
  http::status_classifier off;
  off.github_403(false);
  CHECK(off(primary, now).ok());
  // An override of 403 still sees the hint when it makes 403 retryable.
  http::status_classifier retry_403;
  retry_403.set(403, http::status_rule::retryable_failure);
  CHECK(retry_403(with(403, {{"retry-after", "5"}}), now).retry_after == nanoseconds{5s});
  CHECK(retry_403(with(403, {{"retry-after", "5"}}), now).kind == armor::outcome::failure);
  // One that makes 403 a failure is still throttled when the headers say rate limit.
  http::status_classifier fail_403;
  fail_403.set(403, http::status_rule::failure);
  CHECK(fail_403(primary, now).kind == armor::outcome::throttled);
  CHECK(fail_403(with(403, {}), now).kind == armor::outcome::failure);
}

TEST_CASE("http: throttled is a rule a status can be given, and a 429 can be made a failure again",
          "[http][classify][throttled]") {
  http::status_classifier c;
  c.set(503, http::status_rule::throttled).set(429, http::status_rule::retryable_failure);
  const armor::verdict maintenance = c(with(503, {{"Retry-After", "120"}}), now);
  CHECK(maintenance.kind == armor::outcome::throttled);
  CHECK(maintenance.retryable);
  CHECK(maintenance.retry_after == nanoseconds{120s});
  // A 429 made a retryable failure keeps the rate-limit reset as its wait.
  const armor::verdict limited =
      c(with(429, {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "1700000045"}}), now);
  CHECK(limited.kind == armor::outcome::failure);
  CHECK(limited.retryable);
  CHECK(limited.retry_after == nanoseconds{45s});
  // And the default's 429, with and without a wait.
  const http::status_classifier def;
  CHECK(def(with(429, {{"Retry-After", "7"}}), now).retry_after == nanoseconds{7s});
  CHECK(def(with(429, {}), now).kind == armor::outcome::throttled);
  CHECK_FALSE(def(with(429, {}), now).retry_after);
  CHECK(http::verdict_for(http::status_rule::throttled, 429, 3s).retry_after == nanoseconds{3s});
}

TEST_CASE("http: the classifier on the real wall clock", "[http][classify]") {
  const http::status_classifier c;
  CHECK(c(with(503, {{"Retry-After", "3"}})).retry_after == nanoseconds{3s});
  CHECK(c(with(503, {{"Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"}})).retry_after == nanoseconds{0});
}

TEST_CASE("http: status_classifier in a pipeline retries after the server's hint", "[http][classify][pipeline]") {
  armor::manual_clock clock;
  const auto p = armor::pipeline{
      clock,
      armor::classify{http::status_classifier{}},
      armor::backoff{{.max_attempts = 4, .initial = 100ms, .jitter = armor::jitter_mode::none,
                      .max_retry_after = 30s}},
  };
  int calls = 0;
  auto flaky = [&] {
    ++calls;
    if (calls == 1) return with(503, {{"Retry-After", "7"}});
    if (calls == 2) return with(429, {});  // no hint: the schedule's 200 ms
    return with(200, {});
  };
  const auto start = clock.now();
  const auto r = p.try_execute(flaky);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(calls == 3);
  CHECK(clock.now() - start == nanoseconds{7s + 200ms});

  // A client error is returned at once, not retried.
  calls = 0;
  const auto nf = p.try_execute([&] {
    ++calls;
    return with(404, {});
  });
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK(calls == 1);
}

TEST_CASE("http: client errors do not open a breaker, server errors do", "[http][classify][pipeline]") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 3, .open_for = 10s}, clock};
  const auto p = armor::pipeline{clock, armor::classify{http::status_classifier{}}, std::ref(breaker)};
  for (int i = 0; i < 10; ++i) {
    const auto r = p.try_execute([] { return with(404, {}); });
    REQUIRE(r);
  }
  for (int i = 0; i < 3; ++i) (void)p.try_execute([] { return with(500, {}); });
  const auto refused = p.try_execute([] { return with(200, {}); });
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == armor::errc::circuit_open);
}

// ---------------------------------------------------------------------------
// Throttling: retried after the server's wait, never counted against health

namespace {

// A breaker that two failures in a row open, inside a retry layer that waits
// out the server's Retry-After (up to 30 s); the classifier judges each
// response at the fixed wall time `now`.
struct throttle_rig {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 2, .open_for = 10s}, clock};

  [[nodiscard]] auto pipeline() {
    return armor::pipeline{
        clock,
        armor::classify{[](const member_response& r) { return http::status_classifier{}(r, now); }},
        armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none,
                        .max_retry_after = 30s}},
        std::ref(breaker),
    };
  }
};

}  // namespace

TEST_CASE("http: a 429 does not move the breaker, and is retried after its Retry-After", "[http][classify][throttled]") {
  throttle_rig rig;
  const auto p = rig.pipeline();
  for (int call = 0; call < 5; ++call) {
    INFO("call " << call);
    int attempts = 0;
    const auto start = rig.clock.now();
    const auto r = p.try_execute([&] {
      ++attempts;
      return attempts < 3 ? with(429, {{"Retry-After", "2"}}) : with(200, {});
    });
    // Before: the second 429 in a row opened the breaker, and the third
    // attempt was refused with circuit_open.
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(attempts == 3);
    CHECK(rig.clock.now() - start == nanoseconds{4s});  // two waits of the server's 2 s
    CHECK(rig.breaker.state() == armor::breaker_state::closed);
  }
  CHECK(rig.breaker.stats().failures == 0);
  CHECK(rig.breaker.stats().throttled == 10);  // seen, and counted as neither
  CHECK(rig.breaker.stats().times_opened == 0);
}

TEST_CASE("http: with count_throttled, 429s open the breaker as before", "[http][classify][throttled]") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> breaker{
      {.failure_threshold = 2, .open_for = 10s, .count_throttled = true}, clock};
  const auto p = armor::pipeline{clock, armor::classify{http::status_classifier{}}, std::ref(breaker)};
  for (int i = 0; i < 2; ++i) (void)p.try_execute([] { return with(429, {{"Retry-After", "20"}}); });
  CHECK(breaker.state() == armor::breaker_state::open);
  CHECK(breaker.stats().failures == 2);
  CHECK(breaker.stats().throttled == 0);
  // Open for the server's 20 s, not open_for's 10 s: a counted 429 keeps its hint.
  const auto refused = p.try_execute([] { return with(200, {}); });
  REQUIRE_FALSE(refused);
  CHECK(refused.error().retry_after == nanoseconds{20s});
}

TEST_CASE("http: GitHub's exhausted rate limit (403) does not move the breaker", "[http][classify][throttled]") {
  throttle_rig rig;
  const auto p = rig.pipeline();
  int attempts = 0;
  const auto start = rig.clock.now();
  const auto r = p.try_execute([&] {
    ++attempts;
    if (attempts == 1) return with(403, {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1700000005"}});
    if (attempts == 2) return with(403, {{"retry-after", "3"}});  // a secondary rate limit
    return with(200, {});
  });
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(attempts == 3);
  CHECK(rig.clock.now() - start == nanoseconds{8s});  // the reset in 5 s, then the secondary limit's 3 s
  CHECK(rig.breaker.state() == armor::breaker_state::closed);
  CHECK(rig.breaker.stats().failures == 0);
}

TEST_CASE("http: 500s still open the breaker", "[http][classify][throttled]") {
  throttle_rig rig;
  const auto p = rig.pipeline();
  int attempts = 0;
  const auto r = p.try_execute([&] {
    ++attempts;
    return with(500, {});
  });
  REQUIRE_FALSE(r);
  CHECK(rig.breaker.state() == armor::breaker_state::open);
  CHECK(rig.breaker.stats().failures == 2);
  CHECK(attempts == 2);  // the third attempt met the open breaker
}
