// A host set allocates nothing per call: picks with each balancer, records
// of every outcome, ejections (with a listener), returns at an evaluation,
// panic picks and dropped permits. It allocates when update() publishes a
// new list, not when a call reads it.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/host_set.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>
#include <system_error>

using namespace std::chrono_literals;

namespace {
struct tally {
  long n = 0;
  void operator()(const armor::host_set_event&) noexcept { ++n; }
};
}  // namespace

TEST_CASE("a host set allocates nothing per pick and record, ejections included", "[host_set]") {
  for (const auto balancer :
       {armor::host_balancer::peak_ewma, armor::host_balancer::round_robin, armor::host_balancer::least_pending}) {
    INFO(armor::to_string(balancer));
    armor::manual_clock clock;
    tally heard;
    armor::host_set_options o{.balancer = balancer};
    o.outlier.consecutive_failures = 3;
    o.outlier.max_ejection_percent = 50;
    o.outlier.enforcing_failure_percentage = 100;
    o.outlier.failure_percentage_request_volume = 5;
    o.outlier.success_rate_request_volume = 5;
    o.outlier.max_ejection_time_jitter = 1s;
    armor::host_set hosts{o, clock, armor::seeded_rng{7}, std::ref(heard)};
    hosts.update({{"a"}, {"b"}, {"c", 2}, {"d"}, {"e"}, {"f"}, {"g"}, {"h"}});
    { auto warm = hosts.pick(); }
    long picked = 0;
    armor_test::allocation_scope scope;
    for (int i = 0; i < 2000; ++i) {
      auto d = hosts.pick();
      if (!d) continue;
      ++picked;
      auto p = std::move(d).permit();
      const bool bad = p.id() == "a" || p.id() == "b";
      clock.advance(1ms);
      if (i % 7 == 0) continue;  // dropped: cancelled
      hosts.record(std::move(p), bad ? (i % 2 ? armor::host_outcome::gateway_failure : armor::host_outcome::failure)
                                     : armor::host_outcome::success);
      if (i % 100 == 0) clock.advance(10s);  // evaluations, returns
    }
    CHECK(scope.allocations() == 0);
    CHECK(picked == 2000);
    CHECK(heard.n > 0);
  }
}

TEST_CASE("a host set layer allocates nothing per call: retries elsewhere, per-host breakers", "[host_set]") {
  armor::manual_clock clock;
  armor::host_set_options o{.balancer = armor::host_balancer::peak_ewma};
  o.outlier.consecutive_failures = 3;
  o.outlier.max_ejection_percent = 25;
  o.outlier.base_ejection_time = 1s;
  armor::host_set hosts{o, clock, armor::seeded_rng{3}};
  hosts.update({{"a"}, {"b"}, {"c"}, {"d"}, {"e"}, {"f"}, {"g"}, {"h"}});
  armor::keyed<armor::circuit_breaker<armor::manual_clock>> per_host{
      {.failure_threshold = 2, .open_for = 2s}, {.key = armor::key_source::host()}, clock};
  for (const char* id : {"a", "b", "c", "d", "e", "f", "g", "h"}) (void)per_host.get(id);  // the keys' instances
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .initial = 1ms}}, std::ref(hosts),
                           std::ref(per_host)};
  long ok = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 2000; ++i) {
    const auto r = p.try_execute([&](const armor::context& ctx) {
      clock.advance(1ms);
      return ctx.host() == "a" ? std::make_error_code(std::errc::connection_reset) : std::error_code{};
    });
    if (r.has_value() && !*r) ++ok;
    if (i % 200 == 0) clock.advance(5s);  // breakers half-open, ejections end
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 2000);
  CHECK(hosts.stats().ejections > 0);
}
