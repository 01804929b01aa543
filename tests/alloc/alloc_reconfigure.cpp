// reconfigure() allocates nothing, and neither do the decisions that read
// the configuration it publishes: 10 000 reconfigurations of the circuit
// breaker, the bulkhead, both window limiters and the other policies with
// reconfigure(), each followed by a decision, make no heap allocation (so
// none can leak: memory stays flat).
#include <armor/adaptive_limit.hpp>
#include <armor/adaptive_throttle.hpp>
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/fixed_window.hpp>
#include <armor/keyed.hpp>
#include <armor/load_shedder.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/sliding_window.hpp>
#include <armor/storage/any.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <chrono>
#include <cstdint>
#include <utility>

using namespace std::chrono_literals;

TEST_CASE("reconfigure and the decisions after it allocate nothing", "[alloc][reconfigure]") {
  const armor::circuit_breaker_options breaker_a{.failure_threshold = 3, .failure_rate = 0.5, .window_size = 20};
  const armor::circuit_breaker_options breaker_b{
      .failure_threshold = 7, .failure_rate = 0.25, .window_size = 20, .minimum_calls = 5, .open_for = 5s};
  armor::circuit_breaker<armor::manual_clock> cb{breaker_a, armor::manual_clock{}};
  const armor::bulkhead_options bulkhead_a{.max_concurrent = 1};
  const armor::bulkhead_options bulkhead_b{.max_concurrent = 3, .max_queue = 2, .max_wait = 1s};
  armor::bulkhead bh{bulkhead_a};
  armor::fixed_window<armor::manual_clock> fw{{.limit = 5, .window = 1s}, armor::manual_clock{}};
  armor::sliding_window<armor::manual_clock> sw{{.limit = 5, .window = 1s, .segments = 4}, armor::manual_clock{}};

  const armor::backoff_options backoff_a{.max_attempts = 3, .budget = armor::retry_budget{.max_tokens = 10}};
  const armor::backoff_options backoff_b{.max_attempts = 5,
                                         .schedule = armor::backoff_schedule::decorrelated,
                                         .initial = 10ms,
                                         .budget = armor::retry_budget{.max_tokens = 4, .token_ratio = 1.0}};
  armor::backoff<armor::seeded_rng> bo{backoff_a, armor::seeded_rng{1}};

  const armor::quota_tracker_options quota_a{
      .windows = {armor::quota_window::per_minute(5), armor::quota_window::per_hour(50)}};
  const armor::quota_tracker_options quota_b{
      .windows = {armor::quota_window::per_minute(9), armor::quota_window::per_hour(90)}};
  armor::manual_clock quota_clock;
  armor::quota_tracker<armor::manual_clock> qt{quota_a, quota_clock};

  const armor::adaptive_limit_options<> adaptive_a{
      .initial_limit = 10, .max_limit = 10, .window = 1ms, .min_samples = 1};
  const armor::adaptive_limit_options<> adaptive_b{
      .initial_limit = 40, .min_limit = 40, .max_limit = 40, .window = 2ms, .min_samples = 1};
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> al{adaptive_a, armor::manual_clock{}};

  const armor::adaptive_throttle_options throttle_a{.k = 1.0, .window = 1s, .buckets = 4};
  const armor::adaptive_throttle_options throttle_b{
      .k = 3.0, .window = 1s, .buckets = 4, .min_requests = 50, .max_rejection_probability = 0.5};
  armor::adaptive_throttle<armor::manual_clock, armor::seeded_rng> th{throttle_a, armor::manual_clock{},
                                                                        armor::seeded_rng{3}};

  long granted = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 10'000; ++i) {
    const bool b = i % 2 == 0;
    const armor::timestamp t{std::chrono::milliseconds{i}};
    cb.reconfigure(b ? breaker_b : breaker_a);
    if (auto d = cb.try_acquire(t)) {
      ++granted;
      cb.record(std::move(d).permit(), i % 3 == 0 ? armor::verdict::failure() : armor::verdict::success(), t);
    }
    bh.reconfigure(b ? bulkhead_b : bulkhead_a);
    if (bh.try_acquire()) ++granted;
    const std::int64_t limit = b ? 9 : 5;
    fw.reconfigure({.limit = limit, .window = 1s});
    sw.reconfigure({.limit = limit, .window = 1s, .segments = 4});
    if (fw.try_acquire(1, t)) ++granted;
    if (sw.try_acquire(1, t)) ++granted;
    bo.reconfigure(b ? backoff_b : backoff_a);
    armor::context ctx{t};
    armor::backoff<armor::seeded_rng>::loop_state ls{};
    al.reconfigure(b ? adaptive_b : adaptive_a);
    if (auto d = al.try_acquire(t)) {
      ++granted;
      al.record(std::move(d).permit(), armor::verdict::success(), t + std::chrono::microseconds{300});
    }
    th.reconfigure(b ? throttle_b : throttle_a);
    if (auto d = th.try_acquire(t)) {
      ++granted;
      th.record(std::move(d).permit(), i % 4 == 0 ? armor::verdict::success() : armor::verdict::failure());
    }
    qt.reconfigure(b ? quota_b : quota_a);
    quota_clock.advance(std::chrono::seconds{7});
    if (qt.try_consume()) ++granted;
    if (bo.next(ctx, i % 3 == 0 ? armor::verdict::success() : armor::verdict::failure(), ls).again) ++granted;
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted > 0);
}

