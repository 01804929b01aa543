// armor::readiness: each kind of policy's answer, required against
// optional, live checks, registration refused, and the exact JSON (escaping
// included).
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/drain.hpp>
#include <armor/host_set.hpp>
#include <armor/load_shedder.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/readiness.hpp>

#include "armor_catch.hpp"

#include <string>

using namespace std::chrono_literals;

TEST_CASE("readiness: nothing registered is ready and live") {
  const armor::readiness r;
  CHECK(r.ready().ok);
  CHECK(r.ready().http_status() == 200);
  CHECK(r.ready_json() == R"({"status":"ready","checks":[]})");
  CHECK(r.live_json() == R"({"status":"live","checks":[]})");
}

TEST_CASE("readiness: a host set is ready while one of its hosts is healthy") {
  armor::manual_clock clock;
  armor::host_set<armor::manual_clock> hosts{{.balancer = armor::host_balancer::round_robin}, clock};
  armor::readiness r;
  r.add("payments", hosts);
  CHECK(r.ready_json() ==
        R"({"status":"not_ready","checks":[{"name":"payments","kind":"host_set","required":true,"ok":false,"detail":"no host listed"}]})");
  hosts.update({{"a"}, {"b"}});
  CHECK(r.ready_json() ==
        R"({"status":"ready","checks":[{"name":"payments","kind":"host_set","required":true,"ok":true,"detail":"2 of 2 hosts healthy"}]})");
  hosts.set_active_health("a", false);
  CHECK(r.ready().checks[0].detail == "1 of 2 hosts healthy");
  CHECK(r.ready().ok);
  hosts.set_active_health("b", false);
  const armor::readiness_report rep = r.ready();
  CHECK_FALSE(rep.ok);
  CHECK(rep.http_status() == 503);
  CHECK(rep.checks[0].detail == "0 of 2 hosts healthy");
}

TEST_CASE("readiness: breakers, quotas, the shedder, a drain and bulkheads") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> breaker{{}, clock};
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {armor::quota_window::per_minute(5)}}, clock};
  armor::load_shedder<> shedder{{.resources = {{.name = "memory"}}}};
  armor::drain<> drain;
  armor::bulkhead<> pool{{.max_concurrent = 1}};
  armor::readiness r;
  r.add("db", breaker).add("api-quota", quota).add("shedder", shedder).add("drain", drain).add("pool", pool);
  CHECK(r.ready_json() ==
        R"({"status":"ready","checks":[)"
        R"({"name":"db","kind":"circuit_breaker","required":true,"ok":true,"detail":"state closed"},)"
        R"({"name":"api-quota","kind":"quota_tracker","required":true,"ok":true,"detail":"minute 0/5"},)"
        R"({"name":"shedder","kind":"load_shedder","required":true,"ok":true,"detail":"level normal, mode automatic"},)"
        R"({"name":"drain","kind":"drain","required":true,"ok":true,"detail":"accepting, 0 in flight"},)"
        R"({"name":"pool","kind":"bulkhead","required":true,"ok":true,"detail":"in use 0/1, queued 0/0"}]})");
  breaker.isolate();
  (void)quota.charge(5);
  shedder.set_mode(armor::load_mode::maintenance);
  drain.start();
  auto held = pool.try_acquire();
  REQUIRE(held);
  const armor::readiness_report rep = r.ready();
  CHECK_FALSE(rep.ok);
  REQUIRE(rep.checks.size() == 5);
  for (const auto& c : rep.checks) CHECK_FALSE(c.ok);
  CHECK(rep.checks[0].detail == "state isolated");
  CHECK(rep.checks[1].detail == "minute 5/5 used up");
  CHECK(rep.checks[2].detail == "level normal, mode maintenance: refusing normal calls");
  CHECK(rep.checks[3].detail == "draining, 0 in flight");
  CHECK(rep.checks[4].detail == "in use 1/1, queued 0/0: full");
}

TEST_CASE("readiness: an optional policy is reported but never decides") {
  armor::drain<> drain;
  armor::readiness r;
  r.add("drain", drain, armor::readiness_role::optional);
  drain.start();
  CHECK(r.ready_json() ==
        R"({"status":"ready","checks":[{"name":"drain","kind":"drain","required":false,"ok":false,"detail":"draining, 0 in flight"}]})");
  CHECK(r.remove("drain"));
  CHECK_FALSE(r.remove("drain"));
  CHECK(r.ready().checks.empty());
}

TEST_CASE("readiness: checks of the service's own, live checks, and JSON escaping") {
  armor::readiness r;
  bool loop_alive = true;
  r.add("cache \"warm\"", [](std::string& why) {
    why = "line\none\ttab \\ \x01 é";
    return true;
  });
  r.add_live("event-loop", [&loop_alive](std::string& why) {
    why = loop_alive ? "ticking" : "stuck";
    return loop_alive;
  });
  CHECK(r.ready_json() ==
        "{\"status\":\"ready\",\"checks\":[{\"name\":\"cache \\\"warm\\\"\",\"kind\":\"check\",\"required\":true,"
        "\"ok\":true,\"detail\":\"line\\none\\ttab \\\\ \\u0001 \xc3\xa9\"}]}");
  CHECK(r.live_json() ==
        R"({"status":"live","checks":[{"name":"event-loop","kind":"check","required":true,"ok":true,"detail":"ticking"}]})");
  loop_alive = false;
  CHECK(r.live_json() ==
        R"({"status":"not_live","checks":[{"name":"event-loop","kind":"check","required":true,"ok":false,"detail":"stuck"}]})");
  CHECK(r.ready().ok);  // liveness checks do not decide readiness
}

TEST_CASE("readiness: a name registered twice, or empty, is refused") {
  armor::drain<> drain;
  armor::readiness r;
  r.add("drain", drain);
  CHECK_THROWS_AS(r.add("drain", drain), armor::error);
  CHECK_THROWS_AS(r.add("", drain), armor::error);
  try {
    r.add("drain", drain);
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string{e.what()}.find("\"drain\"") != std::string::npos);
  }
}
