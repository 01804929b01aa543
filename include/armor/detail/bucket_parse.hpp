// armor/detail/bucket_parse.hpp: the parser behind armor::rate::parse and
// armor::token_bucket_options::parse. Not API.
//
// Grammar (ASCII, case-insensitive words, blanks allowed between tokens and
// around the whole; a separator is always followed by an option, so "100/s,"
// is refused):
//
//     limit    := rate { [","|";"] option }
//     rate     := integer ["r"] ("/" | "per") [integer] unit
//     option   := "burst" "=" integer
//               | "max_wait" "=" integer unit
//     unit     := "ns" | "us" | "µs" | "ms" | "s" | "m" | "h" | "d"
//               | their long forms: nanosecond(s), microsecond(s), millisecond(s),
//                 sec(s), second(s), min(s), minute(s), hr(s), hour(s), day(s)
//
//     "100/s"   "60/minute"   "5000/h"   "10r/s burst=20"   "100/10s"
//     "3 per second, burst=5"   "1/h burst=10 max_wait=2s"
//
// Every failure throws armor::error(invalid_argument) whose message quotes
// the whole input and says what was expected where.
#pragma once

#include <armor/error.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace armor::detail {

/// A parsed limit, in plain numbers.
struct parsed_limit {
  std::int64_t count = 0;
  std::int64_t per_ns = 0;
  std::optional<std::int64_t> burst;
  std::optional<std::int64_t> max_wait_ns;
};

class limit_parser {
 public:
  limit_parser(std::string_view input, const char* who) noexcept : in_(input), who_(who) {}

  /// The whole input as a rate and options.
  parsed_limit limit() {
    parsed_limit out = rate_part();
    for (;;) {
      const bool spaced = blank();
      const bool comma = separator();
      if (at_end()) {
        // The grammar has an option after every separator: "100/s," is refused.
        if (comma) fail("expected an option (burst=N or max_wait=DURATION) after the separator at the end");
        break;
      }
      const bool separated = comma || spaced;
      if (!separated) fail("expected a blank or ',' before \"" + std::string(rest()) + "\"");
      const std::string_view key = word();
      if (key.empty()) fail("expected an option (burst=N or max_wait=DURATION) at \"" + std::string(rest()) + "\"");
      blank();
      if (!eat('=')) fail("expected '=' after \"" + std::string(key) + "\"");
      blank();
      if (equals(key, "burst")) {
        if (out.burst) fail("burst is given twice");
        const std::int64_t b = integer("the burst");
        if (b < 1) fail("burst must be at least 1");
        out.burst = b;
      } else if (equals(key, "max_wait")) {
        if (out.max_wait_ns) fail("max_wait is given twice");
        const std::int64_t amount = integer("the max_wait amount");
        blank();
        const std::int64_t unit = unit_ns();
        std::int64_t ns = 0;
        if (__builtin_mul_overflow(amount, unit, &ns)) fail("max_wait is too long");
        out.max_wait_ns = ns;
      } else {
        fail("unknown option \"" + std::string(key) + "\" (expected burst or max_wait)");
      }
    }
    return out;
  }

  /// The input as a rate alone.
  parsed_limit rate_only() {
    parsed_limit out = rate_part();
    blank();
    if (!at_end()) fail("unexpected \"" + std::string(rest()) + "\" after the rate");
    return out;
  }

 private:
  parsed_limit rate_part() {
    parsed_limit out;
    blank();
    if (at_end()) fail("expected a rate such as 100/s");
    out.count = integer("the count");
    if (out.count < 1) fail("the count must be at least 1");
    if (pos_ < in_.size() && lower(in_[pos_]) == 'r' &&
        (pos_ + 1 == in_.size() || !is_letter(in_[pos_ + 1]))) {
      ++pos_;  // nginx's "10r/s"
    }
    blank();
    if (!eat('/')) {
      const std::size_t saved = pos_;
      if (!equals(word(), "per")) {
        pos_ = saved;
        fail("expected '/' or \"per\" after the count");
      }
    }
    blank();
    std::int64_t multiple = 1;
    if (pos_ < in_.size() && is_digit(in_[pos_])) {
      multiple = integer("the period");
      if (multiple < 1) fail("the period must be at least 1");
      blank();
    }
    const std::int64_t unit = unit_ns();
    if (__builtin_mul_overflow(multiple, unit, &out.per_ns)) fail("the period is too long");
    return out;
  }

