// Fuzzes armor::http::parse_retry_after: any bytes, any `now`.
// Properties: a wait is never negative and never beyond max_server_hint;
// delta-seconds are exactly that many seconds; a date gives exactly the time
// from `now` until it (zero when past), computed here without overflow.
#include "fuzz_common.hpp"

#include <armor/http/date.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  using namespace std::chrono;
  armor_fuzz::input in(data, size);
  const http::wall_time now = armor_fuzz::wall_time_from(in);
  const std::string_view text = in.rest();
  const auto wait = http::parse_retry_after(text, now);
  const std::string_view v = armor::detail::http_trim(text);
  if (!wait) {
    // Refused: not a date within reach, nor delta-seconds within the limit.
    if (!v.empty() && armor::detail::http_digit(v.front())) {
      const auto secs = armor::detail::http_uint(v);
      ARMOR_FUZZ_CHECK(!secs || *secs > http::max_server_hint.count());
    }
    return 0;
  }
  ARMOR_FUZZ_CHECK(wait->count() >= 0);
  ARMOR_FUZZ_CHECK(*wait <= http::max_server_hint);
  if (armor::detail::http_digit(v.front())) {
    const auto secs = armor::detail::http_uint(v);
    ARMOR_FUZZ_CHECK(secs.has_value());
    ARMOR_FUZZ_CHECK(*wait == seconds{*secs});
    // delta-seconds do not depend on now
    ARMOR_FUZZ_CHECK(http::parse_retry_after(text, http::wall_time{}) == wait);
    return 0;
  }
  const auto at = http::parse_http_date(v, now);
  ARMOR_FUZZ_CHECK(at.has_value());
  const armor_fuzz::i128 diff = armor_fuzz::i128{armor_fuzz::ns_of(*at)} - armor_fuzz::ns_of(now);
  const armor_fuzz::i128 expected = diff < 0 ? 0 : diff;
  ARMOR_FUZZ_CHECK(expected == wait->count());
  // Retry-After's value as armor writes it reads back as at least the wait.
  const std::int64_t written = http::retry_after_seconds(*wait);
  ARMOR_FUZZ_CHECK(seconds{written} >= *wait);
  ARMOR_FUZZ_CHECK(wait->count() == 0 ? written == 1 : seconds{written} - *wait < seconds{1});
  return 0;
}