// load_shedder::reconfigure validates by building names (it may allocate,
// and takes the writers' mutex, as update() does); the decisions after it
// allocate nothing.
TEST_CASE("the load shedder's decisions after reconfigure allocate nothing", "[alloc][reconfigure]") {
  // At 0.85, a: warning (its exits above 0.85 let it leave b's shedding); b: shedding.
  const armor::load_shedder_options a{
      .resources = {{.name = "memory",
                     .ladder = {.warning = {0.80, 0.75}, .degraded = {0.90, 0.88}, .shedding = {0.95, 0.93}}}}};
  const armor::load_shedder_options b{
      .resources = {{.name = "memory",
                     .ladder = {.warning = {0.5, 0.5}, .degraded = {0.6, 0.6}, .shedding = {0.7, 0.7}}}},
      .refuses = {.shedding = armor::load_refusal::all},
      .retry_after_hint = std::chrono::seconds{3}};
  armor::load_shedder<> shedder{a};
  shedder.update(0, 0.85);
  std::size_t allocations = 0;
  long granted = 0;
  for (int i = 0; i < 10'000; ++i) {
    shedder.reconfigure(i % 2 == 0 ? b : a);
    armor_test::allocation_scope scope;
    if (shedder.try_acquire(armor::priority::normal)) ++granted;
    if (shedder.try_acquire(armor::priority::critical)) ++granted;
    allocations += scope.allocations();
  }
  CHECK(allocations == 0);
  CHECK(granted == 10'000);  // a (warning): both; b (shedding, refusing all): neither
}

// A tracker on any_quota_storage (memory: inside) reconfigures without
// allocating, and so do its decisions after. A keyed map of them whose
// storage is made per key copies the options in reconfigure() (it
// allocates, as keyed::reconfigure always has); the decisions of the keys
// it holds after it allocate nothing.
TEST_CASE("a tracker on any_quota_storage and a keyed map of them: decisions after reconfigure allocate nothing",
          "[alloc][reconfigure]") {
  using tracker = armor::quota_tracker<armor::manual_clock, armor::any_quota_storage>;
  const armor::quota_tracker_options a{
      .windows = {armor::quota_window::per_minute(5), armor::quota_window::per_hour(50)}, .alerts = {}};
  const armor::quota_tracker_options b{
      .windows = {armor::quota_window::per_minute(9), armor::quota_window::per_hour(90)}, .alerts = {}};
  armor::manual_clock clock;
  tracker one{a, clock, armor::make_quota_storage("memory:")};
  armor::keyed<tracker> per_user{{.quota = a, .storage = armor::make_quota_storage("memory:")}, {.max_keys = 8}, clock};
  auto ann = per_user.get("ann");
  auto bob = per_user.get("bob");
  long granted = 0;
  {
    armor_test::allocation_scope scope;
    for (int i = 0; i < 10'000; ++i) {
      one.reconfigure(i % 2 == 0 ? b : a);
      clock.advance(std::chrono::seconds{7});
      if (one.try_consume()) ++granted;
    }
    CHECK(scope.allocations() == 0);
  }
  std::size_t allocations = 0;
  for (int i = 0; i < 1'000; ++i) {
    per_user.reconfigure(i % 2 == 0 ? b : a);
    clock.advance(std::chrono::seconds{7});
    armor_test::allocation_scope scope;
    if (ann->try_consume()) ++granted;
    if (bob->try_consume(2)) ++granted;
    if (per_user.get("ann")->try_consume()) ++granted;
    allocations += scope.allocations();
  }
  CHECK(allocations == 0);
  CHECK(granted > 1'000);  // the hour's limit (50 or 90) bounds it
  CHECK(ann->usage(0).limit == 5);  // the last (i = 999) was a's
}

// token_bucket::reconfigure validates without building a string (unless it
// refuses) and changes the state word in place: 10 000 of them, each
// followed by a decision, allocate nothing.
TEST_CASE("token_bucket::reconfigure and the decisions after it allocate nothing", "[alloc][reconfigure]") {
  const armor::token_bucket_options a{.rate = {1, std::chrono::milliseconds{1}}, .burst = 5};
  const armor::token_bucket_options b{.rate = {1, std::chrono::milliseconds{3}}, .burst = 9};
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> bucket{a, clock};
  long granted = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 10'000; ++i) {
    bucket.reconfigure(i % 2 == 0 ? b : a);
    clock.advance(std::chrono::milliseconds{1});
    if (bucket.try_acquire()) ++granted;
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted > 1'000);
}
