// armor::shadow: every limiting policy in shadow mode lets every call
// through, and counts as would-refuse exactly what the same policy,
// enforcing, refuses on the same sequence of calls (an enforcing twin runs
// beside it on the same manual clock); the listener hears each; the
// shadowed policy's state stays what enforcing would make it.
#include <armor/adaptive_limit.hpp>
#include <armor/bulkhead.hpp>
#include <armor/fixed_window.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/shadow.hpp>
#include <armor/sliding_window.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

/// Records what a shadow's listener hears.
struct event_log {
  std::vector<armor::shadow_event> events;
  std::vector<std::string> keys;
};
struct recorder {
  event_log* log;
  void operator()(const armor::shadow_event& e) const noexcept {
    try {
      log->events.push_back(e);
      log->keys.emplace_back(e.key);
    } catch (...) {
    }
  }
};

/// A deterministic sequence: the gap before each call and its cost.
struct step {
  nanoseconds gap;
  std::int64_t cost;
};
std::vector<step> sequence(std::size_t n, std::uint64_t seed, nanoseconds max_gap, std::int64_t max_cost) {
  std::vector<step> out;
  std::uint64_t x = seed;
  const auto next = [&x](std::uint64_t bound) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return (x >> 33) % bound;
  };
  for (std::size_t i = 0; i < n; ++i) {
    const auto gap = nanoseconds{static_cast<std::int64_t>(next(static_cast<std::uint64_t>(max_gap.count()) + 1))};
    const auto cost = 1 + static_cast<std::int64_t>(next(static_cast<std::uint64_t>(max_cost)));
    out.push_back({gap, cost});
  }
  return out;
}

/// One run of a sequence through an enforcing pipeline and a shadow
/// pipeline, side by side on one clock.
struct comparison {
  int enforced_refusals = 0;
  int enforced_ran = 0;  // operations the enforcing pipeline ran
  int shadow_ran = 0;    // operations the shadow pipeline ran
  int shadow_failed = 0;
};

template <class Enforcing, class Shadowing>
comparison side_by_side(const armor::manual_clock& clock, const Enforcing& enforcing, const Shadowing& shadowing,
                        const std::vector<step>& steps, armor::errc refusal) {
  comparison c;
  for (const step& s : steps) {
    clock.advance(s.gap);
    const auto e = enforcing.try_execute([&] { ++c.enforced_ran; }, {.cost = s.cost});
    if (!e) {
      CHECK(e.code() == refusal);
      ++c.enforced_refusals;
    }
    const auto r = shadowing.try_execute([&] { ++c.shadow_ran; }, {.cost = s.cost});
    if (!r) ++c.shadow_failed;
  }
  return c;
}

template <class Shadow>
void check_events_match(const Shadow& s, const event_log& log, armor::errc code) {
  CHECK(log.events.size() == s.stats().would_refuse());
  for (const auto& e : log.events) {
    CHECK(e.outcome == armor::shadow_outcome::would_refuse);
    CHECK(e.code == code);
  }
}

}  // namespace

TEST_CASE("shadow is a policy that forwards its policy's clock, options and completion timing", "[shadow]") {
  using bucket = armor::token_bucket<armor::manual_clock>;
  using s = armor::shadow<bucket>;
  static_assert(armor::policy<s>);
  static_assert(!armor::queueing_policy<armor::shadow<armor::bulkhead<>>>);  // it never queues
  static_assert(std::is_same_v<s::clock_type, armor::manual_clock>);
  static_assert(std::is_same_v<s::options_type, armor::token_bucket_options>);
  static_assert(std::is_same_v<s::keyed_instance, armor::shadow<armor::token_bucket<armor::manual_clock, false>>>);
  static_assert(!s::needs_completion_time);
  static_assert(armor::shadow<armor::adaptive_limit<>>::needs_completion_time);
  static_assert(armor::decision_like<armor::shadow_decision<armor::token_bucket_decision<>>>);
  bucket b{{.rate = {1, 1s}}, armor::manual_clock{}};
  armor::shadow by_ref{std::ref(b)};
  static_assert(std::is_same_v<decltype(by_ref), armor::shadow<std::reference_wrapper<bucket>>>);
  CHECK(&by_ref.policy() == &b);
}

