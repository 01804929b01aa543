// The one policy shape, checked for every public enumeration, stats type,
// event and decision of the core (see shape_checks.hpp; the Redis and
// SQLite ones are checked in tests/redis and tests/sqlite).
// tests/shape/check_shape.py fails when one is missing from these lists.
#include <armor/armor.hpp>
#include <armor/histogram.hpp>
#include <armor/resource_sampler.hpp>
#include <armor/storage/backend_url.hpp>

#include "fmt/promtool.hpp"
#include "fmt/shape_checks.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

TEST_CASE("shape: every public enumeration has a name and formats with fmt", "[shape]") {
  armor_test::check_enum<armor::errc>("errc");
  armor_test::check_enum<armor::outcome>("outcome");
  armor_test::check_enum<armor::health>("health");
  armor_test::check_enum<armor::admission_kind>("admission_kind");
  armor_test::check_enum<armor::metric_type>("metric_type");
  armor_test::check_enum<armor::breaker_window>("breaker_window");
  armor_test::check_enum<armor::breaker_state>("breaker_state");
  armor_test::check_enum<armor::breaker_reason>("breaker_reason");
  armor_test::check_enum<armor::bulkhead_event_kind>("bulkhead_event_kind");
  armor_test::check_enum<armor::adaptive_limit_event_kind>("adaptive_limit_event_kind");
  armor_test::check_enum<armor::priority>("priority");
  armor_test::check_enum<armor::backoff_schedule>("backoff_schedule");
  armor_test::check_enum<armor::jitter_mode>("jitter_mode");
  armor_test::check_enum<armor::backoff_stop>("backoff_stop");
  armor_test::check_enum<armor::backoff_event_kind>("backoff_event_kind");
  armor_test::check_enum<armor::quota_window_kind>("quota_window_kind");
  armor_test::check_enum<armor::quota_tracker_status>("quota_tracker_status");
  armor_test::check_enum<armor::quota_alert_basis>("quota_alert_basis");
  armor_test::check_enum<armor::quota_alert_kind>("quota_alert_kind");
  armor_test::check_enum<armor::quota_storage_status>("quota_storage_status");
  armor_test::check_enum<armor::token_bucket_status>("token_bucket_status");
  armor_test::check_enum<armor::window_status>("window_status");
  armor_test::check_enum<armor::sliding_window_algorithm>("sliding_window_algorithm");
  armor_test::check_enum<armor::http::status_rule>("http::status_rule");
  armor_test::check_enum<armor::adaptive_throttle_event_kind>("adaptive_throttle_event_kind");
  armor_test::check_enum<armor::resource_source>("resource_source");
  armor_test::check_enum<armor::load_level>("load_level");
  armor_test::check_enum<armor::load_mode>("load_mode");
  armor_test::check_enum<armor::load_refusal>("load_refusal");
  armor_test::check_enum<armor::load_shedder_event_kind>("load_shedder_event_kind");
  armor_test::check_enum<armor::drain_event_kind>("drain_event_kind");
  armor_test::check_enum<armor::shadow_outcome>("shadow_outcome");
  armor_test::check_enum<armor::backend_scheme>("backend_scheme");
  armor_test::check_enum<armor::host_balancer>("host_balancer");
  armor_test::check_enum<armor::host_outcome>("host_outcome");
  armor_test::check_enum<armor::ejection_reason>("ejection_reason");
  armor_test::check_enum<armor::host_set_event_kind>("host_set_event_kind");
  armor_test::check_enum<armor::probe_result>("probe_result");
  armor_test::check_enum<armor::readiness_role>("readiness_role");
  armor_test::check_enum<armor::cache_state>("cache_state");
  armor_test::check_enum<armor::cache_origin>("cache_origin");
  armor_test::check_enum<armor::latency_scope>("latency_scope");
  armor_test::check_enum<armor::fault_kind>("fault_kind");
}

