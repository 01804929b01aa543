// armor::histogram and armor::latency_recorder: latency distributions.
#include <armor/backoff.hpp>
#include <armor/histogram.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct transient : std::runtime_error {
  transient() : std::runtime_error("transient") {}
};

void check_refused(armor::histogram_options o, const std::string& words) {
  try {
    armor::histogram h{std::move(o)};
    FAIL("bad options were accepted: " << words);
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("armor::histogram") != std::string::npos);
    CHECK(what.find(words) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("histogram: the default bounds run from 1 ms to 10 s with the usual targets on edges", "[histogram]") {
  const auto b = armor::default_latency_bounds();
  REQUIRE(!b.empty());
  CHECK(b.front() == 1ms);
  CHECK(b.back() == 10s);
  for (const std::chrono::nanoseconds edge : {100ms, 300ms, 500ms, 2000ms}) CHECK(std::find(b.begin(), b.end(), edge) != b.end());
  armor::histogram h;
  CHECK(h.bounds() == b);
}

TEST_CASE("histogram: bad bounds and shards are refused, naming the option", "[histogram]") {
  check_refused({.bounds = {}}, "bounds must not be empty");
  check_refused({.bounds = {10ms, 5ms}}, "strictly increasing");
  check_refused({.bounds = {10ms, 10ms}}, "strictly increasing");
  check_refused({.bounds = {0ms, 5ms}}, "bounds must be positive");
  check_refused({.bounds = {-1ms}}, "bounds must be positive");
  check_refused({.bounds = std::vector<std::chrono::nanoseconds>(65, 1ms)}, "at most 64");
  check_refused({.shards = 0}, "shards");
  check_refused({.shards = 3}, "shards");
  check_refused({.shards = 512}, "shards");
}

TEST_CASE("histogram: a duration falls in the first bucket whose bound is at least it", "[histogram]") {
  armor::histogram h{{.bounds = {10ms, 20ms, 40ms}, .shards = 4}};
  h.record(0ns);
  h.record(10ms);     // on the bound: that bucket (le)
  h.record(10ms + 1ns);
  h.record(40ms);
  h.record(41ms);     // +Inf
  h.record(-5ms);     // counted as zero
  const auto s = h.snapshot();
  REQUIRE(s.counts.size() == 4);
  CHECK(s.counts[0] == 3);
  CHECK(s.counts[1] == 1);
  CHECK(s.counts[2] == 1);
  CHECK(s.counts[3] == 1);
  CHECK(s.count == 6);
  CHECK(s.sum == 10ms + 10ms + 1ns + 40ms + 41ms);
  CHECK(s.bounds == std::vector<std::chrono::nanoseconds>{10ms, 20ms, 40ms});
}

TEST_CASE("histogram: quantiles interpolate within the bucket as histogram_quantile does", "[histogram]") {
  armor::histogram h{{.bounds = {100ms, 200ms, 400ms}}};
  CHECK(h.snapshot().quantile(0.5) == 0ns);  // empty
  for (int i = 0; i < 50; ++i) h.record(50ms);    // (0, 100ms]
  for (int i = 0; i < 40; ++i) h.record(150ms);   // (100, 200ms]
  for (int i = 0; i < 10; ++i) h.record(300ms);   // (200, 400ms]
  const auto s = h.snapshot();
  CHECK(s.count == 100);
  CHECK(s.p50 == 100ms);                 // rank 50: the top of the first bucket
  CHECK(s.quantile(0.25) == 50ms);       // half way through the first
  CHECK(s.quantile(0.7) == 150ms);       // rank 70: half way through the second
  CHECK(s.p95 == 300ms);                 // rank 95: half way through the third
  CHECK(s.p99 == 380ms);
  h.record(1s);                          // +Inf: the estimate stops at the highest bound
  CHECK(h.snapshot().quantile(1.0) == 400ms);
}

TEST_CASE("histogram: counts recorded on many shards add up", "[histogram]") {
  armor::histogram h{{.bounds = {1ms}, .shards = 1}};
  for (int i = 0; i < 1000; ++i) h.record(500us);
  CHECK(h.snapshot().count == 1000);
  CHECK(h.snapshot().sum == 500ms);
}

TEST_CASE("latency_recorder outermost times the whole call: retries and waits included", "[histogram]") {
  armor::manual_clock clock;
  armor::latency_recorder call{};
  armor::latency_recorder attempt{{.scope = armor::latency_scope::attempt}};
  auto p = armor::pipeline{clock, std::ref(call),
                           armor::backoff{{.max_attempts = 3, .schedule = armor::backoff_schedule::constant,
                                           .initial = 100ms, .jitter = armor::jitter_mode::none}},
                           std::ref(attempt)};
  int calls = 0;
  const int v = p.execute([&] {
    clock.advance(20ms);
    if (++calls < 3) throw transient{};
    return 7;
  });
  CHECK(v == 7);
  const auto c = call.stats();
  CHECK(c.scope == armor::latency_scope::call);
  CHECK(c.duration.count == 1);
  CHECK(c.duration.sum == 3 * 20ms + 2 * 100ms);
  const auto a = attempt.stats();
  CHECK(a.is_attempt);
  CHECK(a.duration.count == 3);
  CHECK(a.duration.sum == 60ms);
  CHECK(a.duration.counts[4] == 3);  // 20ms: the bucket (10ms, 25ms]
}

TEST_CASE("latency_recorder times a successful attempt (it asks for the completion time)", "[histogram]") {
  armor::manual_clock clock;
  armor::latency_recorder rec{};
  auto p = armor::pipeline{clock, std::ref(rec)};
  p.execute([&] { clock.advance(250ms); });
  const auto s = rec.stats();
  CHECK(s.duration.count == 1);
  CHECK(s.duration.sum == 250ms);
  STATIC_REQUIRE(armor::detail::needs_completion_time<armor::latency_recorder>());
}

TEST_CASE("latency per key: keyed<latency_recorder> keeps a histogram per key, at most max_keys", "[histogram][keyed]") {
  armor::manual_clock clock;
  using per_key_latency = armor::keyed<armor::latency_recorder, armor::latency_recorder_options, armor::manual_clock>;
  per_key_latency per_upstream{{.histogram = {.bounds = {10ms, 100ms, 1s}, .shards = 1}}, {.max_keys = 2}, clock};
  auto p = armor::pipeline{clock, std::ref(per_upstream), armor::backoff{{.max_attempts = 2, .initial = 50ms,
                                                                          .jitter = armor::jitter_mode::none}}};
  const auto call = [&](const char* key, std::chrono::nanoseconds took, bool fail_once) {
    int n = 0;
    (void)p.try_execute(
        [&] {
          clock.advance(took);
          if (fail_once && ++n == 1) throw transient{};
          return 1;
        },
        {.key = key});
  };
  call("s3", 5ms, false);
  call("s3", 50ms, false);
  call("gemini", 400ms, true);  // 400 ms, a 50 ms backoff, 400 ms: one call of 850 ms
  const auto s3 = per_upstream.find("s3")->stats();
  CHECK(s3.duration.count == 2);
  CHECK(s3.duration.sum == 55ms);
  CHECK(s3.duration.counts == std::vector<std::uint64_t>{1, 1, 0, 0});
  const auto gemini = per_upstream.find("gemini")->stats();
  CHECK(gemini.duration.count == 1);
  CHECK(gemini.duration.sum == 850ms);
  CHECK_FALSE(per_upstream.find("s3")->idle(armor::timestamp{}));  // dropping it would lose its counts

  // A third key in a map of two: the least recently used key goes, with its histogram.
  call("github", 20ms, false);
  CHECK(per_upstream.size() == 2);
  CHECK_FALSE(per_upstream.find("s3"));
  CHECK(per_upstream.find("github")->stats().duration.count == 1);
  CHECK(per_upstream.stats().evicted_lru == 1);
}
