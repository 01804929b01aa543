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
#include <cstdint>
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
  // Long values, beyond any small-string buffer, built before measuring.
  const std::string long_garbage(4096, 'x');
  const std::string long_zeros = std::string(4096, '0') + "5";
  std::int64_t sum = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    for (const std::string_view v : {std::string_view("Sun, 06 Nov 1994 08:49:37 GMT"),
                                     std::string_view("Sunday, 06-Nov-94 08:49:37 GMT"),
                                     std::string_view("Sun Nov  6 08:49:37 1994"), std::string_view(long_garbage)}) {
      if (const auto t = http::parse_http_date(v, now)) sum += t->time_since_epoch().count() % 7;
    }
    for (const std::string_view v : {std::string_view("120"), std::string_view("Tue, 14 Nov 2023 22:13:50 GMT"),
                                     std::string_view(long_zeros), std::string_view(long_garbage)}) {
      if (const auto d = http::parse_retry_after(v, now)) sum += d->count() % 7;
    }
    for (const std::string_view v : {"1700000060", "1.5", "6m0s", "1700000060000"}) {
      if (const auto r = http::parse_rate_limit_reset(v, now)) sum += r->after.count() % 7;
    }
  }
  CHECK(scope.allocations() == 0);
  CHECK(sum >= 0);
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
  std::int64_t seen = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    const http::rate_limit_info a = http::read_rate_limit(gh, now);
    const http::rate_limit_info b = http::read_rate_limit(ietf, now);
    seen += a.remaining.value_or(0) + b.remaining.value_or(0);
    seen += c(gh, now).retry_after.value_or(0ns).count() > 0 ? 1 : 0;
    seen += c(retry, now).retry_after.value_or(0ns).count() > 0 ? 1 : 0;
    seen += http::classify_transport_error(std::errc::connection_reset).retryable ? 1 : 0;
    // The decision; pacer::observe adds token_bucket::set_rate, which is
    // the bucket's to keep allocation-free (alloc_token_bucket.cpp).
    if (const auto t = http::pace(b, pacer.options(), bucket.available(armor::to_timestamp(clock.now())),
                                  bucket.max_wait())) {
      seen += t->burst;
    }
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(seen > 0);
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
