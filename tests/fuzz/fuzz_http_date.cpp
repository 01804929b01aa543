// Fuzzes armor::http::parse_http_date: any bytes and any `now`.
// Properties: a date parses to whole seconds within the clock's range; it
// formats back (IMF-fixdate, RFC 850 against a `now` in the same second,
// asctime) to the same instant; the 4-digit forms do not depend on `now`.
#include "fuzz_common.hpp"

#include <armor/http/date.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  using namespace std::chrono;
  armor_fuzz::input in(data, size);
  const http::wall_time now = armor_fuzz::wall_time_from(in);
  const std::string_view text = in.rest();
  const auto t = http::parse_http_date(text, now);
  if (!t) return 0;
  const std::int64_t ns = armor_fuzz::ns_of(*t);
  ARMOR_FUZZ_CHECK(ns % 1'000'000'000 == 0);
  ARMOR_FUZZ_CHECK(*t < http::wall_time::max() && *t > http::wall_time::min());
  // The year of an HTTP-date has four digits.
  const year y = year_month_day{floor<days>(*t)}.year();
  ARMOR_FUZZ_CHECK(y >= year{0} && y <= year{9999});
  // Round trips, each form against a `now` in the parsed second: RFC 850's
  // two digits then mean the parsed year itself.
  for (int form = 0; form < 3; ++form) {
    const std::string again = armor_fuzz::format_http_date(*t, form);
    const auto back = http::parse_http_date(again, *t + (now.time_since_epoch() % seconds{1} + seconds{1}) % seconds{1});
    ARMOR_FUZZ_CHECK(back.has_value());
    ARMOR_FUZZ_CHECK(*back == *t);
  }
  // IMF-fixdate and asctime carry the year: `now` does not matter.
  const auto f = armor::detail::http_date_syntax(armor::detail::http_trim(text));
  ARMOR_FUZZ_CHECK(f.has_value());
  if (f->year >= 0) {
    const auto other = http::parse_http_date(text, http::wall_time{});
    ARMOR_FUZZ_CHECK(other.has_value() && *other == *t);
  } else {
    // RFC 850: at most 50 years after now's year, and the latest such year.
    const std::int64_t now_year = static_cast<int>(year_month_day{floor<days>(now)}.year());
    const std::int64_t got = static_cast<int>(y);
    ARMOR_FUZZ_CHECK(got <= now_year + 50);
    ARMOR_FUZZ_CHECK(got + 100 > now_year + 50);
    ARMOR_FUZZ_CHECK(got % 100 == static_cast<std::int64_t>(f->yy));
  }
  return 0;
}
