// armor::host_set as a pipeline layer, on a manual clock: the operation
// learns its host through the context; a retry (a backoff layer outside)
// picks again away from the host that just failed; the verdict becomes the
// host's outcome (HTTP 502/503/504 as gateway failures); a per-host breaker
// (keyed by key_source::host()) inside it composes, its refusals sending the
// call to another host at once; no host listed fails with errc::no_host;
// peak EWMA sees the attempt's latency.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/host_set.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;

namespace {

armor::host_set_options quiet_hosts(armor::host_balancer b = armor::host_balancer::round_robin) {
  armor::host_set_options o;
  o.balancer = b;
  o.min_health_percent = 0;
  o.outlier.consecutive_failures = 0;
  o.outlier.consecutive_gateway_failures = 0;
  o.outlier.enforcing_success_rate = 0;
  o.outlier.max_ejection_percent = 100;
  return o;
}

struct ejections {
  std::vector<std::string> hosts;
  std::vector<armor::ejection_reason> reasons;
  void operator()(const armor::host_set_event& e) noexcept {
    if (e.kind != armor::host_set_event_kind::ejected) return;
    hosts.emplace_back(e.host);
    reasons.push_back(e.reason);
  }
};

}  // namespace

TEST_CASE("host_set layer: the operation learns its host from the context", "[host_set_pipeline]") {
  armor::manual_clock clock;
  armor::host_set hosts{quiet_hosts(), clock};
  hosts.update({{"a"}, {"b"}, {"c"}});
  auto p = armor::pipeline{clock, std::ref(hosts)};
  std::map<std::string, int> seen;
  for (int i = 0; i < 6; ++i) {
    const auto r = p.try_execute([&](const armor::context& ctx) {
      CHECK(ctx.host() == ctx.key(armor::key_source::host()));
      seen[std::string(ctx.host())] += 1;
      return 1;
    });
    CHECK(r.has_value());
  }
  CHECK(seen == std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}});
  const armor::host_set_stats s = hosts.stats();
  CHECK(s.picks == 6);
  CHECK(s.pending == 0);
  // Outside a host set layer there is no host.
  const armor::context ctx(armor::timestamp{}, {.key = "k"});
  CHECK(ctx.host().empty());
  CHECK(ctx.key(armor::key_source::host()).empty());
  CHECK(armor::key_source::host().valid());
  CHECK(armor::key_source::host().is_host());
  CHECK_FALSE(armor::key_source::slot(armor::key_slots).is_host());
}

TEST_CASE("host_set layer: a retry goes to another host than the one that failed", "[host_set_pipeline]") {
  armor::manual_clock clock;
  for (const armor::host_balancer b :
       {armor::host_balancer::round_robin, armor::host_balancer::least_pending, armor::host_balancer::peak_ewma}) {
    armor::host_set hosts{quiet_hosts(b), clock, armor::seeded_rng{7}};
    hosts.update({{"a"}, {"bad"}, {"c"}});
    auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2, .initial = 1ms, .jitter = armor::jitter_mode::none}},
                             std::ref(hosts)};
    int retries = 0;
    for (int i = 0; i < 60; ++i) {
      std::vector<std::string> tried;
      const auto r = p.try_execute([&](const armor::context& ctx) {
        tried.emplace_back(ctx.host());
        if (ctx.host() == "bad") throw std::runtime_error("502");
        return 1;
      });
      CHECK(r.has_value());  // "bad" is never tried twice in one call
      if (tried.size() == 2) {
        ++retries;
        CHECK(tried[0] == "bad");
        CHECK(tried[1] != "bad");
      }
    }
    CHECK(retries > 0);
    CHECK(hosts.stats().pending == 0);
  }
}