  [[noreturn]] void fail(const std::string& what) const {
    invalid_config(std::string(who_) + ": cannot parse \"" + std::string(in_) + "\": " + what);
  }

  [[nodiscard]] bool at_end() const noexcept { return pos_ == in_.size(); }
  [[nodiscard]] std::string_view rest() const noexcept { return in_.substr(pos_); }

  static constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
  static constexpr bool is_letter(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           static_cast<unsigned char>(c) >= 0x80;  // the bytes of "µ"
  }
  static constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

  static bool equals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (lower(a[i]) != b[i]) return false;
    }
    return true;
  }

  bool blank() noexcept {
    const std::size_t from = pos_;
    while (pos_ < in_.size() && (in_[pos_] == ' ' || in_[pos_] == '\t')) ++pos_;
    return pos_ != from;
  }
  bool separator() noexcept {
    if (eat(',') || eat(';')) {
      blank();
      return true;
    }
    return false;
  }
  bool eat(char c) noexcept {
    if (pos_ < in_.size() && in_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  std::string_view word() noexcept {
    const std::size_t from = pos_;
    while (pos_ < in_.size() && is_letter(in_[pos_])) ++pos_;
    return in_.substr(from, pos_ - from);
  }

  std::int64_t integer(const char* what) {
    if (pos_ < in_.size() && (in_[pos_] == '-' || in_[pos_] == '+')) {
      fail(std::string("expected ") + what + " as a whole number without a sign");
    }
    if (pos_ == in_.size() || !is_digit(in_[pos_])) {
      fail(std::string("expected ") + what + (at_end() ? std::string(" at the end") : " at \"" + std::string(rest()) + "\""));
    }
    std::int64_t v = 0;
    while (pos_ < in_.size() && is_digit(in_[pos_])) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, in_[pos_] - '0', &v)) {
        fail(std::string(what) + " is too large");
      }
      ++pos_;
    }
    return v;
  }

  std::int64_t unit_ns() {
    const std::size_t from = pos_;
    const std::string_view w = word();
    constexpr std::int64_t us = 1000;
    constexpr std::int64_t ms = 1000 * us;
    constexpr std::int64_t s = 1000 * ms;
    struct entry {
      std::string_view name;
      std::int64_t ns;
    };
    static constexpr entry units[] = {
        {"ns", 1},          {"nanosecond", 1},   {"nanoseconds", 1},  {"us", us},          {"\xC2\xB5s", us},
        {"microsecond", us}, {"microseconds", us}, {"ms", ms},          {"millisecond", ms}, {"milliseconds", ms},
        {"s", s},           {"sec", s},          {"secs", s},         {"second", s},       {"seconds", s},
        {"m", 60 * s},      {"min", 60 * s},     {"mins", 60 * s},    {"minute", 60 * s},  {"minutes", 60 * s},
        {"h", 3600 * s},    {"hr", 3600 * s},    {"hrs", 3600 * s},   {"hour", 3600 * s},  {"hours", 3600 * s},
        {"d", 86400 * s},   {"day", 86400 * s},  {"days", 86400 * s},
    };
    for (const entry& e : units) {
      if (equals(w, e.name)) return e.ns;
    }
    pos_ = from;
    if (w.empty()) {
      fail(at_end() ? std::string("expected a time unit (s, m, h, d, ms, us, ns) at the end")
                    : "expected a time unit (s, m, h, d, ms, us, ns) at \"" + std::string(rest()) + "\"");
    }
    fail("unknown time unit \"" + std::string(w) + "\" (expected s, m, h, d, ms, us, ns or their long forms)");
  }

  std::string_view in_;
  const char* who_;
  std::size_t pos_ = 0;
};

}  // namespace armor::detail
