// Recording a latency allocates nothing: the histogram by hand, and the
// latency_recorder layer on the pipeline's success and failure paths, and a
// histogram per key (keyed<latency_recorder>) for keys already held; and a
// keyed map's refusals counted per key.
#include <armor/backoff.hpp>
#include <armor/histogram.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <chrono>
#include <functional>
#include <system_error>

using namespace std::chrono_literals;

TEST_CASE("histogram::record allocates nothing") {
  armor::histogram h;
  h.record(1ms);  // warm-up: the thread's shard number
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) h.record(std::chrono::microseconds{i * 37});
  CHECK(scope.allocations() == 0);
  CHECK(h.snapshot().count == 1001);
}

TEST_CASE("a pipeline with latency recorders allocates nothing per call") {
  armor::manual_clock clock;
  armor::latency_recorder call{};
  armor::latency_recorder attempt{{.scope = armor::latency_scope::attempt}};
  auto p = armor::pipeline{clock, std::ref(call),
                           armor::backoff{{.max_attempts = 2, .initial = 1ms, .jitter = armor::jitter_mode::none}},
                           std::ref(attempt)};
  int n = 0;
  (void)p.try_execute([&] { return 1; });  // warm-up
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    auto r = p.try_execute([&] {
      clock.advance(1ms);
      // Every third attempt fails (an error code): retried once.
      return ++n % 3 == 0 ? std::error_code(armor::errc::operation_failed) : std::error_code{};
    });
    (void)r;
  }
  CHECK(scope.allocations() == 0);
  CHECK(call.stats().duration.count == 1001);
  CHECK(attempt.stats().duration.count > 1001);
}

TEST_CASE("a histogram per key allocates nothing per call for a key already held") {
  armor::manual_clock clock;
  armor::keyed<armor::latency_recorder, armor::latency_recorder_options, armor::manual_clock> per_key{
      {}, {.max_keys = 16}, clock};
  auto p = armor::pipeline{clock, std::ref(per_key)};
  const auto op = [&] {
    clock.advance(3ms);
    return 1;
  };
  for (const char* key : {"s3", "gemini"}) (void)p.try_execute(op, {.key = key});  // creates the keys
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) (void)p.try_execute(op, {.key = i % 2 == 0 ? "s3" : "gemini"});
  CHECK(scope.allocations() == 0);
  CHECK(per_key.find("s3")->stats().duration.count == 501);
}

TEST_CASE("a keyed map's refusals counted per key allocate nothing") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_bucket{
      {.rate = {1, std::chrono::hours{1}}, .burst = 1}, {.max_keys = 16, .rejected_keys = 2}, clock};
  auto p = armor::pipeline{clock, std::ref(per_bucket)};
  for (const char* key : {"a", "b", "c"}) (void)p.try_execute([] { return 1; }, {.key = key});  // creates the keys
  armor_test::allocation_scope scope;
  for (int i = 0; i < 999; ++i) {
    (void)p.try_execute([] { return 1; }, {.key = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c"});  // refused
    if (i % 3 == 0) per_bucket.record_rejection("c");
  }
  CHECK(scope.allocations() == 0);
  CHECK(per_bucket.stats().rejected == 999 + 333);
  // a and c were refused first (c by record_rejection before b's turn): b counts as other.
  CHECK(per_bucket.rejected_other() == 333);
}