TEST_CASE("host_set layer: the verdict becomes the host's outcome", "[host_set_pipeline]") {
  using armor::host_outcome;
  using armor::verdict;
  const auto status = [](int s) { return armor::http::make_status_code(s); };
  CHECK(armor::host_outcome_of(verdict::success()) == host_outcome::success);
  CHECK(armor::host_outcome_of(verdict::failure()) == host_outcome::failure);
  CHECK(armor::host_outcome_of(verdict::failure(status(500))) == host_outcome::failure);
  CHECK(armor::host_outcome_of(verdict::failure(status(502))) == host_outcome::gateway_failure);
  CHECK(armor::host_outcome_of(verdict::failure(status(503))) == host_outcome::gateway_failure);
  CHECK(armor::host_outcome_of(verdict::permanent_failure(status(504))) == host_outcome::gateway_failure);
  // 503 in armor's own category is not an HTTP status.
  CHECK(armor::host_outcome_of(verdict::failure(std::error_code{503, armor::error_category()})) ==
        host_outcome::failure);
  CHECK(armor::host_outcome_of(verdict{armor::outcome::timeout, true, {}, armor::errc::deadline_exceeded}) ==
        host_outcome::failure);
  CHECK(armor::host_outcome_of(verdict::throttled()) == host_outcome::cancelled);
  CHECK(armor::host_outcome_of(verdict{armor::outcome::rejected, true, {}, armor::errc::circuit_open}) ==
        host_outcome::cancelled);
  CHECK(armor::host_outcome_of(verdict{armor::outcome::cancelled, false, {}, armor::errc::cancelled}) ==
        host_outcome::cancelled);

  // Through a pipeline whose classifier gives HTTP status codes: two 503s
  // in a row eject the host by the gateway rule.
  armor::manual_clock clock;
  ejections heard;
  armor::host_set_options o = quiet_hosts();
  o.outlier.consecutive_gateway_failures = 2;
  o.outlier.enforcing_consecutive_gateway_failures = 100;
  o.outlier.max_ejection_percent = 50;
  armor::host_set hosts{o, clock, armor::thread_rng{}, std::ref(heard)};
  hosts.update({{"good"}, {"busy"}});
  auto p = armor::pipeline{clock, armor::classify{[&](int s) {
                             return s >= 500 ? verdict::failure(status(s)) : verdict::success();
                           }},
                           std::ref(hosts)};
  std::map<std::string, int> seen;
  for (int i = 0; i < 10; ++i) {
    (void)p.try_execute([&](const armor::context& ctx) {
      seen[std::string(ctx.host())] += 1;
      return ctx.host() == "busy" ? 503 : 200;
    });
  }
  REQUIRE(heard.hosts.size() == 1);
  CHECK(heard.hosts[0] == "busy");
  CHECK(heard.reasons[0] == armor::ejection_reason::consecutive_gateway_failures);
  CHECK(seen["busy"] == 2);
  CHECK(seen["good"] == 8);
}

TEST_CASE("host_set layer: a breaker per host, keyed by key_source::host()", "[host_set_pipeline]") {
  armor::manual_clock clock;
  armor::host_set hosts{quiet_hosts(), clock};
  hosts.update({{"a"}, {"bad"}, {"c"}});
  armor::keyed<armor::circuit_breaker<armor::manual_clock>> per_host{
      {.failure_threshold = 2, .open_for = 30s}, {.key = armor::key_source::host()}, clock};
  CHECK(per_host.key() == armor::key_source::host());
  // The breakers inside the host set: a refusal sends the call to another host.
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2, .initial = 1ms, .jitter = armor::jitter_mode::none}},
                           std::ref(hosts), std::ref(per_host)};
  std::map<std::string, int> ran;
  int two_attempts = 0;
  for (int i = 0; i < 30; ++i) {
    const auto r = p.try_execute([&](const armor::context& ctx) {
      ran[std::string(ctx.host())] += 1;
      if (ctx.host() == "bad") throw std::runtime_error("reset");
      return ctx.attempt();
    });
    REQUIRE(r.has_value());
    if (*r == 2) ++two_attempts;
  }
  CHECK(ran["bad"] == 2);  // then its breaker opened
  CHECK(two_attempts == 2);  // only the calls that met "bad" itself were retried
  CHECK(ran["a"] + ran["c"] == 30);
  CHECK(per_host.get("bad")->state() == armor::breaker_state::open);
  CHECK(per_host.get("a")->state() == armor::breaker_state::closed);
  // A refused pick is not a verdict on the host: the picks the breaker
  // refused were cancelled, nothing is left in flight.
  CHECK(hosts.stats().pending == 0);
  CHECK(hosts.stats().picks > 32);
}

TEST_CASE("host_set layer: no host listed fails the call with no_host", "[host_set_pipeline]") {
  armor::manual_clock clock;
  armor::host_set hosts{quiet_hosts(), clock};
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .initial = 1ms}}, std::ref(hosts)};
  int calls = 0;
  const auto r = p.try_execute([&] { return ++calls; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::no_host);
  CHECK(calls == 0);
  CHECK(hosts.stats().no_host == 1);  // not retried: no wait helps
  hosts.update({{"a"}});
  CHECK(p.try_execute([&] { return ++calls; }).has_value());
}

TEST_CASE("host_set layer: peak EWMA sees each attempt's latency", "[host_set_pipeline]") {
  armor::manual_clock clock;
  armor::host_set hosts{quiet_hosts(armor::host_balancer::peak_ewma), clock, armor::seeded_rng{1}};
  CHECK(hosts.wants_completion_time());
  hosts.update({{"only"}});
  auto p = armor::pipeline{clock, std::ref(hosts)};
  CHECK(p.try_execute([&] {
           clock.advance(50ms);
           return 1;
         }).has_value());
  const std::vector<armor::host_status> st = hosts.hosts();
  REQUIRE(st.size() == 1);
  CHECK(st[0].latency == 50ms);  // above the 30 ms default: the peak replaces it
  armor::host_set rr{quiet_hosts(armor::host_balancer::round_robin), clock};
  CHECK_FALSE(rr.wants_completion_time());
}
