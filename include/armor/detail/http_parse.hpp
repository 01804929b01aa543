// armor/detail/http_parse.hpp: the parsers behind armor/http/date.hpp and
// armor/http/rate_limit.hpp, and header_map's line reader. Not API.
//
// Every function here reads a std::string_view with explicit bounds checks,
// never allocates, never throws, never reads a locale, and answers "nothing"
// (std::nullopt or false) for anything it does not fully understand. Numbers
// are accumulated with overflow checks; a NUL byte is an ordinary byte that
// matches no grammar rule.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace armor::detail {

/// SP or HTAB: the "optional whitespace" of RFC 9110.
[[nodiscard]] constexpr bool http_ows(char c) noexcept { return c == ' ' || c == '\t'; }
[[nodiscard]] constexpr bool http_digit(char c) noexcept { return c >= '0' && c <= '9'; }
[[nodiscard]] constexpr bool http_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
[[nodiscard]] constexpr char http_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// `s` without leading and trailing SP / HTAB.
[[nodiscard]] constexpr std::string_view http_trim(std::string_view s) noexcept {
  std::size_t b = 0;
  std::size_t e = s.size();
  while (b < e && http_ows(s[b])) ++b;
  while (e > b && http_ows(s[e - 1])) --e;
  return s.substr(b, e - b);
}

/// ASCII case-insensitive equality (header names, day and month names).
[[nodiscard]] constexpr bool http_iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (http_lower(a[i]) != http_lower(b[i])) return false;
  }
  return true;
}

/// A whole non-empty run of decimal digits as an int64; nothing on any other
/// character (sign, blank, dot, NUL) or on overflow. Leading zeros are fine.
[[nodiscard]] constexpr std::optional<std::int64_t> http_uint(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  std::int64_t v = 0;
  for (const char c : s) {
    if (!http_digit(c)) return std::nullopt;
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v)) return std::nullopt;
  }
  return v;
}

/// A decimal number with an optional fraction ("12", "1.5", "1470173023.123")
/// as nanoseconds per unit `unit_ns` (1'000'000'000 for seconds). Digits
/// beyond nanosecond precision are read and dropped (truncated). Nothing on
/// a sign, an exponent, an empty part ("1.", ".5") or overflow.
[[nodiscard]] constexpr std::optional<std::int64_t> http_decimal_ns(std::string_view s, std::int64_t unit_ns) noexcept {
  const std::size_t dot = s.find('.');
  const std::string_view whole = dot == std::string_view::npos ? s : s.substr(0, dot);
  const auto w = http_uint(whole);
  if (!w) return std::nullopt;
  std::int64_t ns = 0;
  if (__builtin_mul_overflow(*w, unit_ns, &ns)) return std::nullopt;
  if (dot == std::string_view::npos) return ns;
  const std::string_view frac = s.substr(dot + 1);
  if (frac.empty()) return std::nullopt;
  // frac / 10^len * unit, digit by digit: each digit's weight is unit / 10^k.
  std::int64_t weight = unit_ns;
  std::int64_t extra = 0;
  for (const char c : frac) {
    if (!http_digit(c)) return std::nullopt;
    weight /= 10;
    extra += (c - '0') * weight;  // at most unit_ns in all: no overflow
  }
  if (__builtin_add_overflow(ns, extra, &ns)) return std::nullopt;
  return ns;
}

