// Fuzzes armor::http::parse_rate_limit_reset and parse_rate_limit_count: any
// bytes, any `now`. Properties: the wait is within [0, max_server_hint];
// `at` is exactly now + wait for a wait-style reset, and the wait is exactly
// max(0, at - now) for a time-style one; a count is never negative.
#include "fuzz_common.hpp"

#include <armor/http/rate_limit.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  armor_fuzz::input in(data, size);
  const http::wall_time now = armor_fuzz::wall_time_from(in);
  const std::string_view text = in.rest();
  if (const auto n = http::parse_rate_limit_count(text)) ARMOR_FUZZ_CHECK(*n >= 0);
  const auto r = http::parse_rate_limit_reset(text, now);
  if (!r) return 0;
  ARMOR_FUZZ_CHECK(r->after.count() >= 0);
  ARMOR_FUZZ_CHECK(r->after <= http::max_server_hint);
  const armor_fuzz::i128 at = armor_fuzz::ns_of(r->at);
  const armor_fuzz::i128 from_now = at - armor_fuzz::ns_of(now);
  if (from_now >= 0) {
    // A wait, or a time ahead: at = now + after exactly.
    ARMOR_FUZZ_CHECK(from_now == r->after.count());
  } else {
    // A time already past: due now.
    ARMOR_FUZZ_CHECK(r->after.count() == 0);
  }
  return 0;
}