TEST_CASE("token_bucket in shadow: every call runs, would_refuse counts exactly the enforcing twin's refusals",
          "[shadow][token_bucket]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  const armor::token_bucket_options o{.rate = {10, 1s}, .burst = 5};
  bucket enforcing_bucket{o, clock};
  event_log log;
  armor::shadow<bucket, recorder> trial{bucket{o, clock}, {.count_calls = true}, recorder{&log}};
  const auto enforcing = armor::pipeline{clock, std::ref(enforcing_bucket)};
  const auto shadowing = armor::pipeline{clock, std::ref(trial)};

  const auto steps = sequence(500, 7, 150ms, 2);
  const comparison c = side_by_side(clock, enforcing, shadowing, steps, armor::errc::rate_limited);
  REQUIRE(c.enforced_refusals > 50);  // the sequence does hit the limit
  CHECK(c.shadow_ran == 500);
  CHECK(c.shadow_failed == 0);
  const armor::shadow_stats st = trial.stats();
  CHECK(st.would_refuse() == static_cast<std::uint64_t>(c.enforced_refusals));
  CHECK(st.rate_limited == st.would_refuse());
  CHECK(st.admitted == static_cast<std::uint64_t>(c.enforced_ran));
  CHECK(st.admitted + st.would_refuse() == 500);
  // The shadowed bucket is where the enforcing one is: a refused call took nothing.
  CHECK(trial.policy().available() == enforcing_bucket.available());
  check_events_match(trial, log, armor::errc::rate_limited);
  for (const auto& e : log.events) CHECK(e.retry_after > 0ns);
}

TEST_CASE("fixed_window and sliding_window in shadow match their enforcing twins", "[shadow][windows]") {
  armor::manual_clock clock;
  const auto steps = sequence(600, 11, 2s, 3);
  SECTION("fixed window") {
    using window = armor::fixed_window<armor::manual_clock>;
    const armor::fixed_window_options o{.limit = 60, .window = 1min};
    window enforcing_window{o, clock};
    event_log log;
    armor::shadow<window, recorder> trial{window{o, clock}, {}, recorder{&log}};
    const comparison c = side_by_side(clock, armor::pipeline{clock, std::ref(enforcing_window)},
                                      armor::pipeline{clock, std::ref(trial)}, steps, armor::errc::rate_limited);
    REQUIRE(c.enforced_refusals > 50);
    CHECK(c.shadow_ran == 600);
    CHECK(trial.stats().would_refuse() == static_cast<std::uint64_t>(c.enforced_refusals));
    CHECK_FALSE(trial.stats().counting);
    CHECK(trial.stats().admitted == 0);  // not counted without count_calls
    CHECK(trial.policy().stats().used == enforcing_window.stats().used);
    check_events_match(trial, log, armor::errc::rate_limited);
  }
  SECTION("exact sliding window") {
    using window = armor::sliding_window<armor::manual_clock>;
    const armor::sliding_window_options o{.limit = 30, .window = 30s, .segments = 6};
    window enforcing_window{o, clock};
    event_log log;
    armor::shadow<window, recorder> trial{window{o, clock}, {}, recorder{&log}};
    const comparison c = side_by_side(clock, armor::pipeline{clock, std::ref(enforcing_window)},
                                      armor::pipeline{clock, std::ref(trial)}, steps, armor::errc::rate_limited);
    REQUIRE(c.enforced_refusals > 50);
    CHECK(c.shadow_ran == 600);
    CHECK(trial.stats().would_refuse() == static_cast<std::uint64_t>(c.enforced_refusals));
    check_events_match(trial, log, armor::errc::rate_limited);
  }
  SECTION("approximate sliding window") {
    using window = armor::sliding_window<armor::manual_clock>;
    const armor::sliding_window_options o{
        .limit = 30, .window = 30s, .algorithm = armor::sliding_window_algorithm::approximate};
    window enforcing_window{o, clock};
    armor::shadow<window> trial{window{o, clock}};
    const comparison c = side_by_side(clock, armor::pipeline{clock, std::ref(enforcing_window)},
                                      armor::pipeline{clock, std::ref(trial)}, steps, armor::errc::rate_limited);
    REQUIRE(c.enforced_refusals > 50);
    CHECK(trial.stats().would_refuse() == static_cast<std::uint64_t>(c.enforced_refusals));
  }
}

