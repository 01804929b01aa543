// Adding a listener adds no allocation per call: the same loops, with and
// without listeners, allocate nothing (backoff retries and give-ups, quota
// alerts and refusals, breaker transitions), and reading stats allocates
// nothing either.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <chrono>
#include <functional>
#include <string_view>
#include <system_error>

using namespace std::chrono_literals;

namespace {

struct retry_listener {
  long retries = 0;
  long gave_up = 0;
  void operator()(const armor::backoff_event& e) noexcept {
    ++(e.kind == armor::backoff_event_kind::retry ? retries : gave_up);
  }
};

struct alert_listener {
  long alerts = 0;
  void operator()(const armor::quota_tracker_event&) noexcept { ++alerts; }
};

struct transition_listener {
  long transitions = 0;
  void operator()(const armor::circuit_breaker_event&) noexcept { ++transitions; }
};

// Retries, exhaustion and a budget refusal: every listener event.
template <class Pipeline>
long retry_rounds(const Pipeline& p) {
  long sum = 0;
  int n = 0;
  for (int i = 0; i < 50; ++i) {
    sum += p.execute([&] { return ++n % 3 ? std::make_error_code(std::errc::timed_out) : std::error_code{}; }) ? 0 : 1;
  }
  return sum;
}

// Fills a minute window (alerts at 80, 90, 100 %), is refused, moves on.
template <class Tracker>
long quota_rounds(Tracker& q, const armor::manual_clock& clock) {
  long granted = 0;
  for (int minute = 0; minute < 5; ++minute) {
    for (int i = 0; i < 12; ++i) granted += q.try_consume(1) ? 1 : 0;
    clock.advance(1min);
  }
  return granted;
}

template <class Breaker>
void breaker_rounds(Breaker& b, const armor::manual_clock& clock) {
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 3; ++i) {
      auto a = b.try_acquire();
      b.record(std::move(a).permit(), armor::verdict::failure());
    }
    (void)b.try_acquire();  // refused while open
    clock.advance(1s);
    auto probe = b.try_acquire();
    b.record(std::move(probe).permit(), armor::verdict::success());
  }
}

}  // namespace

TEST_CASE("alloc: a backoff listener adds no allocation per call") {
  armor::manual_clock clock;
  retry_listener heard;
  const armor::backoff_options o{.max_attempts = 2, .initial = 1ms, .budget = armor::retry_budget{}};
  auto quiet = armor::pipeline{clock, armor::backoff{o}};
  auto loud = armor::pipeline{clock, armor::backoff{o, armor::thread_rng{}, std::ref(heard)}};
  (void)retry_rounds(quiet);
  (void)retry_rounds(loud);

  armor_test::allocation_scope without;
  const long a = retry_rounds(quiet);
  CHECK(without.allocations() == 0);
  const long heard_before = heard.retries + heard.gave_up;
  armor_test::allocation_scope with;
  const long b = retry_rounds(loud);
  (void)loud.layer<0>().stats();
  CHECK(with.allocations() == 0);
  CHECK(a == b);
  CHECK(heard.retries + heard.gave_up > heard_before);  // the listener did hear the events
}

TEST_CASE("alloc: a quota listener adds no allocation per call, nor do its stats") {
  armor::manual_clock clock;
  alert_listener heard;
  armor::quota_tracker quiet{{.windows = {armor::quota_window::per_minute(10)}}, clock};
  armor::quota_tracker loud{{.windows = {armor::quota_window::per_minute(10)}}, clock, armor::memory_quota_storage{},
                            std::ref(heard)};
  (void)quota_rounds(quiet, clock);
  (void)quota_rounds(loud, clock);

  armor_test::allocation_scope without;
  const long a = quota_rounds(quiet, clock);
  CHECK(without.allocations() == 0);
  const long alerts_before = heard.alerts;
  armor_test::allocation_scope with;
  const long b = quota_rounds(loud, clock);
  (void)loud.stats();
  CHECK(with.allocations() == 0);
  CHECK(a == b);
  CHECK(heard.alerts - alerts_before == 15);  // 3 thresholds a minute, 5 minutes
  CHECK(loud.stats().exhausted == 20);        // 2 refusals a minute, 10 minutes in all
}

TEST_CASE("alloc: a breaker listener adds no allocation per call") {
  armor::manual_clock clock;
  transition_listener heard;
  const armor::circuit_breaker_options o{.failure_threshold = 3, .open_for = 1s};
  armor::circuit_breaker quiet{o, clock};
  armor::circuit_breaker loud{o, clock, std::ref(heard)};
  breaker_rounds(quiet, clock);
  breaker_rounds(loud, clock);

  armor_test::allocation_scope scope;
  breaker_rounds(quiet, clock);
  breaker_rounds(loud, clock);
  (void)loud.stats();
  CHECK(scope.allocations() == 0);
  CHECK(heard.transitions == 30);  // closed -> open -> half_open -> closed, 5 times, twice
}

TEST_CASE("alloc: a keyed breaker's listener adds no allocation per call once its key exists") {
  armor::manual_clock clock;
  transition_listener heard;
  armor::keyed<armor::circuit_breaker<armor::manual_clock, std::reference_wrapper<transition_listener>>> per_host{
      {.failure_threshold = 3, .open_for = 1s}, {}, clock, std::ref(heard)};
  auto host = per_host.get("s3.eu-west-1");
  breaker_rounds(*host, clock);

  armor_test::allocation_scope scope;
  breaker_rounds(*host, clock);
  CHECK(scope.allocations() == 0);
  CHECK(heard.transitions == 30);
}

TEST_CASE("alloc: visiting a keyed map allocates nothing") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> limits{{.rate = {1, 1s}, .burst = 3}, {}, clock};
  for (int i = 0; i < 100; ++i) (void)limits.get("key-" + std::to_string(i))->try_acquire();
  armor_test::allocation_scope scope;
  std::int64_t total = 0;
  limits.for_each([&](std::string_view, const auto& b) { total += b.available(armor::to_timestamp(clock.now())); });
  CHECK(scope.allocations() == 0);
  CHECK(total == 200);
}
