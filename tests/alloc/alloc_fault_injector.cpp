// The fault injector allocates nothing per call: disabled, enabled but not
// firing, and firing an error code, a chosen value or a delay (slept on a
// manual clock). An injected exception is thrown and caught by the
// classifier, which the C++ runtime allocates for, as for any exception;
// the injector itself makes its exception once, at construction.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/fault_injector.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>

using namespace std::chrono_literals;

namespace {
struct heard {
  long n = 0;
  void operator()(const armor::fault_injector_event&) noexcept { ++n; }
};
}  // namespace

TEST_CASE("a pipeline with a fault injector allocates nothing per call, firing or not", "[fault_injector]") {
  armor::manual_clock clock;
  heard events;
  armor::fault_injector<int, armor::seeded_rng, std::reference_wrapper<heard>> chaos{
      {.error_rate = 0.2, .result_rate = 0.2, .latency_rate = 0.3, .latency = 5ms, .max_active = 4}, -1,
      armor::seeded_rng{7}, std::ref(events)};
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 1000}, clock};
  const auto p = armor::pipeline{clock, armor::classify{[](int v) {
                                   return v >= 0 ? armor::verdict::success() : armor::verdict::failure();
                                 }},
                                 armor::backoff{{.max_attempts = 3, .initial = 1ms}}, std::ref(breaker),
                                 std::ref(chaos)};
  (void)p.try_execute([] { return 1; });  // warm-up
  long ok = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; })) ++ok;
  }
  chaos.set_enabled(false);
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; })) ++ok;
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 1000);
  const auto s = chaos.stats();
  CHECK(s.errors > 0);
  CHECK(s.results > 0);
  CHECK(s.latencies > 0);
  CHECK(events.n == static_cast<long>(s.errors + s.results + s.latencies));
}