TEST_CASE("quota_tracker in shadow: a refused call is not charged, so usage matches the enforcing twin",
          "[shadow][quota_tracker]") {
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{std::chrono::sys_days{std::chrono::year{2024} / 6 / 15}.time_since_epoch()});
  using tracker = armor::quota_tracker<armor::manual_clock>;
  const armor::quota_tracker_options o{.windows = {armor::quota_window::per_hour(100)}};
  tracker enforcing_quota{o, clock};
  tracker shadow_quota{o, clock};
  event_log log;
  armor::shadow<std::reference_wrapper<tracker>, recorder> trial{std::ref(shadow_quota), {}, recorder{&log}};
  const auto steps = sequence(400, 3, 30s, 9);
  const comparison c = side_by_side(clock, armor::pipeline{clock, std::ref(enforcing_quota)},
                                    armor::pipeline{clock, std::ref(trial)}, steps, armor::errc::quota_exhausted);
  REQUIRE(c.enforced_refusals > 50);
  CHECK(c.shadow_ran == 400);
  CHECK(trial.stats().quota_exhausted == static_cast<std::uint64_t>(c.enforced_refusals));
  CHECK(shadow_quota.usage(0).used == enforcing_quota.usage(0).used);
  check_events_match(trial, log, armor::errc::quota_exhausted);
  for (const auto& e : log.events) CHECK(e.retry_after > 0ns);  // to the top of the hour
}

