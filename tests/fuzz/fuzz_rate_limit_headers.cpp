// Fuzzes armor::http::read_rate_limit over a header_map: every family armor
// reads (RateLimit + RateLimit-Policy of drafts 07-10, RateLimit-* up to 06,
// X-RateLimit-*, X-Rate-Limit-*, OpenAI's), any values, any `now`.
//
// Input: a wall-time selector, then lines. A line whose first byte is below
// 0x20 is the value of the known header name it selects; any other line is a
// raw header line (add_line), so the fuzzer reaches every family quickly and
// still tries unknown names and status lines.
//
// Properties: counts are never negative; a reset is within [0,
// max_server_hint] and reset_at is now + reset_after (or in the past with a
// zero wait); a window is positive and within max_server_hint; empty() is
// exactly "no field". Reading twice gives the same answer.
#include "fuzz_common.hpp"

#include <armor/http/headers.hpp>
#include <armor/http/rate_limit.hpp>

namespace {
constexpr std::string_view names[] = {
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Used",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-Rate-Limit-Limit",
    "X-Rate-Limit-Remaining",
    "X-Rate-Limit-Reset",
    "X-RateLimit-Limit-Requests",
    "X-RateLimit-Remaining-Requests",
    "X-RateLimit-Reset-Requests",
    "Retry-After",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  armor_fuzz::input in(data, size);
  const http::wall_time now = armor_fuzz::wall_time_from(in);
  http::header_map h;
  while (!in.empty()) {
    const std::string_view line = in.line();
    if (!line.empty() && static_cast<unsigned char>(line.front()) < 0x20) {
      h.add(names[static_cast<unsigned char>(line.front()) % std::size(names)], line.substr(1));
    } else {
      h.add_line(line);
    }
  }
  const http::rate_limit_info info = http::read_rate_limit(h, now);
  if (info.limit) ARMOR_FUZZ_CHECK(*info.limit >= 0);
  if (info.remaining) ARMOR_FUZZ_CHECK(*info.remaining >= 0);
  if (info.used) ARMOR_FUZZ_CHECK(*info.used >= 0);
  ARMOR_FUZZ_CHECK(info.reset_after.has_value() == info.reset_at.has_value());
  if (info.reset_after) {
    ARMOR_FUZZ_CHECK(info.reset_after->count() >= 0);
    ARMOR_FUZZ_CHECK(*info.reset_after <= http::max_server_hint);
    const armor_fuzz::i128 from_now = armor_fuzz::i128{armor_fuzz::ns_of(*info.reset_at)} - armor_fuzz::ns_of(now);
    if (from_now >= 0) {
      ARMOR_FUZZ_CHECK(from_now == info.reset_after->count());
    } else {
      ARMOR_FUZZ_CHECK(info.reset_after->count() == 0);
    }
  }
  if (info.window) {
    ARMOR_FUZZ_CHECK(info.window->count() >= 0);
    ARMOR_FUZZ_CHECK(*info.window <= http::max_server_hint);
  }
  ARMOR_FUZZ_CHECK(info.empty() == (!info.limit && !info.remaining && !info.used && !info.reset_after && !info.window));
  const http::rate_limit_info again = http::read_rate_limit(h, now);
  ARMOR_FUZZ_CHECK(again.limit == info.limit && again.remaining == info.remaining && again.used == info.used &&
                   again.reset_after == info.reset_after && again.reset_at == info.reset_at &&
                   again.window == info.window);
  return 0;
}
