// quota_tracker on armor::any_quota_storage holding the memory backend
// allocates nothing per call: the storage was allocated once, when built.
#include <armor/quota_tracker.hpp>
#include <armor/storage/any.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <chrono>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

TEST_CASE("quota_tracker on any_quota_storage (memory:) allocates nothing per call") {
  armor::manual_clock clock{(sys_days{2024y / June / 15} + 12h).time_since_epoch()};
  armor::quota_tracker<armor::manual_clock, armor::any_quota_storage> t{
      {.windows = {quota_window::per_minute(100), quota_window::rolling(5000, 1h, 60)}}, clock,
      armor::make_quota_storage("memory:")};
  (void)t.try_consume();  // warm-up
  armor_test::allocation_scope scope;
  long granted = 0;
  for (int minute = 0; minute < 3; ++minute) {
    for (int i = 0; i < 120; ++i) granted += t.try_consume() ? 1 : 0;
    { auto dropped = t.reserve(5); }
    (void)t.usage(1);
    (void)t.charge(1);
    clock.advance(1min);
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted == 99 + 2 * 100);
}
