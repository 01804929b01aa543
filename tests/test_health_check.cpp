// armor::health_checker on a manual clock: options refused by name, the
// start-up rule, both thresholds, the two intervals and the jitter (with a
// scripted random source), the host set's picks skipping unhealthy hosts,
// an ejection ended early by a pass, hosts added and removed, and the sync
// driver.
#include <armor/health_check.hpp>
#include <armor/host_set.hpp>

#include "armor_catch.hpp"

#include <cmath>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

namespace {

// Hands out the numbers u in [0, 1) it was given (0 when out of them).
struct scripted_rng {
  std::shared_ptr<std::deque<double>> draws = std::make_shared<std::deque<double>>();
  std::uint64_t operator()() noexcept {
    double u = 0.0;
    if (!draws->empty()) {
      u = draws->front();
      draws->pop_front();
    }
    return static_cast<std::uint64_t>(std::ldexp(u, 64));
  }
};

using hosts_t = armor::host_set<armor::manual_clock>;

armor::host_set_options plain() {
  armor::host_set_options o;
  o.balancer = armor::host_balancer::round_robin;
  o.min_health_percent = 0;
  o.outlier.max_ejection_percent = 100;
  o.outlier.enforcing_success_rate = 0;
  o.outlier.consecutive_failures = 2;
  return o;
}

armor::timestamp at(const armor::manual_clock& c) { return armor::to_timestamp(c.now()); }

const armor::health_check_status& status_of(const std::vector<armor::health_check_status>& all, std::string_view id) {
  for (const auto& s : all) {
    if (s.id == id) return s;
  }
  throw std::logic_error("no such host");
}

bool failing(const hosts_t& h, std::string_view id) {
  for (const auto& s : h.hosts()) {
    if (s.id == id) return s.failing_active_check;
  }
  return false;
}

bool ejected(const hosts_t& h, std::string_view id) {
  for (const auto& s : h.hosts()) {
    if (s.id == id) return s.ejected;
  }
  return false;
}

}  // namespace

TEST_CASE("health_checker: a bad option is refused at construction, by name") {
  hosts_t hosts{plain()};
  auto refused = [&](const armor::health_check_options& o, std::string_view name) {
    try {
      armor::health_checker c{hosts, o};
      FAIL("accepted");
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      CHECK(std::string_view{e.what()}.find(name) != std::string_view::npos);
    }
  };
  refused({.interval = 0s}, "interval");
  refused({.unhealthy_interval = -1s}, "unhealthy_interval");
  refused({.jitter = -1ns}, "jitter");
  refused({.timeout = 0s}, "timeout");
  refused({.healthy_threshold = 0}, "healthy_threshold");
  refused({.unhealthy_threshold = 0}, "unhealthy_threshold");
  armor::health_checker fine{hosts};
  CHECK(fine.options().interval == 30s);
  CHECK(fine.options().timeout == 10s);
  CHECK(fine.options().healthy_threshold == 3);
  CHECK(fine.options().unhealthy_threshold == 2);
}

TEST_CASE("health_checker: new hosts are due at once and unhealthy until one probe passes") {
  armor::manual_clock clock;
  hosts_t hosts{plain(), clock};
  hosts.update({{"a"}, {"b"}});
  armor::health_checker checker{hosts, {.interval = 10s}};
  CHECK(checker.next_due() == armor::timestamp::max());  // nothing known yet
  const auto probes = checker.due(at(clock));
  REQUIRE(probes.size() == 2);
  CHECK(hosts.healthy_hosts() == 0);
  CHECK(failing(hosts, "a"));
  CHECK(checker.due(at(clock)).empty());  // both are out
  CHECK(checker.report(probes[0], armor::probe_result::passed, at(clock)));
  CHECK_FALSE(checker.report(probes[0], armor::probe_result::passed, at(clock)));  // twice: ignored
  CHECK(checker.report(probes[1], armor::probe_result::failed, at(clock)));
  CHECK(hosts.healthy_hosts() == 1);
  CHECK_FALSE(failing(hosts, "a"));
  CHECK(failing(hosts, "b"));
  // Only "a" is picked while "b" fails its checks.
  for (int i = 0; i < 6; ++i) {
    auto d = hosts.pick();
    REQUIRE(d);
    auto p = std::move(d).permit();
    CHECK(p.id() == "a");
    hosts.record(std::move(p), armor::host_outcome::success);
  }
  const auto s = checker.stats();
  CHECK(s.hosts == 2);
  CHECK(s.unhealthy == 1);
  CHECK(s.probes == 2);
  CHECK(s.passed == 1);
  CHECK(s.failed == 1);
  CHECK(s.turned_healthy == 1);
  CHECK(s.turned_unhealthy == 0);
}

