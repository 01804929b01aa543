// The active-health hook of a host set allocates nothing: marking hosts
// healthy or unhealthy (set_active_health), an ejection ended early by a
// pass, healthy_hosts(), and picks that skip hosts failing their checks.
// (The checker itself allocates per round: it is not on the call path.)
#include <armor/host_set.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

using namespace std::chrono_literals;

TEST_CASE("a host set's active-health marks and the picks that follow them allocate nothing", "[host_set]") {
  armor::manual_clock clock;
  armor::host_set_options o{.balancer = armor::host_balancer::round_robin, .min_health_percent = 0};
  o.outlier.consecutive_failures = 1;
  o.outlier.max_ejection_percent = 100;
  armor::host_set hosts{o, clock, armor::seeded_rng{7}};
  hosts.update({{"a"}, {"b"}, {"c"}, {"d"}});
  { auto warm = hosts.pick(); }
  long to_b = 0;
  std::uint64_t healthy = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 2000; ++i) {
    hosts.set_active_health("b", i % 2 == 0);  // b fails its checks on odd rounds
    if (auto d = hosts.pick()) {
      auto p = std::move(d).permit();
      to_b += p.id() == "b" && i % 2 == 1 ? 1 : 0;
      // c fails every call (ejected at once); a pass ends its ejection.
      const bool c = p.id() == "c";
      hosts.record(std::move(p), c ? armor::host_outcome::failure : armor::host_outcome::success);
    }
    hosts.set_active_health("c", true, true);
    healthy += hosts.healthy_hosts();
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(to_b == 0);
  CHECK(healthy > 0);
}
