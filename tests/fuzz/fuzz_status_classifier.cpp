// Fuzzes armor::http::status_classifier and classify_status: any status, any
// headers (Retry-After, every rate-limit family), any `now`, with and
// without GitHub's 403 rule and a per-status override.
//
// Properties: a success carries no error; a failure or throttled verdict
// carries a code that is an error (bool(code)), throttled is retryable; a
// retry_after is only on a retryable failure or a throttled verdict, and is
// within [0, max_server_hint]; the status alone decides the verdict's kind
// except for a GitHub 403; judge_status agrees with classify_status.
#include "fuzz_common.hpp"

#include <armor/http/classifier.hpp>
#include <armor/http/headers.hpp>

namespace {
constexpr std::string_view names[] = {"Retry-After",         "RateLimit",          "RateLimit-Policy",
                                      "RateLimit-Remaining", "RateLimit-Reset",    "X-RateLimit-Remaining",
                                      "X-RateLimit-Reset",   "X-RateLimit-Reset-After", "X-RateLimit-Used"};

void check(const armor::verdict& v) {
  using armor::outcome;
  if (v.kind == outcome::success) {
    ARMOR_FUZZ_CHECK(!v.code);
    ARMOR_FUZZ_CHECK(!v.retry_after);
    return;
  }
  ARMOR_FUZZ_CHECK(v.kind == outcome::failure || v.kind == outcome::throttled);
  ARMOR_FUZZ_CHECK(static_cast<bool>(v.code));
  if (v.kind == outcome::throttled) ARMOR_FUZZ_CHECK(v.retryable);
  if (v.retry_after) {
    ARMOR_FUZZ_CHECK(v.retryable);
    ARMOR_FUZZ_CHECK(v.retry_after->count() >= 0);
    ARMOR_FUZZ_CHECK(*v.retry_after <= armor::http::max_server_hint);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace http = armor::http;
  armor_fuzz::input in(data, size);
  const std::uint8_t mode = in.byte();
  const std::int64_t raw_status = in.i64();
  const http::wall_time now = armor_fuzz::wall_time_from(in);
  // Mostly real statuses; sometimes anything an int holds.
  const int status = (mode & 1) != 0 ? static_cast<int>(static_cast<std::int32_t>(raw_status))
                                     : static_cast<int>(static_cast<std::uint64_t>(raw_status) % 700);
  http::header_map h;
  h.set_status(status);
  while (!in.empty()) {
    const std::string_view line = in.line();
    if (!line.empty() && static_cast<unsigned char>(line.front()) < 0x20) {
      h.add(names[static_cast<unsigned char>(line.front()) % std::size(names)], line.substr(1));
    } else {
      h.add_line(line);  // a status line here replaces the status
    }
  }
  const int s = h.status();
  http::status_classifier c;
  if ((mode & 2) != 0) c.github_403(false);
  if ((mode & 4) != 0 && s >= 100 && s <= 599) c.set(s, static_cast<http::status_rule>((mode >> 3) % 4));
  const armor::verdict v = c(h, now);
  check(v);
  const http::status_rule rule = c.rule(s);
  const bool github = (mode & 2) == 0 && s == 403 && rule != http::status_rule::retryable_failure &&
                      rule != http::status_rule::throttled;
  if (!github) {
    const armor::verdict alone = c.judge_status(s);
    ARMOR_FUZZ_CHECK(alone.kind == v.kind && alone.retryable == v.retryable && alone.code == v.code);
  }
  check(http::classify_status(status));
  check(http::classify_status(s, std::chrono::seconds{1}));
  if ((mode & 4) == 0) {
    const armor::verdict d = http::classify_status(s);
    const armor::verdict j = c.judge_status(s);
    ARMOR_FUZZ_CHECK(d.kind == j.kind && d.code == j.code && d.retryable == j.retryable);
  }
  return 0;
}
