// The adaptive limit allocates nothing per call: admitted, refused, timed,
// and when a call closes a window and runs the algorithm (every algorithm),
// with a listener that hears every event; with a queue, nor does a call
// that waits in it (served by a handover, or giving up after max_wait).
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
  long queued = 0;
  long abandoned = 0;
  armor::adaptive_limit_permit* release_when_queued = nullptr;  // handed over while its caller waits
  void operator()(const armor::adaptive_limit_event& e) noexcept {
    switch (e.kind) {
      case armor::adaptive_limit_event_kind::refused: ++refused; break;
      case armor::adaptive_limit_event_kind::limit_changed: ++changed; break;
      case armor::adaptive_limit_event_kind::queued:
        ++queued;
        if (release_when_queued != nullptr) release_when_queued->release();
        break;
      case armor::adaptive_limit_event_kind::abandoned: ++abandoned; break;
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

TEST_CASE("a call that waits in the adaptive limit's queue allocates nothing, served or not") {
  armor::manual_clock clock;
  tally heard;
  armor::adaptive_limit<armor::aimd_limit, armor::manual_clock, std::reference_wrapper<tally>> lim{
      {.initial_limit = 1, .min_limit = 1, .max_limit = 1, .window = 10ms, .min_samples = 1, .max_queue = 2,
       .max_wait = 5ms},
      clock, std::ref(heard)};
  auto p = armor::pipeline{clock, std::ref(lim)};
  armor::adaptive_limit_permit holder;
  (void)p.try_execute([] { return 0; });  // warm-up
  long served = 0;
  long gave_up = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    // Served: the listener releases the holder when the call queues; its
    // slot is handed over before the driver waits.
    holder = lim.try_acquire().permit();
    heard.release_when_queued = &holder;
    if (p.try_execute([&] {
          clock.advance(1ms);
          return 1;
        })) {
      ++served;
    }
    // Not served: it waits max_wait (virtual time) and leaves.
    heard.release_when_queued = nullptr;
    auto again = lim.try_acquire().permit();
    if (!p.try_execute([] { return 1; })) ++gave_up;
  }
  CHECK(scope.allocations() == 0);
  CHECK(served == 1000);
  CHECK(gave_up == 1000);
  CHECK(heard.queued == 2000);
  CHECK(heard.abandoned == 1000);
  CHECK(lim.stats().abandoned == 1000);
  CHECK(lim.queued() == 0);
}