namespace {

armor::circuit_breaker_stats breaker_sample() {
  armor::circuit_breaker_stats s{};
  s.counting = true;
  return s;
}
armor::backoff_stats backoff_sample() {
  armor::backoff_stats s{};
  s.counting = true;
  s.has_budget = true;
  return s;
}
armor::adaptive_limit_stats adaptive_sample() {
  armor::adaptive_limit_stats s{};
  s.counting = true;
  s.queueing = true;  // the queue's fields are exported too
  return s;
}
armor::load_shedder_stats shedder_sample() {
  armor::load_shedder_stats s{};
  s.counting = true;
  return s;
}
armor::token_bucket_stats bucket_sample() {
  armor::token_bucket_stats s{};
  s.counting = true;
  s.rate = {10, std::chrono::seconds{1}};
  return s;
}

armor::fixed_window_stats fixed_sample() {
  armor::fixed_window_stats s{};
  s.counting = true;
  return s;
}
armor::shadow_stats shadow_sample() {
  armor::shadow_stats s{};
  s.counting = true;
  return s;
}
armor::keyed_stats keyed_sample() {
  armor::keyed_stats s{};
  s.keys = 3;
  s.max_keys = 8;
  s.rejected = 7;
  s.created = 5;
  s.expired = 1;
  s.evicted_idle = 1;
  return s;
}

armor::sliding_window_stats sliding_sample() {
  armor::sliding_window_stats s{};
  s.counting = true;
  return s;
}

armor::latency_recorder_stats latency_sample() {
  armor::histogram h{{.bounds = {10ms, 100ms}}};
  h.record(5ms);
  h.record(50ms);
  h.record(500ms);
  armor::latency_recorder_stats s{};
  s.duration = h.snapshot();
  return s;
}

/// Every core stats type in one registry, as a service would expose them.
struct every_stats {
  armor_test::stats_stub<armor::circuit_breaker_stats> breaker{breaker_sample()};
  armor_test::stats_stub<armor::backoff_stats> backoff{backoff_sample()};
  armor_test::stats_stub<armor::bulkhead_stats> bulkhead{};
  armor_test::stats_stub<armor::adaptive_limit_stats> adaptive{adaptive_sample()};
  armor_test::stats_stub<armor::token_bucket_stats> bucket{bucket_sample()};
  armor_test::stats_stub<armor::quota_tracker_stats> quota{};
  armor_test::stats_stub<armor::quota_usage> usage{};
  armor_test::stats_stub<armor::fixed_window_stats> fixed{fixed_sample()};
  armor_test::stats_stub<armor::sliding_window_stats> sliding{sliding_sample()};
  armor_test::stats_stub<armor::adaptive_throttle_stats> throttle{};
  armor_test::stats_stub<armor::coalescer_stats> coalescer{};
  armor_test::stats_stub<armor::cache_stats> cache{};
  armor_test::stats_stub<armor::load_shedder_stats> shedder{shedder_sample()};
  armor_test::stats_stub<armor::drain_stats> drain{};
  armor_test::stats_stub<armor::shadow_stats> shadow{shadow_sample()};
  armor_test::stats_stub<armor::host_set_stats> host_set{};
  armor_test::stats_stub<armor::health_check_stats> health_check{};
  armor_test::stats_stub<armor::latency_recorder_stats> latency{latency_sample()};
  armor_test::stats_stub<armor::keyed_stats> keyed{keyed_sample()};
  armor_test::stats_stub<armor::fault_injector_stats> faults{};

  [[nodiscard]] std::string text() const {
    armor::prometheus::registry metrics;
    metrics.add(breaker, {{"policy", "sample"}})
        .add(backoff, {{"policy", "sample"}})
        .add(bulkhead, {{"policy", "sample"}})
        .add(adaptive, {{"policy", "sample"}})
        .add(bucket, {{"policy", "sample"}})
        .add(quota, {{"policy", "sample"}})
        .add(usage, {{"policy", "sample"}})
        .add(fixed, {{"policy", "sample"}})
        .add(sliding, {{"policy", "sample"}})
        .add(throttle, {{"policy", "sample"}})
        .add(coalescer, {{"policy", "sample"}})
        .add(cache, {{"policy", "sample"}})
        .add(shedder, {{"policy", "sample"}})
        .add(drain, {{"policy", "sample"}})
        .add(shadow, {{"policy", "sample"}})
        .add(host_set, {{"policy", "sample"}})
        .add(health_check, {{"policy", "sample"}})
        .add(latency, {{"policy", "sample"}})
        .add(keyed, {{"policy", "sample"}})
        .add(faults, {{"policy", "sample"}});
    return metrics.text();
  }
};

}  // namespace

TEST_CASE("shape: every stats type prints its fields and exports its families", "[shape]") {
  armor_test::check_stats("circuit_breaker_stats", breaker_sample());
  armor_test::check_stats("backoff_stats", backoff_sample());
  armor_test::check_stats<armor::bulkhead_stats>("bulkhead_stats");
  armor_test::check_stats("adaptive_limit_stats", adaptive_sample());
  armor_test::check_stats("token_bucket_stats", bucket_sample());
  armor_test::check_stats<armor::quota_tracker_stats>("quota_tracker_stats");
  armor_test::check_stats<armor::quota_usage>("quota_usage");
  armor_test::check_stats("fixed_window_stats", fixed_sample());
  armor_test::check_stats("sliding_window_stats", sliding_sample());
  armor_test::check_stats<armor::adaptive_throttle_stats>("adaptive_throttle_stats");
  armor_test::check_stats<armor::coalescer_stats>("coalescer_stats");
  armor_test::check_stats<armor::cache_stats>("cache_stats");
  armor_test::check_stats("load_shedder_stats", shedder_sample());
  armor_test::check_stats<armor::drain_stats>("drain_stats");
  armor_test::check_stats("shadow_stats", shadow_sample());
  armor_test::check_stats<armor::host_set_stats>("host_set_stats");
  armor_test::check_stats<armor::health_check_stats>("health_check_stats");
  armor_test::check_stats("latency_recorder_stats", latency_sample());
  armor_test::check_stats("keyed_stats", keyed_sample());
  armor_test::check_stats<armor::fault_injector_stats>("fault_injector_stats");
}

