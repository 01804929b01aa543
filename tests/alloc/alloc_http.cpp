// armor::http allocates nothing to parse dates, Retry-After and rate-limit
// headers, to judge a response in a pipeline, or to decide a pace; a reused
// header_map stops allocating once it has grown.
#include <armor/backoff.hpp>
#include <armor/http.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
namespace http = armor::http;

namespace {

struct response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
};

const http::wall_time now{std::chrono::duration_cast<http::wall_time::duration>(std::chrono::seconds{1'700'000'000})};

}  // namespace

TEST_CASE("http parsers allocate nothing") {
  using std::chrono::nanoseconds;
  using std::chrono::seconds;
  // Long values, beyond any small-string buffer, built before measuring.
  const std::string long_garbage(4096, 'x');
  const std::string long_zeros = std::string(4096, '0') + "5";
  const std::string_view dates[] = {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                    "Sun Nov  6 08:49:37 1994", long_garbage};
  const http::wall_time nov_6_1994{std::chrono::duration_cast<http::wall_time::duration>(seconds{784'111'777})};
  const std::optional<http::wall_time> expected_dates[] = {nov_6_1994, nov_6_1994, nov_6_1994, std::nullopt};
  // now is Tue, 14 Nov 2023 22:13:20 GMT.
  const std::string_view waits[] = {"120", "Tue, 14 Nov 2023 22:13:50 GMT", long_zeros, long_garbage};
  const std::optional<nanoseconds> expected_waits[] = {seconds{120}, seconds{30}, seconds{5}, std::nullopt};
  const std::string_view resets[] = {"1700000060", "1.5", "6m0s", "1700000060000", "garbage"};
  const std::optional<nanoseconds> expected_resets[] = {seconds{60}, nanoseconds{1'500'000'000}, seconds{360},
                                                         seconds{60}, std::nullopt};
  int wrong = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    for (std::size_t k = 0; k < std::size(dates); ++k) {
      if (http::parse_http_date(dates[k], now) != expected_dates[k]) ++wrong;
    }
    for (std::size_t k = 0; k < std::size(waits); ++k) {
      if (http::parse_retry_after(waits[k], now) != expected_waits[k]) ++wrong;
    }
    for (std::size_t k = 0; k < std::size(resets); ++k) {
      const auto r = http::parse_rate_limit_reset(resets[k], now);
      const std::optional<nanoseconds> after = r ? std::optional<nanoseconds>{r->after} : std::nullopt;
      if (after != expected_resets[k]) ++wrong;
      if (r && r->at != now + std::chrono::duration_cast<http::wall_time::duration>(r->after)) ++wrong;
    }
  }
  CHECK(scope.allocations() == 0);
  CHECK(wrong == 0);
}

TEST_CASE("reading rate-limit headers, judging and pacing allocate nothing") {
  const response gh{429,
                    {{"X-RateLimit-Limit", "5000"},
                     {"X-RateLimit-Remaining", "0"},
                     {"X-RateLimit-Used", "5000"},
                     {"X-RateLimit-Reset", "1700000600"}}};
  const response ietf{200,
                      {{"RateLimit", "\"burst\";r=40;t=5, \"daily\";r=3;t=7200"},
                       {"RateLimit-Policy", "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400"}}};
  const response retry{503, {{"Retry-After", "Tue, 14 Nov 2023 22:13:50 GMT"}}};
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {100, 1s}, .burst = 10}, clock};
  http::pacer pacer{bucket, {.ceiling = {100, 1s}, .max_burst = 5}};
  http::status_classifier c;
  c.set(404, http::status_rule::failure);
  int wrong = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    const http::rate_limit_info a = http::read_rate_limit(gh, now);
    const http::rate_limit_info b = http::read_rate_limit(ietf, now);
    if (a.limit != 5000 || a.remaining != 0 || a.used != 5000 || a.reset_after != 600s) ++wrong;
    // The policy with the fewest remaining ("daily") is the one read.
    if (b.limit != 1000 || b.remaining != 3 || b.reset_after != 7200s || b.window != 86400s) ++wrong;
    // GitHub's exhausted 429 waits for the reset; the 503 for its Retry-After date.
    const armor::verdict gv = c(gh, now);
    if (!gv.retryable || gv.retry_after != 600s) ++wrong;
    const armor::verdict rv = c(retry, now);
    if (!rv.retryable || rv.retry_after != 30s) ++wrong;
    if (!http::classify_transport_error(std::errc::connection_reset).retryable) ++wrong;
    // The decision; pacer::observe adds token_bucket::set_rate, which is
    // the bucket's to keep allocation-free (alloc_token_bucket.cpp).
    const auto t = http::pace(b, pacer.options(), bucket.available(armor::to_timestamp(clock.now())),
                              bucket.max_wait());
    if (!t || t->burst != 3 || t->drain) ++wrong;  // min(max_burst 5, 3 remaining)
    // Applied, and (after its reset plus the margin, with nothing newer)
    // returned to the ceiling, by observe() and by refresh().
    if (!pacer.observe(b, armor::to_timestamp(clock.now()))) ++wrong;
    clock.advance(7201s);
    if (!(i % 2 == 0 ? pacer.observe(http::rate_limit_info{}) : pacer.refresh())) ++wrong;
    if (bucket.rate() != armor::rate{100, 1s}) ++wrong;
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(wrong == 0);
}

TEST_CASE("a pipeline judging responses with status_classifier allocates nothing per call") {
  armor::manual_clock clock;
  // The operation hands out references to prebuilt responses, so only
  // armor's own work is measured.
  const response answers[] = {{503, {{"Retry-After", "1"}}}, {200, {}}};
  int calls = 0;
  auto op = [&]() -> const response* { return &answers[calls++ % 2]; };
  const auto judge = armor::pipeline{clock,
                                     armor::classify{[](const response* r) { return http::status_classifier{}(*r); }},
                                     armor::backoff{{.max_attempts = 3, .initial = 1ms,
                                                     .jitter = armor::jitter_mode::none}}};
  int ok = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    const auto r = judge.try_execute(op);
    if (r && (*r)->status == 200) ++ok;
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 100);
  CHECK(calls == 200);
}

TEST_CASE("a reused header_map stops allocating") {
  http::header_map h;
  const std::string_view lines[] = {"HTTP/1.1 429 Too Many Requests\r\n", "Retry-After: 3\r\n",
                                    "X-RateLimit-Remaining: 0\r\n", "X-RateLimit-Reset: 1700000600\r\n",
                                    "Content-Type: application/json; charset=utf-8\r\n"};
  for (const auto l : lines) h.add_line(l);  // grows once
  armor_test::allocation_scope scope;
  std::int64_t seen = 0;
  for (int i = 0; i < 100; ++i) {
    h.clear();
    for (const auto l : lines) h.add_line(l);
    seen += http::read_rate_limit(h, now).remaining.value_or(1);
  }
  CHECK(scope.allocations() == 0);
  CHECK(seen == 0);
}