TEST_CASE("an admitted call is settled in the shadowed policy: a reported cost commits the quota",
          "[shadow][quota_tracker]") {
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{std::chrono::sys_days{std::chrono::year{2024} / 6 / 15}.time_since_epoch()});
  armor::quota_tracker<armor::manual_clock> tokens{{.windows = {armor::quota_window::per_day(10'000)}}, clock};
  armor::shadow trial{std::ref(tokens)};
  auto p = armor::pipeline{clock, std::ref(trial)};
  (void)p.execute([](const armor::context& ctx) { ctx.report_cost(1234); }, {.cost = 4000});
  CHECK(tokens.usage(0).used == 1234);
  // Over the quota: runs anyway, and charges nothing.
  int ran = 0;
  (void)p.execute([&](const armor::context& ctx) { ++ran; ctx.report_cost(9000); }, {.cost = 9000});
  CHECK(ran == 1);
  CHECK(tokens.usage(0).used == 1234);
  CHECK(trial.stats().quota_exhausted == 1);
}

TEST_CASE("bulkhead in shadow: calls over the limit run without a slot, counted as bulkhead_full",
          "[shadow][bulkhead]") {
  // Calls overlap, so the protocol is driven by hand: open calls hold their
  // permits, closing one settles it. The same script runs on both.
  armor::bulkhead<> enforcing{{.max_concurrent = 3}};
  event_log log;
  armor::shadow<armor::bulkhead<>, recorder> trial{armor::bulkhead<>{{.max_concurrent = 3}}, {}, recorder{&log}};
  using enforcing_permit = armor::bulkhead_permit;
  using shadow_permit = decltype(trial)::permit_type;
  std::vector<enforcing_permit> open_enforcing;
  std::vector<shadow_permit> open_shadow;
  int enforced_refusals = 0;
  std::uint64_t x = 5;
  for (int i = 0; i < 400; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const bool open = (x >> 40) % 3 != 0;  // two opens for each close, on average
    armor::context ctx(armor::timestamp{nanoseconds{i}}, {.key = "10.0.0.1"});
    if (open) {
      auto e = enforcing.admit(ctx);
      if (e.kind == armor::admission_kind::admitted) {
        open_enforcing.push_back(std::move(e.permit));
      } else {
        CHECK(e.code == armor::errc::bulkhead_full);
        ++enforced_refusals;
      }
      auto s = trial.admit(ctx);
      REQUIRE(s.kind == armor::admission_kind::admitted);  // the call runs
      // Only an admitted call holds a slot, as in the enforcing twin.
      if (s.permit.admitted()) open_shadow.push_back(std::move(s.permit));
    } else {
      if (!open_enforcing.empty()) {
        enforcing.settle(ctx, std::move(open_enforcing.front()), armor::verdict::success());
        open_enforcing.erase(open_enforcing.begin());
      }
      if (!open_shadow.empty()) {
        trial.settle(ctx, std::move(open_shadow.front()), armor::verdict::success());
        open_shadow.erase(open_shadow.begin());
      }
    }
    CHECK(trial.policy().in_use() == enforcing.in_use());
  }
  REQUIRE(enforced_refusals > 50);
  CHECK(trial.stats().bulkhead_full == static_cast<std::uint64_t>(enforced_refusals));
  check_events_match(trial, log, armor::errc::bulkhead_full);
  for (const auto& k : log.keys) CHECK(k == "10.0.0.1");
}

TEST_CASE("bulkhead with a queue in shadow: a call that would queue runs at once, counted as would_queue",
          "[shadow][bulkhead]") {
  armor::manual_clock clock;
  event_log log;
  armor::shadow<armor::bulkhead<>, recorder> trial{armor::bulkhead<>{{.max_concurrent = 1, .max_queue = 4}}, {},
                                                   recorder{&log}};
  auto p = armor::pipeline{clock, std::ref(trial)};
  int ran = 0;
  // The outer call holds the only slot while the inner one arrives.
  auto r = p.try_execute([&] {
    ++ran;
    auto inner = p.try_execute([&] { ++ran; });
    CHECK(inner.ok());
    CHECK(trial.policy().queued() == 0);  // nobody joined the queue
  });
  CHECK(r.ok());
  CHECK(ran == 2);
  CHECK(trial.stats().would_queue == 1);
  CHECK(trial.stats().would_refuse() == 0);
  REQUIRE(log.events.size() == 1);
  CHECK(log.events[0].outcome == armor::shadow_outcome::would_queue);
  CHECK(log.events[0].code == armor::errc::bulkhead_full);
  CHECK(trial.policy().in_use() == 0);
}

TEST_CASE("adaptive_limit in shadow matches its enforcing twin, windows and limits included",
          "[shadow][adaptive_limit]") {
  armor::manual_clock clock;
  using limit = armor::adaptive_limit<armor::aimd_limit, armor::manual_clock>;
  const armor::adaptive_limit_options<armor::aimd_limit> o{
      .initial_limit = 4, .min_limit = 2, .max_limit = 50, .window = 100ms, .min_samples = 1, .normal_share = 1.0,
      .sheddable_share = 1.0, .algorithm = {.latency_threshold = 30ms}};
  limit enforcing{o, clock};
  event_log log;
  armor::shadow<limit, recorder> trial{limit{o, clock}, {}, recorder{&log}};
  std::vector<armor::adaptive_limit_permit> open_enforcing;
  std::vector<decltype(trial)::permit_type> open_shadow;
  int enforced_refusals = 0;
  std::uint64_t x = 9;
  for (int i = 0; i < 600; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    clock.advance(nanoseconds{static_cast<std::int64_t>((x >> 33) % 20'000'000)});
    armor::context ctx(armor::to_timestamp(clock.now()));
    if ((x >> 20) % 5 < 3) {
      auto e = enforcing.admit(ctx);
      if (e.kind == armor::admission_kind::admitted) {
        open_enforcing.push_back(std::move(e.permit));
      } else {
        ++enforced_refusals;
      }
      auto s = trial.admit(ctx);
      REQUIRE(s.kind == armor::admission_kind::admitted);
      if (s.permit.admitted()) open_shadow.push_back(std::move(s.permit));
    } else if (!open_enforcing.empty()) {
      const armor::verdict v = (x >> 50) % 7 == 0 ? armor::verdict::failure() : armor::verdict::success();
      enforcing.settle(ctx, std::move(open_enforcing.front()), v);
      open_enforcing.erase(open_enforcing.begin());
      REQUIRE_FALSE(open_shadow.empty());
      trial.settle(ctx, std::move(open_shadow.front()), v);
      open_shadow.erase(open_shadow.begin());
    }
    CHECK(trial.policy().stats().limit == enforcing.stats().limit);
  }
  REQUIRE(enforced_refusals > 50);
  CHECK(trial.policy().stats().windows == enforcing.stats().windows);
  CHECK(trial.policy().stats().windows > 5);
  CHECK(trial.stats().concurrency_limited == static_cast<std::uint64_t>(enforced_refusals));
  check_events_match(trial, log, armor::errc::concurrency_limited);
}

TEST_CASE("a token bucket's wait is not waited in shadow: the call runs now and keeps its reservation",
          "[shadow][token_bucket]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  event_log log;
  armor::shadow<bucket, recorder> trial{bucket{{.rate = {1, 1s}, .burst = 1, .max_wait = 5s}, clock}, {},
                                        recorder{&log}};
  auto p = armor::pipeline{clock, std::ref(trial)};
  const auto start = clock.now();
  CHECK(p.try_execute([] { return 1; }).ok());  // the token
  CHECK(p.try_execute([] { return 2; }).ok());  // would wait 1 s
  CHECK(p.try_execute([] { return 3; }).ok());  // would wait 2 s
  CHECK(clock.now() == start);                  // nobody slept
  CHECK(trial.stats().would_wait == 2);
  REQUIRE(log.events.size() == 2);
  CHECK(log.events[0].outcome == armor::shadow_outcome::would_wait);
  CHECK(log.events[0].retry_after == 1s);
  CHECK(log.events[1].retry_after == 2s);
  // The reservations stand, as they would for waiters: the next wait is 3 s.
  // With a 2 s budget it would not fit: the driver would refuse it, so the
  // shadow counts a refusal (reason deadline) and gives the reservation back.
  CHECK(p.try_execute([] { return 4; }, {.timeout = 2s}).ok());
  CHECK(trial.stats().deadline == 1);
  CHECK(log.events.back().code == armor::errc::wait_exceeds_deadline);
  CHECK(log.events.back().retry_after == 3s);
  CHECK(p.try_execute([] { return 5; }).ok());
  CHECK(log.events.back().retry_after == 3s);  // the refused reservation was given back
}

TEST_CASE("shadow over keyed: one set of counters, the key in every event", "[shadow][keyed]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  armor::keyed<bucket> per_ip{{.rate = {1, 1s}, .burst = 2}, {.max_keys = 100}, clock};
  event_log log;
  armor::shadow<std::reference_wrapper<armor::keyed<bucket>>, recorder> trial{std::ref(per_ip), {}, recorder{&log}};
  auto p = armor::pipeline{clock, std::ref(trial)};
  int ran = 0;
  for (int i = 0; i < 3; ++i) CHECK(p.try_execute([&] { ++ran; }, {.key = "10.0.0.1"}).ok());
  for (int i = 0; i < 4; ++i) CHECK(p.try_execute([&] { ++ran; }, {.key = "10.0.0.2"}).ok());
  CHECK(ran == 7);
  CHECK(trial.stats().rate_limited == 3);  // one for .1, two for .2
  REQUIRE(log.keys.size() == 3);
  CHECK(log.keys[0] == "10.0.0.1");
  CHECK(log.keys[1] == "10.0.0.2");
  CHECK(log.keys[2] == "10.0.0.2");
  CHECK(per_ip.size() == 2);
}

TEST_CASE("keyed over shadow: one shadow per key, each with its own counters", "[shadow][keyed]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  armor::keyed<armor::shadow<bucket>> per_ip{{.rate = {1, 1s}, .burst = 2}, {.max_keys = 100}, clock};
  static_assert(std::is_same_v<decltype(per_ip)::instance_type,
                               armor::shadow<armor::token_bucket<armor::manual_clock, false>>>);
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  int ran = 0;
  for (int i = 0; i < 5; ++i) CHECK(p.try_execute([&] { ++ran; }, {.key = "a"}).ok());
  CHECK(p.try_execute([&] { ++ran; }, {.key = "b"}).ok());
  CHECK(ran == 6);
  CHECK(per_ip.find("a")->stats().rate_limited == 3);
  CHECK(per_ip.find("b")->stats().would_refuse() == 0);
  clock.advance(10s);
  CHECK(per_ip.evict_idle() == 2);  // a shadow is idle when its bucket is
}

TEST_CASE("keyed over a shadow with a listener: every key's events reach the listener", "[shadow][keyed]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  event_log log;
  armor::keyed<armor::shadow<bucket, recorder>> per_ip{
      {.rate = {1, 1s}, .burst = 1}, {.max_keys = 100}, clock, recorder{&log}};
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  for (int i = 0; i < 2; ++i) CHECK(p.try_execute([] {}, {.key = "x"}).ok());
  REQUIRE(log.keys.size() == 1);
  CHECK(log.keys[0] == "x");
  // Standalone, through the map: the key the shadow was built for.
  auto h = per_ip.get("y");
  CHECK(h->try_acquire(1, armor::to_timestamp(clock.now())));
  CHECK(h->try_acquire(1, armor::to_timestamp(clock.now())).would_refuse());
  REQUIRE(log.keys.size() == 2);
  CHECK(log.keys[1] == "y");
}

TEST_CASE("standalone: try_acquire is always granted and carries the policy's decision; observe counts any decision",
          "[shadow]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  armor::shadow trial{bucket{{.rate = {1, 1s}, .burst = 1}, clock}, {.count_calls = true}};
  auto first = trial.try_acquire();
  CHECK(first);
  CHECK_FALSE(first.would_refuse());
  auto second = trial.try_acquire();
  CHECK(second);
  CHECK(second.code() == std::error_code{});
  CHECK(second.would_refuse());
  CHECK(second.shadowed().code() == armor::errc::rate_limited);
  CHECK(second.shadowed().retry_after() == 1s);
  // Any other decision of the policy, e.g. a reservation:
  auto r = trial.policy().reserve(1, 0s);
  CHECK_FALSE(trial.observe(r, "10.0.0.9"));
  const armor::shadow_stats st = trial.stats();
  CHECK(st.admitted == 1);
  CHECK(st.rate_limited == 2);
  trial.reset_stats();
  CHECK(trial.stats().would_refuse() == 0);
}

TEST_CASE("refusal codes are counted by reason", "[shadow]") {
  struct refuser {
    using permit_type = armor::no_permit;
    std::error_code code;
    armor::admission<> admit(armor::context&) noexcept { return armor::admission<>::reject(code, 2s, true); }
    void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
  };
  const auto count = [](std::error_code code) {
    armor::shadow s{refuser{code}};
    armor::context ctx(armor::timestamp{});
    CHECK(s.admit(ctx).kind == armor::admission_kind::admitted);
    return s.stats();
  };
  CHECK(count(armor::errc::circuit_open).circuit_open == 1);
  CHECK(count(armor::errc::client_throttled).client_throttled == 1);
  CHECK(count(armor::errc::request_too_large).too_large == 1);
  CHECK(count(armor::errc::deadline_exceeded).deadline == 1);
  CHECK(count(armor::errc::storage_unavailable).other == 1);
  CHECK(count(std::make_error_code(std::errc::io_error)).other == 1);
  CHECK(armor::to_string(armor::shadow_outcome::would_queue) == "would_queue");
}
