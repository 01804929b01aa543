// The load shedder and the drain allocate nothing per call (admitted or
// refused, with a listener or without), and nothing to take a reading,
// force a mode, start or resume a drain or wait for one.
#include <armor/drain.hpp>
#include <armor/load_shedder.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>

using namespace std::chrono_literals;

namespace {
struct tally {
  long* heard;
  void operator()(const armor::load_shedder_event&) const noexcept { ++*heard; }
  void operator()(const armor::drain_event&) const noexcept { ++*heard; }
};
}  // namespace

TEST_CASE("a pipeline with a drain and a load shedder allocates nothing per call, admitted or refused") {
  armor::manual_clock clock;
  long heard = 0;
  armor::drain d{clock, tally{&heard}};
  armor::load_shedder s{{.resources = {{.name = "memory"}, {.name = "cpu"}}, .count_calls = true}, clock,
                        tally{&heard}};
  auto p = armor::pipeline{clock, std::ref(d), std::ref(s)};
  (void)p.try_execute([] { return 0; });  // warm-up
  long ok = 0;
  long refused = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    s.update(0, 0.5);
    s.update("cpu", 0.2);
    if (p.try_execute([] { return 1; }, {.priority = armor::priority::sheddable})) ++ok;
    s.update(0, 0.97);
    (void)s.update(0, 2.0);  // ignored
    if (!p.try_execute([] { return 1; }, {.priority = armor::priority::normal})) ++refused;
    if (p.try_execute([] { return 1; }, {.priority = armor::priority::critical})) ++ok;
    s.set_mode(armor::load_mode::maintenance);
    s.set_mode(armor::load_mode::automatic);
    d.start();
    if (!p.try_execute([] { return 1; })) ++refused;
    (void)d.wait_for(1s);
    d.resume();
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 2000);
  CHECK(refused == 2000);
  CHECK(heard > 0);
}
