// circuit_breaker allocates once, at construction, and never per call: not
// while closed, open (rejecting), half-open (probing), nor in its windows.
#include <armor/circuit_breaker.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>
#include <system_error>

using namespace std::chrono_literals;

namespace {

struct transitions {
  int count = 0;
  void operator()(const armor::circuit_breaker_event&) noexcept { ++count; }
};

// Through every state: successes, a run of failures, rejections while open,
// a failed probe, then successful probes.
template <class Pipeline>
long cycle(const Pipeline& p, armor::manual_clock& clock) {
  long sum = 0;
  for (int i = 0; i < 50; ++i) sum += p.try_execute([] { return 1; }).value_or(0);
  for (int i = 0; i < 10; ++i) {
    (void)p.try_execute([] { return std::make_error_code(std::errc::connection_refused); });
  }
  for (int i = 0; i < 10; ++i) sum += p.try_execute([] { return 1; }).value_or(0);  // rejected
  clock.advance(1s);
  (void)p.try_execute([] { return std::make_error_code(std::errc::connection_refused); });  // probe fails
  clock.advance(1s);
  for (int i = 0; i < 10; ++i) {
    sum += p.try_execute([&] {
              clock.advance(1ms);
              return 1;
            }).value_or(0);
  }
  return sum;
}

}  // namespace

TEST_CASE("circuit_breaker allocates nothing per call, in any state") {
  armor::manual_clock clock;
  transitions heard;
  armor::circuit_breaker count_window{{.failure_threshold = 3,
                                       .failure_rate = 0.5,
                                       .slow_call_threshold = 500ms,
                                       .window_size = 50,
                                       .minimum_calls = 10,
                                       .open_for = 1s,
                                       .count_calls = true},
                                      clock, std::ref(heard)};
  armor::circuit_breaker time_window{{.failure_threshold = 3,
                                      .failure_rate = 0.5,
                                      .window = armor::breaker_window::time,
                                      .window_duration = 10s,
                                      .minimum_calls = 10,
                                      .open_for = 1s,
                                      .open_for_multiplier = 2.0,
                                      .half_open_timeout = 10s},
                                     clock};
  const auto p1 = armor::pipeline{clock, std::ref(count_window)};
  const auto p2 = armor::pipeline{clock, std::ref(time_window)};
  (void)cycle(p1, clock);  // warm-up: anything lazily made outside the measurement
  (void)cycle(p2, clock);

  armor_test::allocation_scope scope;
  long sum = 0;
  for (int round = 0; round < 20; ++round) {
    sum += cycle(p1, clock);
    sum += cycle(p2, clock);
    auto a = count_window.try_acquire();
    count_window.record(std::move(a).permit(), armor::verdict::success());
    count_window.try_acquire().permit().cancel();
    (void)count_window.stats();
    (void)time_window.idle(armor::to_timestamp(clock.now()));
  }
  CHECK(scope.allocations() == 0);
  CHECK(sum > 0);
  CHECK(heard.count > 20);
  CHECK(count_window.stats().times_opened > 20);
  CHECK(time_window.stats().times_opened > 20);
}
