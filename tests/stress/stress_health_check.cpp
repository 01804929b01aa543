// Active health checks under load: two threads run a health checker's sync
// driver at once (probes flip between passing and failing) while pickers
// pick and record (failures eject hosts; passes end ejections early through
// the host set's judge) and an updater changes the host list. Every pick
// gets a host, calls in flight return to zero, every probe handed out is
// reported at most once, and once the checker is quiet and one host alone
// is healthy, every pick goes to it. Fixed iteration counts: nothing waits
// for another thread's progress, so a descheduled thread only makes it
// slower. Run under TSan.
#include <armor/health_check.hpp>
#include <armor/host_set.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("health_checker: probes, picks, ejections and list changes at once", "[health_check]") {
  constexpr int pickers = 2;
  constexpr int iterations = 20000;
  constexpr int rounds = 2000;
  armor::manual_clock clock;
  armor::host_set_options o;
  o.balancer = armor::host_balancer::round_robin;
  o.min_health_percent = 0;
  o.outlier.consecutive_failures = 2;
  o.outlier.max_ejection_percent = 50;
  o.outlier.interval = 1ms;
  o.outlier.enforcing_success_rate = 0;  // only streaks eject: none in the quiet phase
  armor::host_set hosts{o, clock};
  hosts.update({{"h0"}, {"h1"}, {"h2"}, {"h3"}});
  armor::health_checker checker{hosts, {.interval = 1ms, .healthy_threshold = 2, .unhealthy_threshold = 1}};
  std::atomic<long> picked{0};
  std::atomic<long> checked{0};
  std::vector<std::thread> pool;
  for (int p = 0; p < pickers; ++p) {
    pool.emplace_back([&, p] {
      for (int i = 0; i < iterations; ++i) {
        auto d = hosts.pick();
        if (!d) continue;  // counted below: picked falls short (Catch2 asserts on this thread only)
        auto permit = std::move(d).permit();
        picked.fetch_add(1, std::memory_order_relaxed);
        hosts.record(std::move(permit), (i + p) % 3 == 0 ? armor::host_outcome::failure : armor::host_outcome::success);
      }
    });
  }
  for (int c = 0; c < 2; ++c) {
    pool.emplace_back([&, c] {
      for (int i = 0; i < rounds; ++i) {
        const auto n = checker.run_due(armor::to_timestamp(clock.now()),
                                       [&](std::string_view id) { return (id.back() + i + c) % 2 == 0; });
        checked.fetch_add(static_cast<long>(n), std::memory_order_relaxed);
        clock.advance(1ms);
      }
    });
  }
  pool.emplace_back([&] {
    for (int i = 0; i < 200; ++i) {
      if (i % 2 == 0) {
        hosts.update({{"h0"}, {"h1"}, {"h2"}});
      } else {
        hosts.update({{"h0"}, {"h1"}, {"h2"}, {"h3"}, {"h4"}});
      }
    }
  });
  for (auto& t : pool) t.join();
  CHECK(picked.load() == pickers * iterations);
  CHECK(hosts.stats().pending == 0);
  const auto s = checker.stats();
  // A probe of a host that another thread's due() found removed meanwhile is
  // run but its report ignored: never more reports counted than probes run.
  CHECK(static_cast<long>(s.probes) <= checked.load());
  CHECK(static_cast<long>(s.probes) > checked.load() / 2);
  CHECK(s.passed + s.failed + s.timed_out == s.probes);
  for (const auto& h : checker.hosts()) CHECK_FALSE(h.probing);

  // Quiet now: only h0 passes; once judged, every pick goes to it.
  for (int i = 0; i < 4; ++i) {
    clock.advance(1ms);
    checker.run_due(armor::to_timestamp(clock.now()), [](std::string_view id) { return id == "h0"; });
  }
  REQUIRE(hosts.healthy_hosts() == 1);  // h0 (a pass also ended any ejection of it)
  for (int i = 0; i < 10; ++i) {
    auto d = hosts.pick();
    REQUIRE(d);
    CHECK(std::move(d).permit().id() == "h0");
  }
}