/// A Go-style duration as OpenAI sends in x-ratelimit-reset-requests: one
/// or more <decimal><unit> with units h, m, s, ms, us (or µs), ns: "1s",
/// "6m0s", "1h2m3.5s", "20ms". Nothing on anything else or on overflow.
[[nodiscard]] constexpr std::optional<std::int64_t> http_go_duration_ns(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t num_begin = i;
    while (i < s.size() && (http_digit(s[i]) || s[i] == '.')) ++i;
    const std::string_view number = s.substr(num_begin, i - num_begin);
    const std::size_t unit_begin = i;
    while (i < s.size() && !http_digit(s[i]) && s[i] != '.') ++i;
    const std::string_view unit = s.substr(unit_begin, i - unit_begin);
    std::int64_t unit_ns = 0;
    if (unit == "h") {
      unit_ns = 3'600'000'000'000;
    } else if (unit == "m") {
      unit_ns = 60'000'000'000;
    } else if (unit == "s") {
      unit_ns = 1'000'000'000;
    } else if (unit == "ms") {
      unit_ns = 1'000'000;
    } else if (unit == "us" || unit == "\xC2\xB5s") {
      unit_ns = 1'000;
    } else if (unit == "ns") {
      unit_ns = 1;
    } else {
      return std::nullopt;
    }
    const auto part = http_decimal_ns(number, unit_ns);
    if (!part || __builtin_add_overflow(total, *part, &total)) return std::nullopt;
  }
  return total;
}

// ---------------------------------------------------------------------------
// HTTP-date (RFC 9110 section 5.6.7)

/// Seconds since 1970-01-01T00:00:00 of a proleptic Gregorian civil time
/// already checked for range (month 1..12, day within the month).
[[nodiscard]] constexpr std::int64_t http_civil_seconds(std::int64_t year, unsigned month, unsigned day, unsigned hour,
                                                        unsigned minute, unsigned second) noexcept {
  // Count days from 0000-03-01 in 400-year eras (146097 days each), with
  // March as the first month so that the leap day ends the year.
  const std::int64_t y = month <= 2 ? year - 1 : year;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t year_of_era = y - era * 400;                                   // [0, 399]
  const std::int64_t shifted_month = month > 2 ? month - 3 : month + 9;              // [0, 11], March = 0
  const std::int64_t day_of_year = (153 * shifted_month + 2) / 5 + day - 1;          // [0, 365]
  const std::int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  const std::int64_t days = era * 146097 + day_of_era - 719468;  // 719468: days from 0000-03-01 to 1970-01-01
  return days * 86400 + hour * 3600 + minute * 60 + second;
}