// Hidden from the default run: CTest runs it as armor_fmt_promtool.
TEST_CASE("shape: promtool accepts every stats type's exposition", "[.promtool]") {
  armor_test::promtool_check(every_stats{}.text());
}

// Hidden from the default run: tests/shape/check_grafana.py (CTest
// armor_grafana_check) runs it to learn every family armor exports, and
// checks that each metric the Grafana dashboard queries is one of them.
TEST_CASE("shape: the exposition of every stats type, written to $ARMOR_EXPOSITION_OUT", "[.exposition]") {
  const char* path = std::getenv("ARMOR_EXPOSITION_OUT");
  REQUIRE(path != nullptr);
  std::ofstream out(path);
  out << every_stats{}.text();
  REQUIRE(out.good());
}

namespace {

/// An event (anything with fields()): fmt prints each field it holds as
/// name=value.
template <class E>
void check_event(std::string_view type, const E& sample = E{}) {
  INFO("event " << type);
  static_assert(armor::described_stats<E>);
  const std::string printed = fmt::format("{}", sample);
  CHECK(!printed.empty());
  armor::detail::for_each_field<E>([&](const auto& f) {
    if (!armor::detail::present(f, sample)) return;
    CHECK(printed.find(std::string(f.name) + "=") != std::string::npos);
  });
}

/// A decision: fmt prints "granted", or its code's name (and when to retry).
template <class D>
void check_decision(std::string_view type, const D& d) {
  INFO("decision " << type);
  const std::string printed = fmt::format("{}", d);
  INFO(printed);
  if (static_cast<bool>(d)) {
    CHECK(printed == "granted");
  } else {
    CHECK(printed != "granted");
    CHECK(!printed.empty());
    CHECK((printed.find(" (retry after ") != std::string::npos) == (d.retry_after() != std::chrono::nanoseconds::max()));
  }
}

}  // namespace

TEST_CASE("shape: every event and every decision formats with fmt", "[shape]") {
  check_event<armor::circuit_breaker_event>("circuit_breaker_event");
  check_event<armor::backoff_event>("backoff_event");
  check_event<armor::bulkhead_event>("bulkhead_event");
  check_event<armor::adaptive_limit_event>("adaptive_limit_event");
  check_event<armor::adaptive_throttle_event>("adaptive_throttle_event");
  check_event<armor::token_bucket_event>("token_bucket_event");
  check_event<armor::window_event>("window_event");
  check_event<armor::quota_tracker_event>("quota_tracker_event");
  check_event<armor::load_shedder_event>("load_shedder_event");
  check_event<armor::drain_event>("drain_event");
  check_event<armor::shadow_event>("shadow_event");
  check_event<armor::host_set_event>("host_set_event");
  check_event<armor::fault_injector_event>("fault_injector_event");

  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {1, 1s}, .burst = 1}, clock};
  const armor::token_bucket_decision<> took = bucket.try_acquire();
  check_decision("token_bucket_decision", took);
  check_decision("token_bucket_decision", bucket.try_acquire());
  armor::fixed_window<armor::manual_clock> window{{.limit = 1, .window = 1min}, clock};
  check_decision("window_decision", window.try_acquire());
  check_decision("window_decision", window.try_acquire());
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {armor::quota_window::per_day(1)}}, clock};
  check_decision("quota_tracker_decision", quota.try_consume());
  check_decision("quota_tracker_decision", quota.try_consume());
  armor::shadow<armor::token_bucket<armor::manual_clock>> trial{
      armor::token_bucket<armor::manual_clock>{{.rate = {1, 1s}, .burst = 1}, clock}};
  check_decision("shadow_decision", trial.try_acquire());
  check_decision("shadow_decision", trial.try_acquire());  // would refuse, lets the call through: granted
  armor::bulkhead<> pool{{.max_concurrent = 1}};
  auto inside = pool.try_acquire();  // decision<bulkhead_permit>
  check_decision("decision<bulkhead_permit>", inside);
  check_decision("decision<bulkhead_permit>", pool.try_acquire());
}