TEST_CASE("health_checker: unhealthy_threshold failures in a row, then healthy_threshold passes in a row") {
  armor::manual_clock clock;
  hosts_t hosts{plain(), clock};
  hosts.update({{"a"}});
  armor::health_checker checker{hosts, {.interval = 1s, .start_healthy = true}};
  using r = armor::probe_result;
  auto probe = [&](r result) {
    const auto probes = checker.due(at(clock));
    REQUIRE(probes.size() == 1);
    checker.report(probes[0], result, at(clock));
    clock.advance(1s);
    return status_of(checker.hosts(), "a").healthy;
  };
  CHECK(hosts.healthy_hosts() == 1);  // start_healthy: not marked
  CHECK(probe(r::failed));
  CHECK(probe(r::passed));     // the run is broken
  CHECK(probe(r::failed));
  CHECK_FALSE(probe(r::timed_out));  // two in a row: a time-out counts as a failure
  CHECK(failing(hosts, "a"));
  CHECK(hosts.healthy_hosts() == 0);
  CHECK_FALSE(probe(r::passed));
  CHECK_FALSE(probe(r::passed));
  CHECK_FALSE(probe(r::failed));  // the run of passes is broken
  CHECK_FALSE(probe(r::passed));
  CHECK_FALSE(probe(r::passed));
  CHECK(probe(r::passed));  // three in a row (judged: the start-up rule no longer applies)
  CHECK_FALSE(failing(hosts, "a"));
  const auto s = checker.stats();
  CHECK(s.probes == 10);
  CHECK(s.passed == 6);
  CHECK(s.failed == 3);
  CHECK(s.timed_out == 1);
  CHECK(s.turned_unhealthy == 1);
  CHECK(s.turned_healthy == 1);
}

TEST_CASE("health_checker: interval while healthy, unhealthy_interval while not, plus the jitter drawn") {
  armor::manual_clock clock;
  hosts_t hosts{plain(), clock};
  hosts.update({{"a"}});
  scripted_rng rng;
  armor::health_checker checker{
      hosts, {.interval = 10s, .unhealthy_interval = 2s, .jitter = 1s, .unhealthy_threshold = 1}, rng};
  const armor::timestamp t0 = at(clock);
  auto p = checker.due(t0);
  REQUIRE(p.size() == 1);
  rng.draws->push_back(0.0);
  checker.report(p[0], armor::probe_result::failed, t0);  // judged unhealthy: threshold 1
  CHECK(checker.next_due() == t0 + 2s);  // unhealthy_interval, jitter 0
  clock.advance(1s);
  CHECK(checker.due(at(clock)).empty());  // not due yet
  clock.advance(1s);
  p = checker.due(at(clock));
  REQUIRE(p.size() == 1);
  rng.draws->push_back(0.5);  // floor(0.5 x (1e9 + 1)) ns
  // Judged already (it failed unhealthy_threshold times): the start-up rule
  // is spent, so it takes healthy_threshold (3) passes.
  checker.report(p[0], armor::probe_result::passed, at(clock));
  CHECK_FALSE(status_of(checker.hosts(), "a").healthy);
  CHECK(checker.next_due() == t0 + 2s + 2s + 500ms);
  clock.advance(2500ms);
  for (int i = 0; i < 2; ++i) {
    p = checker.due(at(clock));
    REQUIRE(p.size() == 1);
    checker.report(p[0], armor::probe_result::passed, at(clock));
    clock.advance(2s);
  }
  CHECK(status_of(checker.hosts(), "a").healthy);
  const armor::timestamp healthy_at = at(clock) - 2s;
  CHECK(checker.next_due() == healthy_at + 10s);  // the healthy interval now
}