[[nodiscard]] constexpr bool http_leap_year(std::int64_t y) noexcept {
  return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

[[nodiscard]] constexpr unsigned http_days_in_month(std::int64_t y, unsigned m) noexcept {
  constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && http_leap_year(y) ? 29 : days[m - 1];
}

/// A cursor over one HTTP-date candidate.
class http_date_reader {
 public:
  constexpr explicit http_date_reader(std::string_view s) noexcept : s_(s) {}

  [[nodiscard]] constexpr bool at_end() const noexcept { return i_ == s_.size(); }
  [[nodiscard]] constexpr bool peek(char c) const noexcept { return i_ < s_.size() && s_[i_] == c; }

  constexpr bool eat(char c) noexcept {
    if (!peek(c)) return false;
    ++i_;
    return true;
  }

  /// A run of ASCII letters (possibly empty).
  constexpr std::string_view letters() noexcept {
    const std::size_t b = i_;
    while (i_ < s_.size() && http_alpha(s_[i_])) ++i_;
    return s_.substr(b, i_ - b);
  }

  /// Exactly n digits.
  constexpr std::optional<unsigned> digits(std::size_t n) noexcept {
    if (s_.size() - i_ < n) return std::nullopt;
    unsigned v = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const char c = s_[i_ + k];
      if (!http_digit(c)) return std::nullopt;
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    i_ += n;
    return v;
  }

  /// "HH:MM:SS" with HH 00-23, MM 00-59, SS 00-60 (a leap second counts
  /// as the first second of the next minute).
  constexpr bool time_of_day(unsigned& h, unsigned& m, unsigned& sec) noexcept {
    const auto hh = digits(2);
    if (!hh || !eat(':')) return false;
    const auto mm = digits(2);
    if (!mm || !eat(':')) return false;
    const auto ss = digits(2);
    if (!ss || *hh > 23 || *mm > 59 || *ss > 60) return false;
    h = *hh;
    m = *mm;
    sec = *ss;
    return true;
  }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

/// 1..12 for "Jan".."Dec" (any case), 0 otherwise.
[[nodiscard]] constexpr unsigned http_month(std::string_view name) noexcept {
  constexpr std::string_view months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
  for (unsigned i = 0; i < 12; ++i) {
    if (http_iequals(name, months[i])) return i + 1;
  }
  return 0;
}

/// True for "Mon".."Sun" (short) or "Monday".."Sunday" (long), any case.
[[nodiscard]] constexpr bool http_weekday(std::string_view name, bool long_form) noexcept {
  constexpr std::string_view short_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
  constexpr std::string_view long_names[] = {"monday", "tuesday", "wednesday", "thursday",
                                             "friday", "saturday", "sunday"};
  for (int i = 0; i < 7; ++i) {
    if (http_iequals(name, long_form ? long_names[i] : short_names[i])) return true;
  }
  return false;
}

/// The fields of an HTTP-date; year is -1 when only two digits were given
/// (RFC 850) and `yy` holds them.
struct http_date_fields {
  std::int64_t year = 0;
  unsigned yy = 0;
  unsigned month = 0;
  unsigned day = 0;
  unsigned hour = 0;
  unsigned minute = 0;
  unsigned second = 0;
};

/// Recognises the three HTTP-date forms; checks the syntax and the ranges of
/// month, hour, minute and second (the day is checked once the year is known).
///
///   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
///   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
///   asctime      "Sun Nov  6 08:49:37 1994"
[[nodiscard]] constexpr std::optional<http_date_fields> http_date_syntax(std::string_view s) noexcept {
  http_date_reader r(s);
  http_date_fields f;
  const std::string_view weekday = r.letters();
  if (r.eat(',')) {
    if (!r.eat(' ')) return std::nullopt;
    if (http_weekday(weekday, false)) {
      // IMF-fixdate: day SP month SP year SP time SP GMT
      const auto day = r.digits(2);
      if (!day || !r.eat(' ')) return std::nullopt;
      f.month = http_month(r.letters());
      if (f.month == 0 || !r.eat(' ')) return std::nullopt;
      const auto year = r.digits(4);
      if (!year || !r.eat(' ')) return std::nullopt;
      f.day = *day;
      f.year = *year;
    } else if (http_weekday(weekday, true)) {
      // RFC 850: day-month-yy SP time SP GMT
      const auto day = r.digits(2);
      if (!day || !r.eat('-')) return std::nullopt;
      f.month = http_month(r.letters());
      if (f.month == 0 || !r.eat('-')) return std::nullopt;
      const auto yy = r.digits(2);
      if (!yy || !r.eat(' ')) return std::nullopt;
      f.day = *day;
      f.year = -1;
      f.yy = *yy;
    } else {
      return std::nullopt;
    }
    if (!r.time_of_day(f.hour, f.minute, f.second) || !r.eat(' ')) return std::nullopt;
    if (!http_iequals(r.letters(), "gmt") || !r.at_end()) return std::nullopt;
    return f;
  }
  // asctime: wkday SP month SP (2DIGIT | SP DIGIT) SP time SP 4DIGIT
  if (!http_weekday(weekday, false) || !r.eat(' ')) return std::nullopt;
  f.month = http_month(r.letters());
  if (f.month == 0 || !r.eat(' ')) return std::nullopt;
  std::optional<unsigned> day;
  if (r.eat(' ')) {
    day = r.digits(1);
  } else {
    day = r.digits(2);
  }
  if (!day || !r.eat(' ')) return std::nullopt;
  f.day = *day;
  if (!r.time_of_day(f.hour, f.minute, f.second) || !r.eat(' ')) return std::nullopt;
  const auto year = r.digits(4);
  if (!year || !r.at_end()) return std::nullopt;
  f.year = *year;
  return f;
}

/// Seconds since the Unix epoch of an HTTP-date. `now_year` resolves RFC
/// 850's two-digit year as RFC 9110 asks: the year with those last two digits
/// that is not more than 50 years after now_year.
[[nodiscard]] constexpr std::optional<std::int64_t> http_date_seconds(std::string_view s,
                                                                      std::int64_t now_year) noexcept {
  const auto f = http_date_syntax(http_trim(s));
  if (!f) return std::nullopt;
  std::int64_t year = f->year;
  if (year < 0) {
    // The latest year ending in yy that is at most now_year + 50.
    const std::int64_t century = now_year - (now_year % 100 + 100) % 100;
    year = century + 100 + f->yy;
    while (year > now_year + 50) year -= 100;
  }
  if (f->day < 1 || f->day > http_days_in_month(year, f->month)) return std::nullopt;
  return http_civil_seconds(year, f->month, f->day, f->hour, f->minute, f->second);
}

/// The proleptic Gregorian year of a count of seconds since the Unix epoch.
[[nodiscard]] constexpr std::int64_t http_year_of(std::int64_t unix_seconds) noexcept {
  std::int64_t days = unix_seconds / 86400;
  if (unix_seconds % 86400 < 0) --days;
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const std::int64_t day_of_era = days - era * 146097;
  const std::int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const std::int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const std::int64_t shifted_month = (5 * day_of_year + 2) / 153;  // March = 0
  return year_of_era + era * 400 + (shifted_month >= 10 ? 1 : 0);
}

// ---------------------------------------------------------------------------
// A small reader for the list syntax of the IETF RateLimit fields: comma
// separated members, each a bare value followed by ";key=value" parameters
// ("\"daily\";q=1000;w=86400", "100;w=60"), or a "key=value" dictionary
// member ("remaining=50"). Quoted strings may hold commas and semicolons.

/// The next member of a comma-separated list, advancing `pos`; quoted
/// strings (with backslash escapes) are skipped whole. An unterminated quote
/// yields the rest of the input, which then fails to parse as a member.
[[nodiscard]] constexpr std::string_view http_next_member(std::string_view s, std::size_t& pos) noexcept {
  const std::size_t b = pos;
  bool quoted = false;
  while (pos < s.size()) {
    const char c = s[pos];
    if (quoted) {
      if (c == '\\' && pos + 1 < s.size()) {
        ++pos;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      break;
    }
    ++pos;
  }
  const std::string_view member = s.substr(b, pos - b);
  if (pos < s.size()) ++pos;  // the comma
  return http_trim(member);
}

/// One list member split into its bare value and its parameters.
struct http_member {
  std::string_view value;   ///< the bare item ("\"daily\"", "100"), or the key of a "key=value" member
  std::string_view params;  ///< everything after the first ';' outside quotes ("q=1000;w=86400")
};

[[nodiscard]] constexpr http_member http_split_member(std::string_view m) noexcept {
  bool quoted = false;
  for (std::size_t i = 0; i < m.size(); ++i) {
    const char c = m[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ';') {
      return {http_trim(m.substr(0, i)), m.substr(i + 1)};
    }
  }
  return {m, {}};
}

/// The value of parameter `key` in "k1=v1;k2=v2" (keys case-insensitive,
/// blanks around ';' and '=' tolerated), or nothing.
[[nodiscard]] constexpr std::optional<std::string_view> http_param(std::string_view params,
                                                                   std::string_view key) noexcept {
  std::size_t pos = 0;
  while (pos <= params.size()) {
    std::size_t end = params.find(';', pos);
    if (end == std::string_view::npos) end = params.size();
    const std::string_view p = params.substr(pos, end - pos);
    const std::size_t eq = p.find('=');
    if (eq != std::string_view::npos && http_iequals(http_trim(p.substr(0, eq)), key)) {
      return http_trim(p.substr(eq + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

/// The name of a structured-field item: a quoted string without its quotes
/// (escapes left in place; names are only compared), or a token as is.
[[nodiscard]] constexpr std::string_view http_item_name(std::string_view v) noexcept {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

}  // namespace armor::detail
