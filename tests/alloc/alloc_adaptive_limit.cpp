// The adaptive limit allocates nothing per call: admitted, refused, timed,
// and when a call closes a window and runs the algorithm (every algorithm),
// with a listener that hears every event.
#include <armor/adaptive_limit.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>

using namespace std::chrono_literals;

namespace {
struct tally {
  long changed = 0;
  long refused = 0;
  void operator()(const armor::adaptive_limit_event& e) noexcept {
    if (e.kind == armor::adaptive_limit_event_kind::refused) {
      ++refused;
    } else {
      ++changed;
    }
  }
};

template <class Algorithm>
void check_no_allocation() {
  armor::manual_clock clock;
  tally heard;
  armor::adaptive_limit<Algorithm, armor::manual_clock, std::reference_wrapper<tally>> lim{
      {.initial_limit = 2, .max_limit = 2, .window = 10ms, .min_samples = 1, .normal_share = 0.5, .sheddable_share = 0.5, .count_calls = true}, clock,
      std::ref(heard)};
  auto p = armor::pipeline{clock, std::ref(lim)};
  (void)p.try_execute([] { return 0; });  // warm-up
  long ok = 0;
  long refused = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([&] {
          clock.advance(3ms);  // a window closes every few calls
          return 1;
        })) {
      ++ok;
    }
    auto held = lim.try_acquire(armor::priority::critical).permit();
    auto held2 = lim.try_acquire(armor::priority::critical).permit();
    if (!p.try_execute([] { return 1; })) ++refused;  // the normal share is taken
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 1000);
  CHECK(refused >= 1000);
  CHECK(heard.refused >= 1000);
  CHECK(lim.stats().windows > 100);
}
}  // namespace

TEST_CASE("a pipeline with an adaptive limit allocates nothing per call, windows closing included") {
  check_no_allocation<armor::gradient_limit>();
  check_no_allocation<armor::vegas_limit>();
  check_no_allocation<armor::aimd_limit>();
}