TEST_CASE("health_checker: a pass ends an outlier ejection early, unless end_ejection_on_pass is off") {
  for (const bool end : {true, false}) {
    armor::manual_clock clock;
    hosts_t hosts{plain(), clock};
    hosts.update({{"a"}, {"b"}});
    armor::health_checker checker{hosts, {.interval = 1s, .start_healthy = true, .end_ejection_on_pass = end}};
    // Two failures in a row eject "a" for 30 s (outlier detection).
    for (int i = 0; i < 2; ++i) {
      auto d = hosts.pick(at(clock), "b");
      REQUIRE(d);
      auto permit = std::move(d).permit();
      REQUIRE(permit.id() == "a");
      hosts.record(std::move(permit), armor::host_outcome::failure, at(clock));
    }
    REQUIRE(ejected(hosts, "a"));
    CHECK(hosts.healthy_hosts() == 1);
    clock.advance(1s);
    checker.run_due(at(clock), [](std::string_view) { return true; });
    CHECK(ejected(hosts, "a") == !end);
    CHECK(hosts.healthy_hosts() == (end ? 2u : 1u));
  }
}

TEST_CASE("health_checker: hosts added are checked at once, hosts removed are forgotten") {
  armor::manual_clock clock;
  hosts_t hosts{plain(), clock};
  hosts.update({{"a"}, {"b"}});
  armor::health_checker checker{hosts, {.interval = 5s}};
  const auto first = checker.due(at(clock));
  REQUIRE(first.size() == 2);
  hosts.update({{"a"}, {"c"}});
  clock.advance(1s);
  const auto second = checker.due(at(clock));  // "c" is new; "a" is still out
  REQUIRE(second.size() == 1);
  CHECK(second[0].id == "c");
  CHECK_FALSE(checker.report(first[1], armor::probe_result::passed, at(clock)));  // "b": forgotten
  CHECK(checker.report(first[0], armor::probe_result::passed, at(clock)));
  CHECK(checker.stats().hosts == 2);
  CHECK(checker.stats().probes == 1);
}

TEST_CASE("health_checker: the sync driver runs the due probes with the user's check") {
  armor::manual_clock clock;
  hosts_t hosts{plain(), clock};
  hosts.update({{"a"}, {"b"}, {"c"}});
  armor::health_checker checker{hosts, {.interval = 10s, .unhealthy_threshold = 1}};
  std::map<std::string, armor::probe_result> answer{
      {"a", armor::probe_result::passed}, {"b", armor::probe_result::timed_out}, {"c", armor::probe_result::passed}};
  std::vector<std::string> asked;
  auto check = [&](std::string_view id) {
    asked.emplace_back(id);
    if (id == "c") throw std::runtime_error("no route");  // counts as failed
    return answer.at(std::string{id});
  };
  CHECK(checker.run_due(at(clock), check) == 3);
  CHECK(asked == std::vector<std::string>{"a", "b", "c"});
  CHECK(hosts.healthy_hosts() == 1);
  CHECK(checker.stats().timed_out == 1);
  CHECK(checker.stats().failed == 1);
  clock.advance(9s);
  CHECK(checker.run_due(at(clock), check) == 0);
  clock.advance(1s);
  CHECK(checker.run_due(at(clock), check) == 3);
  // Every host unhealthy: the host set panics and picks among all of them.
  answer["a"] = armor::probe_result::failed;
  clock.advance(10s);
  checker.run_due(at(clock), check);
  CHECK(hosts.healthy_hosts() == 0);
  auto d = hosts.pick();
  REQUIRE(d);
  CHECK(hosts.stats().panic_picks == 1);
}

TEST_CASE("health_checker: a host removed and listed again between two checks keeps its mark") {
  armor::manual_clock clock;
  hosts_t hosts{plain(), clock};
  hosts.update({{"a"}, {"b"}});
  armor::health_checker checker{hosts, {.interval = 5s, .unhealthy_threshold = 1}};
  checker.run_due(at(clock), [](std::string_view id) { return id == "a"; });
  REQUIRE(failing(hosts, "b"));
  // The host set forgets "b" and makes it afresh, unmarked; the checker never saw it go.
  hosts.update({{"a"}});
  hosts.update({{"a"}, {"b"}});
  CHECK_FALSE(failing(hosts, "b"));
  CHECK(checker.due(at(clock)).empty());  // nothing due, but the mark is restated
  CHECK(failing(hosts, "b"));
  CHECK(hosts.healthy_hosts() == 1);
}
