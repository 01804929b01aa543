// fuzz_common.hpp: what armor's libFuzzer harnesses share: reading typed
// values off the front of the input, and a property check that stops the
// run (libFuzzer keeps the input that failed).
#pragma once

#include <armor/http/date.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

/// A property every input must keep; on failure, say which and abort.
#define ARMOR_FUZZ_CHECK(cond)                                                                  \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "armor fuzz: property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                             \
    }                                                                                           \
  } while (false)

namespace armor_fuzz {

__extension__ typedef __int128 i128;

/// Reads values off the front of the fuzzer's bytes; past the end, zeros.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) noexcept
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  [[nodiscard]] std::uint8_t byte() noexcept {
    if (pos_ == size_) return 0;
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  [[nodiscard]] std::int64_t i64() noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
    std::int64_t out = 0;
    std::memcpy(&out, &v, sizeof out);
    return out;
  }
  /// The rest of the input.
  [[nodiscard]] std::string_view rest() noexcept {
    const std::string_view r(data_ + pos_, size_ - pos_);
    pos_ = size_;
    return r;
  }
  /// Up to the next '\n' (not included), or the rest.
  [[nodiscard]] std::string_view line() noexcept {
    const std::string_view r(data_ + pos_, size_ - pos_);
    const std::size_t nl = r.find('\n');
    if (nl == std::string_view::npos) return rest();
    pos_ += nl + 1;
    return r.substr(0, nl);
  }
  [[nodiscard]] bool empty() const noexcept { return pos_ == size_; }

 private:
  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// A wall time from a selector byte and 8 bytes: often a realistic clock
/// reading (2023 plus up to ~50 years, with a fraction of a second), often an
/// extreme one (before 1970, near either end of the clock's range).
[[nodiscard]] inline armor::http::wall_time wall_time_from(input& in) noexcept {
  using armor::http::wall_time;
  const std::uint8_t mode = in.byte();
  const std::int64_t raw = in.i64();
  const std::uint64_t u = static_cast<std::uint64_t>(raw);
  constexpr std::int64_t base = 1'700'000'000LL * 1'000'000'000;
  switch (mode % 4) {
    case 0: return wall_time{wall_time::duration{base + static_cast<std::int64_t>(u % (1'600'000'000ULL * 1'000'000'000))}};
    case 1: return wall_time{wall_time::duration{raw}};
    case 2: return wall_time::max() - wall_time::duration{static_cast<std::int64_t>(u % (1ULL << 50))};
    default: return wall_time::min() + wall_time::duration{static_cast<std::int64_t>(u % (1ULL << 50))};
  }
}

[[nodiscard]] inline std::int64_t ns_of(armor::http::wall_time t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

/// An HTTP-date in one of its three forms (0 IMF-fixdate, 1 RFC 850, 2
/// asctime) for a time in years 0..9999 (whole seconds are used).
[[nodiscard]] inline std::string format_http_date(armor::http::wall_time t, int form) {
  using namespace std::chrono;
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> hms{floor<seconds>(t) - day};
  static constexpr const char* short_days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* long_days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                                              "Saturday"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const unsigned wd = weekday{day}.c_encoding();
  const unsigned m = static_cast<unsigned>(ymd.month()) - 1;
  const unsigned d = static_cast<unsigned>(ymd.day());
  const int y = static_cast<int>(ymd.year());
  const int hh = static_cast<int>(hms.hours().count());
  const int mm = static_cast<int>(hms.minutes().count());
  const int ss = static_cast<int>(hms.seconds().count());
  char buf[64];
  switch (form) {
    case 0:
      std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d GMT", short_days[wd], d, months[m], y, hh, mm, ss);
      break;
    case 1:
      std::snprintf(buf, sizeof buf, "%s, %02u-%s-%02d %02d:%02d:%02d GMT", long_days[wd], d, months[m], y % 100, hh,
                    mm, ss);
      break;
    default:
      std::snprintf(buf, sizeof buf, "%s %s %2u %02d:%02d:%02d %04d", short_days[wd], months[m], d, hh, mm, ss, y);
      break;
  }
  return buf;
}

}  // namespace armor_fuzz
