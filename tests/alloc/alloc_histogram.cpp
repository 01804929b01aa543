// Recording a latency allocates nothing: the histogram by hand, and the
// latency_recorder layer on the pipeline's success and failure paths.
#include <armor/backoff.hpp>
#include <armor/histogram.hpp>
#include <armor/pipeline.hpp>

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
