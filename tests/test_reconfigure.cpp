// Runtime reconfiguration (docs/reconfiguration.md): the circuit breaker,
// the bulkhead, the window limiters, backoff, quota_tracker, load_shedder,
// the adaptive policies and keyed<P> take new limits with reconfigure();
// the next decision uses them; a bad value is refused, naming the option,
// and the old limits still apply. Exact, on manual_clock.
#include <armor/adaptive_limit.hpp>
#include <armor/adaptive_throttle.hpp>
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/detail/config_cell.hpp>
#include <armor/fixed_window.hpp>
#include <armor/histogram.hpp>
#include <armor/keyed.hpp>
#include <armor/load_shedder.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/shadow.hpp>
#include <armor/sliding_window.hpp>
#include <armor/storage/any.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

armor::timestamp at(nanoseconds d) { return armor::timestamp{d}; }

// The message of the armor::error(invalid_argument) that `f` throws; "" if none.
template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const armor::error& e) {
    if (e.code() == armor::errc::invalid_argument) return e.what();
    return "wrong code";
  }
  return "";
}

bool names(const std::string& message, const char* option) { return message.find(option) != std::string::npos; }

template <class K, class O>
concept reconfigurable = requires(K& k, const O& o) { k.reconfigure(o); };

struct test_waiter : armor::queue_waiter {
  test_waiter() : armor::queue_waiter(&on_wake) {}
  int wakes = 0;
  static void on_wake(armor::queue_waiter& w) noexcept { ++static_cast<test_waiter&>(w).wakes; }
};

struct three_words {
  std::int64_t a = 0;
  std::int64_t b = 0;
  std::int64_t c = 0;
};

}  // namespace

TEST_CASE("config_cell: a one-word and a several-word value read back whole", "[reconfigure]") {
  armor::detail::config_cell<std::int64_t> one{7};
  CHECK(one.load() == 7);
  one.store(-3);
  CHECK(one.load() == -3);
  armor::detail::config_cell<three_words> many{{1, 2, 3}};
  for (std::int64_t i = 0; i < 5; ++i) {  // both slots, several times
    many.store({i, 10 * i, 100 * i});
    const three_words v = many.load();
    CHECK(v.a == i);
    CHECK(v.b == 10 * i);
    CHECK(v.c == 100 * i);
  }
  const armor::detail::config_cell<three_words> copy{many};
  CHECK(copy.load().c == 400);
}

// ---------------------------------------------------------------- fixed window

TEST_CASE("fixed_window::reconfigure: a raised limit admits more in the same window at once", "[reconfigure]") {
  armor::fixed_window<armor::manual_clock> w{{.limit = 3, .window = 1min}, armor::manual_clock{}};
  for (int i = 0; i < 3; ++i) REQUIRE(w.try_acquire(1, at(1s)));
  CHECK_FALSE(w.try_acquire(1, at(2s)));
  w.reconfigure({.limit = 5, .window = 1min});
  CHECK(w.limit() == 5);
  const armor::window_decision d = w.try_acquire(1, at(3s));
  REQUIRE(d);
  CHECK(d.limit() == 5);
  CHECK(d.remaining() == 1);
  CHECK(w.try_acquire(1, at(4s)));
  CHECK_FALSE(w.try_acquire(1, at(5s)));
  CHECK(w.available(at(5s)) == 0);
}

TEST_CASE("fixed_window::reconfigure: a lowered limit refuses until the window turns", "[reconfigure]") {
  armor::fixed_window<armor::manual_clock> w{{.limit = 10, .window = 1min}, armor::manual_clock{}};
  for (int i = 0; i < 6; ++i) REQUIRE(w.try_acquire(1, at(1s)));
  w.reconfigure({.limit = 4, .window = 1min});
  const armor::window_decision d = w.try_acquire(1, at(10s));
  REQUIRE_FALSE(d);
  CHECK(d.limit() == 4);
  CHECK(d.remaining() == 0);  // 6 counted, 4 allowed: nothing remains (not -2)
  CHECK(d.retry_after() == 50s);
  CHECK(w.available(at(10s)) == 0);
  CHECK(w.stats(at(10s)).used == 6);
  // The next window counts against the new limit.
  for (int i = 0; i < 4; ++i) CHECK(w.try_acquire(1, at(61s)));
  CHECK_FALSE(w.try_acquire(1, at(62s)));
}

TEST_CASE("fixed_window::reconfigure refuses a bad limit or a change of shape; the old limit stays", "[reconfigure]") {
  armor::fixed_window<armor::manual_clock> w{{.limit = 2, .window = 1min}, armor::manual_clock{}};
  CHECK(names(refusal([&] { w.reconfigure({.limit = 0, .window = 1min}); }), "limit"));
  CHECK(names(refusal([&] { w.reconfigure({.limit = 5, .window = 2min}); }), "window"));
  CHECK(names(refusal([&] { w.reconfigure({.limit = 5, .window = 1min, .offset = 1s}); }), "offset"));
  CHECK(names(refusal([&] { w.reconfigure({.limit = 5, .window = 1min, .count_calls = true}); }), "count_calls"));
  CHECK(names(refusal([&] { w.reconfigure({.limit = 5, .window = 1min, .cost = armor::cost_source::per_call()}); }),
              "cost"));
  // Too large for the window: 2^4 needs 5 bits, a 2 ns window gives the count 4.
  armor::fixed_window<armor::manual_clock> tiny{{.limit = 15, .window = 2ns}, armor::manual_clock{}};
  CHECK(names(refusal([&] { tiny.reconfigure({.limit = 16, .window = 2ns}); }), "limit 16 is too large"));
  CHECK(tiny.limit() == 15);
  CHECK(w.limit() == 2);
  CHECK(w.try_acquire(1, at(1s)));
  CHECK(w.try_acquire(1, at(1s)));
  CHECK_FALSE(w.try_acquire(1, at(1s)));
}

TEST_CASE("fixed_window: the packing leaves room for any limit the window allows", "[reconfigure]") {
  // Built with limit 1, raised to the largest limit a 1 s window takes
  // (2^29 ns <= 1 s < 2^30: the count has 32 bits).
  armor::fixed_window<armor::manual_clock> w{{.limit = 1, .window = 1s}, armor::manual_clock{}};
  REQUIRE(w.try_acquire(1, at(0s)));
  const std::int64_t big = (std::int64_t{1} << 32) - 1;
  w.reconfigure({.limit = big, .window = 1s});
  const armor::window_decision d = w.try_acquire(big - 1, at(0s));
  REQUIRE(d);
  CHECK(d.remaining() == 0);
  CHECK_FALSE(w.try_acquire(1, at(0s)));
  CHECK(w.try_acquire(1, at(1s)));  // the next window
  CHECK(names(refusal([&] { w.reconfigure({.limit = big + 1, .window = 1s}); }), "too large"));
}

// ---------------------------------------------------------------- sliding window

TEST_CASE("sliding_window::reconfigure (exact): new limit on the next decision, counted units kept", "[reconfigure]") {
  using sw = armor::sliding_window<armor::manual_clock>;
  sw w{{.limit = 4, .window = 4s, .segments = 4}, armor::manual_clock{}};
  for (int i = 0; i < 4; ++i) REQUIRE(w.try_acquire(1, at(500ms)));
  CHECK_FALSE(w.try_acquire(1, at(1500ms)));
  w.reconfigure({.limit = 6, .window = 4s, .segments = 4});
  CHECK(w.try_acquire(2, at(1500ms)));
  CHECK_FALSE(w.try_acquire(1, at(1500ms)));
  w.reconfigure({.limit = 3, .window = 4s, .segments = 4});
  const armor::window_decision d = w.try_acquire(1, at(2500ms));
  REQUIRE_FALSE(d);
  CHECK(d.limit() == 3);
  CHECK(d.remaining() == 0);
  // The 4 units of segment 0 leave at 4 s; 2 remain (segment 1): 1 more fits.
  CHECK(d.retry_after() == 1500ms);
  CHECK(w.try_acquire(1, at(4s)));
  CHECK_FALSE(w.try_acquire(1, at(4s)));
}

TEST_CASE("sliding_window::reconfigure (approximate): the estimate is weighed against the new limit", "[reconfigure]") {
  using sw = armor::sliding_window<armor::manual_clock>;
  const armor::sliding_window_options o{.limit = 10, .window = 10s, .algorithm = armor::sliding_window_algorithm::approximate};
  sw w{o, armor::manual_clock{}};
  REQUIRE(w.try_acquire(10, at(1s)));
  // At 15 s: prev 10 weighs 10 * 5/10 = 5; limit 10 admits 5 more.
  armor::sliding_window_options lower = o;
  lower.limit = 6;
  w.reconfigure(lower);
  const armor::window_decision d = w.try_acquire(2, at(15s));
  CHECK_FALSE(d);  // 5 + 2 > 6
  CHECK(d.limit() == 6);
  CHECK(w.try_acquire(1, at(15s)));  // 5 + 1 <= 6
  CHECK(names(refusal([&] {
                armor::sliding_window_options bad = o;
                bad.limit = -1;
                w.reconfigure(bad);
              }),
              "limit"));
  CHECK(w.limit() == 6);
}

TEST_CASE("sliding_window::reconfigure refuses a change of window, segments or algorithm", "[reconfigure]") {
  armor::sliding_window<armor::manual_clock> w{{.limit = 4, .window = 4s, .segments = 4}, armor::manual_clock{}};
  CHECK(names(refusal([&] { w.reconfigure({.limit = 4, .window = 8s, .segments = 4}); }), "window"));
  CHECK(names(refusal([&] { w.reconfigure({.limit = 4, .window = 4s, .segments = 2}); }), "segments"));
  CHECK(names(refusal([&] {
                w.reconfigure(
                    {.limit = 4, .window = 4s, .segments = 4, .algorithm = armor::sliding_window_algorithm::approximate});
              }),
              "algorithm"));
  CHECK(w.limit() == 4);
}

// ---------------------------------------------------------------- bulkhead

TEST_CASE("bulkhead::reconfigure: a raised max_concurrent admits at once and serves the queue first", "[reconfigure]") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 2, .max_wait = 1s}};
  armor::context ctx(armor::timestamp{});
  auto inside = b.admit(ctx);
  REQUIRE(inside.kind == armor::admission_kind::admitted);
  test_waiter w1;
  test_waiter w2;
  auto q1 = b.enqueue(ctx, w1);
  auto q2 = b.enqueue(ctx, w2);
  REQUIRE(q1.kind == armor::admission_kind::queued);
  REQUIRE(q2.kind == armor::admission_kind::queued);
  b.reconfigure({.max_concurrent = 4, .max_queue = 2, .max_wait = 1s});
  CHECK(w1.wakes == 1);  // both waiters served, in order, by the new slots
  CHECK(w2.wakes == 1);
  CHECK(b.queued() == 0);
  CHECK(b.in_use() == 3);
  CHECK(b.available() == 1);
  CHECK(b.max_concurrent() == 4);
  CHECK(q1.permit.leave_queue());
  CHECK(q2.permit.leave_queue());
  auto fourth = b.try_acquire();
  CHECK(fourth);
  CHECK_FALSE(b.try_acquire());
}

TEST_CASE("bulkhead::reconfigure: a lowered max_concurrent lets calls finish, admits nobody until below it",
          "[reconfigure]") {
  armor::bulkhead b{{.max_concurrent = 3}};
  auto a1 = b.try_acquire().permit();
  auto a2 = b.try_acquire().permit();
  auto a3 = b.try_acquire().permit();
  b.reconfigure({.max_concurrent = 1, .retry_after_hint = 2s});
  CHECK(b.in_use() == 3);
  CHECK(b.available() == 0);
  const auto d = b.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after() == 2s);  // the new hint
  a1.release();
  CHECK_FALSE(b.try_acquire());
  a2.release();
  CHECK_FALSE(b.try_acquire());  // 1 inside, max 1
  a3.release();
  CHECK(b.try_acquire());
}

TEST_CASE("bulkhead::reconfigure: with waiters, a lowered limit returns released slots instead of handing them over",
          "[reconfigure]") {
  armor::bulkhead b{{.max_concurrent = 2, .max_queue = 1, .max_wait = 1s}};
  armor::context ctx(armor::timestamp{});
  auto i1 = b.admit(ctx);
  auto i2 = b.admit(ctx);
  test_waiter w;
  auto q = b.enqueue(ctx, w);
  REQUIRE(q.kind == armor::admission_kind::queued);
  b.reconfigure({.max_concurrent = 1, .max_queue = 1, .max_wait = 1s});
  b.settle(ctx, std::move(i1.permit), armor::verdict::success());
  CHECK(w.wakes == 0);  // 2 inside > 1: the slot goes back
  CHECK(b.in_use() == 1);
  CHECK(b.queued() == 1);
  b.settle(ctx, std::move(i2.permit), armor::verdict::success());
  CHECK(w.wakes == 1);  // now at the limit: the slot goes to the waiter
  CHECK(b.in_use() == 1);
  CHECK(q.permit.leave_queue());
}

TEST_CASE("bulkhead::reconfigure: max_queue and max_wait apply to the next caller that queues", "[reconfigure]") {
  armor::bulkhead b{{.max_concurrent = 1}};
  armor::context ctx(armor::timestamp{});
  auto inside = b.admit(ctx);
  CHECK(b.admit(ctx).kind == armor::admission_kind::rejected);  // no queue
  b.reconfigure({.max_concurrent = 1, .max_queue = 1, .max_wait = 250ms});
  CHECK(b.admit(ctx).kind == armor::admission_kind::queue);
  test_waiter w;
  auto q = b.enqueue(ctx, w);
  REQUIRE(q.kind == armor::admission_kind::queued);
  CHECK(q.delay == 250ms);
  CHECK_FALSE(q.permit.leave_queue());
}

TEST_CASE("bulkhead::reconfigure refuses a bad option, naming it; the old limits stay", "[reconfigure]") {
  armor::bulkhead b{{.max_concurrent = 2}};
  CHECK(names(refusal([&] { b.reconfigure({.max_concurrent = 0}); }), "max_concurrent"));
  CHECK(names(refusal([&] { b.reconfigure({.max_concurrent = 2, .max_queue = 3, .max_wait = 0ms}); }), "max_wait"));
  CHECK(names(refusal([&] { b.reconfigure({.max_concurrent = 2, .retry_after_hint = -1s}); }), "retry_after_hint"));
  CHECK(b.max_concurrent() == 2);
  CHECK(b.max_queue() == 0);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  CHECK(p1);
  CHECK(p2);
  CHECK_FALSE(b.try_acquire());
}

// ---------------------------------------------------------------- circuit breaker

TEST_CASE("circuit_breaker::reconfigure: a new failure_threshold applies to the run under way", "[reconfigure]") {
  armor::circuit_breaker<armor::manual_clock> cb{{.failure_threshold = 5}, armor::manual_clock{}};
  for (int i = 0; i < 2; ++i) cb.record(cb.try_acquire(at(1s)).permit(), armor::verdict::failure(), at(1s));
  CHECK(cb.state() == armor::breaker_state::closed);
  cb.reconfigure({.failure_threshold = 3});
  CHECK(cb.options().failure_threshold == 3);
  cb.record(cb.try_acquire(at(2s)).permit(), armor::verdict::failure(), at(2s));
  CHECK(cb.state() == armor::breaker_state::open);
}

TEST_CASE("circuit_breaker::reconfigure: open_for, growth and probes change for the next trip", "[reconfigure]") {
  armor::circuit_breaker<armor::manual_clock> cb{{.failure_threshold = 1, .open_for = 10s}, armor::manual_clock{}};
  CHECK(cb.open_time(3) == 10s);
  cb.reconfigure({.failure_threshold = 1,
                  .open_for = 2s,
                  .open_for_multiplier = 2.0,
                  .max_open_for = 5s,
                  .half_open_max_calls = 2,
                  .success_threshold = 2});
  CHECK(cb.open_time(1) == 2s);
  CHECK(cb.open_time(2) == 4s);
  CHECK(cb.open_time(3) == 5s);  // capped by the new max_open_for
  cb.record(cb.try_acquire(at(0s)).permit(), armor::verdict::failure(), at(0s));
  REQUIRE(cb.state() == armor::breaker_state::open);
  const auto refused = cb.try_acquire(at(1s));
  CHECK_FALSE(refused);
  CHECK(refused.retry_after() == 1s);  // open for the new 2 s
  auto p1 = cb.try_acquire(at(2s));
  auto p2 = cb.try_acquire(at(2s));
  CHECK(p1);
  CHECK(p2);  // half_open_max_calls = 2
  CHECK_FALSE(cb.try_acquire(at(2s)));
  cb.record(std::move(p1).permit(), armor::verdict::success(), at(2s));
  CHECK(cb.state() == armor::breaker_state::half_open);  // success_threshold = 2
  cb.record(std::move(p2).permit(), armor::verdict::success(), at(2s));
  CHECK(cb.state() == armor::breaker_state::closed);
}

TEST_CASE("circuit_breaker::reconfigure: the failure rate and minimum_calls apply to the window as it is",
          "[reconfigure]") {
  armor::circuit_breaker<armor::manual_clock> cb{
      {.failure_threshold = 0, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 10}, armor::manual_clock{}};
  for (int i = 0; i < 3; ++i) cb.record(cb.try_acquire(at(1s)).permit(), armor::verdict::success(), at(1s));
  for (int i = 0; i < 2; ++i) cb.record(cb.try_acquire(at(1s)).permit(), armor::verdict::failure(), at(1s));
  CHECK(cb.state() == armor::breaker_state::closed);  // 5 calls < minimum 10
  cb.reconfigure({.failure_threshold = 0, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 6});
  cb.record(cb.try_acquire(at(1s)).permit(), armor::verdict::failure(), at(1s));  // 3 of 6 failed: 50 %
  CHECK(cb.state() == armor::breaker_state::open);
  CHECK(cb.stats(at(1s)).times_opened == 1);
}

TEST_CASE("circuit_breaker::reconfigure refuses a bad value or a change of shape; the old thresholds stay",
          "[reconfigure]") {
  armor::circuit_breaker<armor::manual_clock> cb{{.failure_threshold = 2, .failure_rate = 0.5, .window_size = 20},
                                                 armor::manual_clock{}};
  const auto base = [] {
    return armor::circuit_breaker_options{.failure_threshold = 2, .failure_rate = 0.5, .window_size = 20};
  };
  auto o = base();
  o.open_for = 0s;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "open_for"));
  o = base();
  o.failure_rate = 1.5;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "failure_rate"));
  o = base();
  o.minimum_calls = 21;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "minimum_calls"));
  o = base();
  o.window_size = 50;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "window_size"));
  o = base();
  o.window = armor::breaker_window::time;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "window"));
  o = base();
  o.failure_rate.reset();  // the only rate rule: the window would go
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "failure_rate"));
  o = base();
  o.slow_call_threshold = 1s;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "slow_call_threshold"));
  o = base();
  o.count_calls = true;
  CHECK(names(refusal([&] { cb.reconfigure(o); }), "count_calls"));
  // The old thresholds still apply: two failures open it.
  CHECK(cb.options().failure_threshold == 2);
  cb.record(cb.try_acquire(at(1s)).permit(), armor::verdict::failure(), at(1s));
  CHECK(cb.state() == armor::breaker_state::closed);
  cb.record(cb.try_acquire(at(1s)).permit(), armor::verdict::failure(), at(1s));
  CHECK(cb.state() == armor::breaker_state::open);
}

// ---------------------------------------------------------------- backoff

namespace {

// Runs failed attempts through `b` as one call until it stops; returns the delays it handed out.
template <class B>
std::vector<nanoseconds> delays_of_one_call(B& b, armor::verdict v = armor::verdict::failure()) {
  armor::context ctx{at(0s)};
  typename B::loop_state s{};
  std::vector<nanoseconds> out;
  for (armor::step st = b.next(ctx, v, s); st.again; st = b.next(ctx, v, s)) out.push_back(st.delay);
  return out;
}

}  // namespace

TEST_CASE("backoff::reconfigure: attempts and delays change from the next decision", "[reconfigure]") {
  armor::backoff b{{.max_attempts = 3, .schedule = armor::backoff_schedule::constant, .initial = 100ms,
                    .jitter = armor::jitter_mode::none}};
  CHECK(delays_of_one_call(b) == std::vector<nanoseconds>{100ms, 100ms});
  b.reconfigure({.max_attempts = 4, .schedule = armor::backoff_schedule::linear, .initial = 50ms,
                 .jitter = armor::jitter_mode::none});
  CHECK(b.options().max_attempts == 4);
  CHECK(b.base_delay(3) == 150ms);
  CHECK(delays_of_one_call(b) == std::vector<nanoseconds>{50ms, 100ms, 150ms});

  // A call under way: its attempts so far count against the new max_attempts.
  armor::context ctx{at(0s)};
  armor::backoff<>::loop_state s{};
  REQUIRE(b.next(ctx, armor::verdict::failure(), s).again);
  REQUIRE(b.next(ctx, armor::verdict::failure(), s).again);  // two attempts ran
  b.reconfigure({.max_attempts = 2, .schedule = armor::backoff_schedule::linear, .initial = 50ms,
                 .jitter = armor::jitter_mode::none});
  CHECK_FALSE(b.next(ctx, armor::verdict::failure(), s).again);  // the third failure: 3 >= 2, exhausted
  CHECK(b.stats().exhausted == 3);  // two whole calls before, and this one

  // max_retry_after bounds a server's hint from the next decision.
  b.reconfigure({.max_attempts = 2, .max_retry_after = 2s});
  CHECK(delays_of_one_call(b, armor::verdict::retry_later(10s)) == std::vector<nanoseconds>{2s});
}

TEST_CASE("backoff::reconfigure: the budget's size and ratio change, its level is kept or lowered", "[reconfigure]") {
  armor::backoff b{{.max_attempts = 2, .jitter = armor::jitter_mode::none,
                    .budget = armor::retry_budget{.max_tokens = 10, .token_ratio = 0.5}}};
  for (int i = 0; i < 2; ++i) (void)delays_of_one_call(b);  // each call: one failure retried, one given up
  CHECK(b.stats().budget_tokens == 6.0);                     // 10 - 4
  b.reconfigure({.max_attempts = 2, .jitter = armor::jitter_mode::none,
                 .budget = armor::retry_budget{.max_tokens = 20, .token_ratio = 1.0}});
  CHECK(b.stats().budget_tokens == 6.0);  // kept, not filled
  // The new threshold (10) refuses retries at once; the new ratio refills 1 per success.
  CHECK(delays_of_one_call(b).empty());
  CHECK(b.stats().budget_refusals == 1);
  armor::context ctx{at(0s)};
  armor::backoff<>::loop_state s{};
  (void)b.next(ctx, armor::verdict::success(), s);
  CHECK(b.stats().budget_tokens == 6.0);  // 5 after the failure above, + 1
  b.reconfigure({.max_attempts = 2, .jitter = armor::jitter_mode::none,
                 .budget = armor::retry_budget{.max_tokens = 2, .token_ratio = 1.0}});
  CHECK(b.stats().budget_tokens == 2.0);  // lowered to the new size
}

TEST_CASE("backoff::reconfigure refuses a bad option or a change of shape; the old options stay", "[reconfigure]") {
  armor::backoff b{{.max_attempts = 3, .schedule = armor::backoff_schedule::constant, .initial = 100ms,
                    .jitter = armor::jitter_mode::none}};
  CHECK(names(refusal([&] { b.reconfigure({.max_attempts = 0}); }), "max_attempts"));
  CHECK(names(refusal([&] { b.reconfigure({.initial = 2s, .max_delay = 1s}); }), "initial"));
  CHECK(names(refusal([&] { b.reconfigure({.multiplier = 0.5}); }), "multiplier"));
  CHECK(names(refusal([&] { b.reconfigure({.count_calls = true}); }), "count_calls"));
  CHECK(names(refusal([&] { b.reconfigure({.budget = armor::retry_budget{}}); }), "budget"));
  CHECK(names(refusal([&] { b.reconfigure({.budget = armor::retry_budget{.max_tokens = 0}}); }), "budget.max_tokens"));
  CHECK(b.options().max_attempts == 3);
  CHECK(delays_of_one_call(b) == std::vector<nanoseconds>{100ms, 100ms});
}

// ---------------------------------------------------------------- quota_tracker

namespace {

using quota = armor::quota_tracker<armor::manual_clock>;

armor::quota_tracker_options two_windows(std::int64_t per_minute, std::int64_t per_hour) {
  return {.windows = {armor::quota_window::per_minute(per_minute), armor::quota_window::per_hour(per_hour)},
          .alerts = {}};
}

}  // namespace

TEST_CASE("quota_tracker::reconfigure: the counts are kept, the new limits apply at once", "[reconfigure]") {
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{1h});
  quota q{two_windows(3, 10), clock};
  for (int i = 0; i < 3; ++i) REQUIRE(q.try_consume());
  CHECK(q.try_consume().status() == armor::quota_tracker_status::exhausted);

  q.reconfigure(two_windows(5, 10));  // raised: two more this minute
  CHECK(q.options().windows[0].limit == 5);
  CHECK(q.try_consume());
  CHECK(q.try_consume());
  const auto refused = q.try_consume();
  CHECK(refused.status() == armor::quota_tracker_status::exhausted);
  CHECK(refused.limit() == 5);
  CHECK(refused.used() == 5);
  CHECK(q.try_consume(6).status() == armor::quota_tracker_status::too_large);

  q.reconfigure(two_windows(2, 10));  // lowered below the 5 counted: refuses until the minute turns
  CHECK(q.usage(0).used == 5);
  CHECK(q.usage(0).limit == 2);
  CHECK(q.usage(0).remaining() == 0);
  CHECK_FALSE(q.try_consume());
  clock.advance(1min);
  CHECK(q.try_consume());
  CHECK(q.try_consume());
  CHECK_FALSE(q.try_consume());
  CHECK(q.usage(1).used == 7);  // the hour kept every unit

  q.reconfigure(two_windows(5, 7));  // the hour, lowered to what it holds, refuses now
  const auto hour = q.try_consume();
  CHECK(hour.status() == armor::quota_tracker_status::exhausted);
  CHECK(hour.window() == 1);
  CHECK(hour.limit() == 7);
}

TEST_CASE("quota_tracker::reconfigure: alerts are fractions of the new limit from the next consumption",
          "[reconfigure]") {
  armor::manual_clock clock;
  quota q{{.windows = {armor::quota_window::per_minute(10)}, .alerts = {0.5}}, clock};
  for (int i = 0; i < 4; ++i) REQUIRE(q.try_consume());
  CHECK(q.stats().alerts == 0);
  q.reconfigure({.windows = {armor::quota_window::per_minute(6)}, .alerts = {0.5}});
  CHECK(q.stats().alerts == 0);  // nothing fires until a consumption
  REQUIRE(q.try_consume());      // 5 >= 3 (half of 6)
  CHECK(q.stats().alerts == 1);
  q.reconfigure({.windows = {armor::quota_window::per_minute(20)}, .alerts = {0.5}});
  REQUIRE(q.try_consume());  // fired in this period already: not again
  CHECK(q.stats().alerts == 1);
}

TEST_CASE("quota_tracker::reconfigure refuses a bad limit or a change of shape; the old limits stay",
          "[reconfigure]") {
  armor::manual_clock clock;
  quota q{two_windows(3, 10), clock};
  CHECK(names(refusal([&] { q.reconfigure(two_windows(0, 10)); }), "windows[0].limit"));
  CHECK(names(refusal([&] { q.reconfigure(two_windows(3, armor::quota_max_limit + 1)); }), "windows[1].limit"));
  CHECK(names(refusal([&] { q.reconfigure({.windows = {armor::quota_window::per_minute(3)}, .alerts = {}}); }),
              "number of windows"));
  CHECK(names(refusal([&] {
                q.reconfigure({.windows = {armor::quota_window::fixed(3, 2min), armor::quota_window::per_hour(10)},
                               .alerts = {}});
              }),
              "windows[0] kind, length or buckets"));
  auto shifted = two_windows(3, 10);
  shifted.utc_offset = std::chrono::minutes{60};
  CHECK(names(refusal([&] { q.reconfigure(shifted); }), "utc_offset"));
  auto alerting = two_windows(3, 10);
  alerting.alerts = {0.8};
  CHECK(names(refusal([&] { q.reconfigure(alerting); }), "alerts"));
  auto per_call = two_windows(3, 10);
  per_call.cost = armor::cost_source::per_call();
  CHECK(names(refusal([&] { q.reconfigure(per_call); }), "cost"));
  CHECK(q.options().windows[0].limit == 3);
  for (int i = 0; i < 3; ++i) CHECK(q.try_consume());
  CHECK_FALSE(q.try_consume());
}

// ---------------------------------------------------------------- quota trackers on any_quota_storage

namespace {

using any_quota = armor::quota_tracker<armor::manual_clock, armor::any_quota_storage>;
using keyed_any_quota = armor::keyed<any_quota>;

// A storage of its own that takes no limits per call (only the interface
// quota_storage requires): a tracker on an any_quota_storage holding it
// cannot change its limits.
class bound_limits_storage {
 public:
  void bind(std::span<const armor::quota_window_layout> layouts) { inner_.bind(layouts); }
  armor::quota_consumption try_consume(const armor::quota_stamp& at, std::int64_t n) noexcept {
    return inner_.try_consume(at, n);
  }
  armor::quota_consumption charge(const armor::quota_stamp& at, std::int64_t n) noexcept {
    return inner_.charge(at, n);
  }
  void release(const armor::quota_stamp& at, std::int64_t n) noexcept { inner_.release(at, n); }
  std::int64_t read(std::size_t w, std::int64_t i, std::span<std::int64_t> out) const {
    return inner_.read(w, i, out);
  }

 private:
  armor::memory_quota_storage inner_;
};
static_assert(armor::quota_storage<bound_limits_storage>);
static_assert(!armor::detail::limits_quota_storage<bound_limits_storage>);

armor::quota_tracker_options per_day(std::int64_t limit) {
  return {.windows = {armor::quota_window::per_day(limit)}, .alerts = {}};
}

}  // namespace

TEST_CASE("quota_tracker on any_quota_storage (memory:): reconfigure keeps the counts, the new limit applies",
          "[reconfigure][any_quota_storage]") {
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{1h});
  any_quota q{two_windows(3, 10), clock, armor::make_quota_storage("memory:")};
  CHECK(q.storage().takes_limits());
  for (int i = 0; i < 3; ++i) REQUIRE(q.try_consume());
  CHECK_FALSE(q.try_consume());

  q.reconfigure(two_windows(5, 10));
  CHECK(q.options().windows[0].limit == 5);
  CHECK(q.try_consume(2));
  const auto refused = q.try_consume();
  CHECK(refused.status() == armor::quota_tracker_status::exhausted);
  CHECK(refused.limit() == 5);
  CHECK(refused.used() == 5);

  q.reconfigure(two_windows(2, 10));  // below the 5 counted
  CHECK(q.usage(0).used == 5);
  CHECK(q.usage(0).limit == 2);
  CHECK_FALSE(q.try_consume());
  clock.advance(1min);
  CHECK(q.try_consume(2));
  CHECK_FALSE(q.try_consume());

  // Refused, naming the option; the limits of the last good call stay.
  CHECK(names(refusal([&] { q.reconfigure(two_windows(0, 10)); }), "windows[0].limit"));
  CHECK(names(refusal([&] { q.reconfigure(per_day(3)); }), "number of windows"));
  CHECK(q.options().windows[0].limit == 2);
  CHECK(q.usage(1).limit == 10);
  CHECK(q.usage(1).used == 7);
}

TEST_CASE("quota_tracker on any_quota_storage: a storage inside that takes no limits is refused, naming it",
          "[reconfigure][any_quota_storage]") {
  armor::manual_clock clock;
  any_quota q{per_day(2), clock, armor::any_quota_storage(bound_limits_storage{})};
  CHECK_FALSE(q.storage().takes_limits());
  REQUIRE(q.try_consume());
  const std::string m = refusal([&] { q.reconfigure(per_day(5)); });
  CHECK(names(m, "armor::quota_tracker::reconfigure: storage"));
  CHECK(names(m, "takes no limits per call"));
  CHECK(q.options().windows[0].limit == 2);
  CHECK(q.try_consume());
  CHECK_FALSE(q.try_consume());  // still 2
  // A bad value is named first, as for any tracker.
  CHECK(names(refusal([&] { q.reconfigure(per_day(0)); }), "windows[0].limit"));
}

TEST_CASE("keyed quota trackers on any_quota_storage: reconfigure reaches every key held and every new key",
          "[reconfigure][any_quota_storage]") {
  static_assert(std::is_same_v<keyed_any_quota::options_type, armor::keyed_quota_options<armor::any_quota_storage>>);
  static_assert(std::is_same_v<keyed_any_quota::reconfigure_type, armor::quota_tracker_options>);
  static_assert(reconfigurable<keyed_any_quota, armor::quota_tracker_options>);
  static_assert(!reconfigurable<keyed_any_quota, armor::keyed_quota_options<armor::any_quota_storage>>);
  armor::manual_clock clock;
  clock.set(armor::manual_clock::time_point{1h});
  keyed_any_quota per_user{{.quota = two_windows(2, 10), .storage = armor::make_quota_storage("memory:")},
                           {.max_keys = 8, .shards = 4},
                           clock};
  for (int i = 0; i < 2; ++i) REQUIRE(per_user.get("ann")->try_consume());
  REQUIRE(per_user.get("bob")->try_consume());
  CHECK_FALSE(per_user.get("ann")->try_consume());

  per_user.reconfigure(two_windows(4, 10));
  CHECK(per_user.options().windows[0].limit == 4);
  CHECK(per_user.get("ann")->usage(0).used == 2);  // kept
  CHECK(per_user.get("ann")->usage(0).limit == 4);
  CHECK(per_user.get("ann")->try_consume(2));
  CHECK_FALSE(per_user.get("ann")->try_consume());
  CHECK(per_user.get("bob")->try_consume(3));
  CHECK_FALSE(per_user.get("bob")->try_consume());
  CHECK(per_user.get("cid")->usage(0).limit == 4);  // a new key
  CHECK(per_user.get("cid")->try_consume(4));
  CHECK_FALSE(per_user.get("cid")->try_consume());

  // Lowered under what ann holds: refused until the minute turns, the hour's count kept.
  per_user.reconfigure(two_windows(1, 5));
  CHECK_FALSE(per_user.get("ann")->try_consume());
  clock.advance(1min);
  CHECK(per_user.get("ann")->try_consume());
  const auto hour = per_user.get("ann")->try_consume();  // minute full again; hour 5 of 5
  CHECK(hour.status() == armor::quota_tracker_status::exhausted);
  CHECK(per_user.get("ann")->usage(1).used == 5);
  CHECK(per_user.get("ann")->usage(1).limit == 5);
}

TEST_CASE("keyed quota trackers on any_quota_storage: a refused reconfigure changes no key and no new key",
          "[reconfigure][any_quota_storage]") {
  armor::manual_clock clock;
  keyed_any_quota per_user{{.quota = per_day(2), .storage = armor::make_quota_storage("memory:")}, {}, clock};
  REQUIRE(per_user.get("ann")->try_consume());
  CHECK(names(refusal([&] { per_user.reconfigure(per_day(0)); }), "windows[0].limit"));
  CHECK(names(refusal([&] { per_user.reconfigure(two_windows(2, 10)); }), "number of windows"));
  auto shifted = per_day(5);
  shifted.utc_offset = 2h;
  CHECK(names(refusal([&] { per_user.reconfigure(shifted); }), "utc_offset"));
  auto alerting = per_day(5);
  alerting.alerts = {0.5};
  CHECK(names(refusal([&] { per_user.reconfigure(alerting); }), "alerts"));
  CHECK(per_user.options().windows[0].limit == 2);
  CHECK(per_user.get("ann")->usage(0).limit == 2);
  CHECK(per_user.get("new")->usage(0).limit == 2);

  // A storage that takes no limits: refused before any key changes.
  keyed_any_quota bound{{.quota = per_day(2), .storage = armor::any_quota_storage(bound_limits_storage{})}, {}, clock};
  REQUIRE(bound.get("ann")->try_consume(2));
  CHECK(names(refusal([&] { bound.reconfigure(per_day(5)); }), "armor::keyed<quota_tracker>::reconfigure: storage"));
  CHECK(bound.options().windows[0].limit == 2);
  CHECK_FALSE(bound.get("ann")->try_consume());
  CHECK(bound.get("bob")->usage(0).limit == 2);
}

TEST_CASE("quota_tracker::check_reconfigure checks without a tracker, as reconfigure does", "[reconfigure]") {
  const auto ok = two_windows(3, 10);
  CHECK(refusal([&] { quota::check_reconfigure(ok, two_windows(5, 1)); }).empty());
  CHECK(names(refusal([&] { quota::check_reconfigure(ok, two_windows(5, 0)); }), "windows[1].limit"));
  CHECK(names(refusal([&] { quota::check_reconfigure(ok, per_day(3)); }), "number of windows"));
  auto retry = ok;
  retry.retryable_within = -1s;
  CHECK(names(refusal([&] { quota::check_reconfigure(ok, retry); }), "retryable_within"));
}

// ---------------------------------------------------------------- load_shedder

TEST_CASE("load_shedder::reconfigure: a new ladder moves the level at once on the latest reading", "[reconfigure]") {
  armor::load_shedder<> s{{.resources = {{.name = "memory"}, {.name = "cpu"}}}};
  s.update(0, 0.85);  // warning (0.80); refuses nothing
  s.update(1, 0.10);
  CHECK(s.level() == armor::load_level::warning);
  CHECK(s.try_acquire(armor::priority::sheddable));

  const armor::load_ladder tight{.warning = {0.50, 0.45}, .degraded = {0.60, 0.55}, .shedding = {0.70, 0.65}};
  s.reconfigure({.resources = {{.name = "memory", .ladder = tight}, {.name = "cpu"}}, .retry_after_hint = 3s});
  CHECK(s.level() == armor::load_level::shedding);  // 0.85 >= 0.70
  CHECK(s.resource_level(0) == armor::load_level::shedding);
  CHECK(s.resource_level(1) == armor::load_level::normal);
  const auto refused = s.try_acquire(armor::priority::normal);
  CHECK_FALSE(refused);
  CHECK(refused.retry_after() == 3s);
  CHECK(s.try_acquire(armor::priority::critical));
  CHECK(s.stats().level_changes == 2);  // the update to warning, and this one

  // The new hysteresis: 0.66 holds shedding (exit 0.65), 0.60 leaves it for degraded.
  s.update(0, 0.66);
  CHECK(s.level() == armor::load_level::shedding);
  s.update(0, 0.60);
  CHECK(s.level() == armor::load_level::degraded);
  CHECK(s.options().resources[0].ladder.shedding.enter == 0.70);
}

TEST_CASE("load_shedder::reconfigure: new refusals apply to the level as it stands", "[reconfigure]") {
  armor::load_shedder<> s{{.resources = {{.name = "memory"}}}};
  s.update(0, 0.92);  // degraded: refuses sheddable by default
  CHECK_FALSE(s.try_acquire(armor::priority::sheddable));
  CHECK(s.try_acquire(armor::priority::normal));
  s.reconfigure({.resources = {{.name = "memory"}},
                 .refuses = {.degraded = armor::load_refusal::normal, .shedding = armor::load_refusal::all}});
  CHECK(s.level() == armor::load_level::degraded);
  CHECK_FALSE(s.try_acquire(armor::priority::normal));
  CHECK(s.try_acquire(armor::priority::critical));
  s.reconfigure({.resources = {{.name = "memory"}}, .refuses = {.degraded = armor::load_refusal::none}});
  CHECK(s.try_acquire(armor::priority::sheddable));
  s.set_mode(armor::load_mode::maintenance);  // the modes' refusals too
  CHECK_FALSE(s.try_acquire(armor::priority::normal));
}

TEST_CASE("load_shedder::reconfigure refuses a bad threshold or a change of resources; the old ones stay",
          "[reconfigure]") {
  armor::load_shedder<> s{{.resources = {{.name = "memory"}}}};
  s.update(0, 0.85);
  const armor::load_ladder inverted{.warning = {0.80, 0.90}};
  CHECK(names(refusal([&] { s.reconfigure({.resources = {{.name = "memory", .ladder = inverted}}}); }),
              "resources[0].ladder.warning.exit"));
  CHECK(names(refusal([&] {
                s.reconfigure({.resources = {{.name = "memory"}}, .refuses = {.shedding = armor::load_refusal::none}});
              }),
              "refuses.shedding"));
  CHECK(names(refusal([&] { s.reconfigure({.resources = {{.name = "memory"}}, .retry_after_hint = -1s}); }),
              "retry_after_hint"));
  CHECK(names(refusal([&] { s.reconfigure({.resources = {{.name = "cpu"}}}); }), "resources' names"));
  CHECK(names(refusal([&] { s.reconfigure({.resources = {{.name = "memory"}, {.name = "cpu"}}}); }),
              "resources (their number)"));
  CHECK(names(refusal([&] { s.reconfigure({.resources = {{.name = "memory"}}, .count_calls = true}); }),
              "count_calls"));
  CHECK(s.level() == armor::load_level::warning);
  CHECK(s.options().resources[0].ladder.warning.enter == 0.80);
  CHECK(s.try_acquire(armor::priority::sheddable));
}

// ---------------------------------------------------------------- adaptive_limit

TEST_CASE("adaptive_limit::reconfigure: the limit is clamped into the new bounds at once, calls inside stay",
          "[reconfigure]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{{.initial_limit = 20}, clock};
  const armor::timestamp t{};
  std::vector<armor::adaptive_limit_permit> held;
  for (int i = 0; i < 12; ++i) held.push_back(lim.try_acquire(t, armor::priority::critical).permit());
  REQUIRE(lim.in_flight() == 12);

  lim.reconfigure({.initial_limit = 10, .max_limit = 10, .normal_share = 0.5, .sheddable_share = 0.2});
  CHECK(lim.limit() == 10);
  CHECK(lim.limit(armor::priority::normal) == 5);
  CHECK(lim.limit(armor::priority::sheddable) == 2);
  CHECK(lim.in_flight() == 12);  // nobody evicted
  CHECK_FALSE(lim.try_acquire(t, armor::priority::critical));
  for (int i = 0; i < 3; ++i) held.pop_back();  // a dropped permit gives its slot back
  CHECK(lim.try_acquire(t, armor::priority::critical));  // 9 inside, below 10

  lim.reconfigure({.initial_limit = 40, .min_limit = 40, .max_limit = 100});
  CHECK(lim.limit() == 40);  // raised to the new minimum
  CHECK(lim.limit(armor::priority::normal) == 36);
  CHECK(lim.options().min_limit == 40);
  held.clear();
  CHECK(lim.idle(t));  // at the new initial_limit, nothing learned
}

TEST_CASE("adaptive_limit::reconfigure: window and min_samples apply to the window under way", "[reconfigure]") {
  armor::manual_clock clock;
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{
      {.initial_limit = 20, .window = 1s, .min_samples = 1}, clock};
  const armor::timestamp t0{};
  lim.record(lim.try_acquire(t0).permit(), armor::verdict::success(), t0 + 10ms);
  lim.reconfigure({.initial_limit = 20, .window = 10s, .min_samples = 1});
  lim.update(t0 + 2s);
  CHECK(lim.stats().windows == 0);  // the window now lasts 10 s
  lim.reconfigure({.initial_limit = 20, .window = 10s, .min_samples = 5});
  lim.update(t0 + 11s);
  CHECK(lim.stats().windows == 0);  // one sample, five needed
  lim.reconfigure({.initial_limit = 20, .window = 1s, .min_samples = 1});
  lim.update(t0 + 11s);
  CHECK(lim.stats().windows == 1);
}

TEST_CASE("adaptive_limit::reconfigure refuses bad bounds or a change of shape; the old options stay",
          "[reconfigure]") {
  armor::adaptive_limit<armor::gradient_limit, armor::manual_clock> lim{{.initial_limit = 20}, armor::manual_clock{}};
  CHECK(names(refusal([&] { lim.reconfigure({.initial_limit = 5, .min_limit = 10, .max_limit = 8}); }), "min_limit"));
  CHECK(names(refusal([&] { lim.reconfigure({.initial_limit = 20, .max_limit = 1u << 21}); }), "max_limit"));
  CHECK(names(refusal([&] { lim.reconfigure({.initial_limit = 20, .sheddable_share = 0.95}); }), "sheddable_share"));
  CHECK(names(refusal([&] { lim.reconfigure({.initial_limit = 20, .count_calls = true}); }), "count_calls"));
  CHECK(names(refusal([&] { lim.reconfigure({.initial_limit = 20, .max_queue = 4}); }), "max_queue"));
  CHECK(lim.limit() == 20);
  CHECK(lim.limit(armor::priority::normal) == 18);
  CHECK(lim.options().max_limit == 1000);
}

// ---------------------------------------------------------------- adaptive_throttle

namespace {

// Draws 0: a decision refuses whenever the refusal probability is above 0.
struct zero_rng {
  std::uint64_t operator()() const noexcept { return 0; }
};

}  // namespace

TEST_CASE("adaptive_throttle::reconfigure: k, min_requests and the cap weigh the window as it is", "[reconfigure]") {
  armor::manual_clock clock;
  armor::adaptive_throttle<armor::manual_clock, zero_rng> th{{.window = 10s, .buckets = 10, .min_requests = 100},
                                                             clock};
  const armor::timestamp t{};
  // 20 requests, 5 accepted: p = (20 - 2 * 5) / 21 once min_requests allows it.
  for (int i = 0; i < 20; ++i) {
    auto d = th.try_acquire(t);
    REQUIRE(d);
    th.record(std::move(d).permit(), i < 5 ? armor::verdict::success() : armor::verdict::failure());
  }
  CHECK(th.rejection_probability(t) == 0.0);  // 20 < 100
  th.reconfigure({.k = 2, .window = 10s, .buckets = 10});
  CHECK(th.rejection_probability(t) == Approx(10.0 / 21.0));
  CHECK_FALSE(th.try_acquire(t));  // counted as a request: 21, 5
  th.reconfigure({.k = 5, .window = 10s, .buckets = 10});
  CHECK(th.rejection_probability(t) == 0.0);  // 21 - 25 < 0
  CHECK(th.try_acquire(t));
  th.reconfigure({.k = 1, .window = 10s, .buckets = 10, .max_rejection_probability = 0.25});
  CHECK(th.rejection_probability(t) == 0.25);  // (22 - 5) / 23 capped
  CHECK(th.options().max_rejection_probability == 0.25);
}

TEST_CASE("adaptive_throttle::reconfigure: a new accept_rule judges the next verdicts", "[reconfigure]") {
  armor::manual_clock clock;
  armor::adaptive_throttle<armor::manual_clock, zero_rng> th{{.window = 10s, .buckets = 10, .min_requests = 1}, clock};
  const armor::timestamp t{};
  th.reconfigure({.window = 10s,
                  .buckets = 10,
                  .min_requests = 1,
                  .accept_rule = [](const armor::verdict&) noexcept { return armor::health::healthy; }});
  th.record(th.try_acquire(t).permit(), armor::verdict::failure());
  CHECK(th.stats(t).accepts == 1);  // the failure was an accept by the new rule
}

TEST_CASE("adaptive_throttle::reconfigure refuses a bad value or a change of window; the old ones stay",
          "[reconfigure]") {
  armor::adaptive_throttle<armor::manual_clock, zero_rng> th{{.k = 3}, armor::manual_clock{}};
  CHECK(names(refusal([&] { th.reconfigure({.k = 0.5}); }), "k must"));
  CHECK(names(refusal([&] { th.reconfigure({.max_rejection_probability = 0}); }), "max_rejection_probability"));
  CHECK(names(refusal([&] { th.reconfigure({.window = 1min}); }), "window"));
  CHECK(names(refusal([&] { th.reconfigure({.buckets = 10}); }), "buckets"));
  CHECK(th.options().k == 3);
  CHECK(th.rejection_probability(20, 5) == 5.0 / 21.0);
}

// ---------------------------------------------------------------- keyed


TEST_CASE("keyed::reconfigure: every key held and every new key get the new options", "[reconfigure]") {
  armor::manual_clock clock;
  armor::keyed<armor::fixed_window<armor::manual_clock>> per_ip{{.limit = 2, .window = 1min}, {}, clock};
  const armor::timestamp t{1s};
  for (int i = 0; i < 2; ++i) REQUIRE(per_ip.get("a")->try_acquire(1, t));
  CHECK_FALSE(per_ip.get("a")->try_acquire(1, t));

  per_ip.reconfigure({.limit = 3, .window = 1min});
  CHECK(per_ip.options().limit == 3);
  CHECK(per_ip.get("a")->limit() == 3);
  CHECK(per_ip.get("a")->try_acquire(1, t));  // its 2 units kept, one more allowed
  CHECK_FALSE(per_ip.get("a")->try_acquire(1, t));
  CHECK(per_ip.get("b")->limit() == 3);  // a new key
  CHECK(per_ip.stats().keys == 2);
}

TEST_CASE("keyed::reconfigure of quota trackers: every key's usage is kept", "[reconfigure]") {
  armor::manual_clock clock;
  armor::keyed<armor::quota_tracker<armor::manual_clock>> per_user{
      {.windows = {armor::quota_window::per_day(3)}, .alerts = {}}, {}, clock};
  for (int i = 0; i < 3; ++i) REQUIRE(per_user.get("u1")->try_consume());
  REQUIRE(per_user.get("u2")->try_consume());
  per_user.reconfigure({.windows = {armor::quota_window::per_day(4)}, .alerts = {}});
  CHECK(per_user.get("u1")->try_consume());
  CHECK_FALSE(per_user.get("u1")->try_consume());
  CHECK(per_user.get("u2")->usage(0).used == 1);
  CHECK(per_user.get("u2")->usage(0).limit == 4);
}

TEST_CASE("keyed::reconfigure reaches the breakers, bulkheads, sliding windows and throttles of every key",
          "[reconfigure]") {
  armor::manual_clock clock;
  const armor::timestamp t{1s};

  armor::keyed<armor::circuit_breaker<armor::manual_clock>> per_host{{.failure_threshold = 2}, {}, clock};
  REQUIRE(per_host.get("a")->options().failure_threshold == 2);
  per_host.reconfigure({.failure_threshold = 4, .open_for = 3s});
  CHECK(per_host.get("a")->options().failure_threshold == 4);
  CHECK(per_host.get("a")->open_time(1) == 3s);
  CHECK(per_host.get("b")->options().failure_threshold == 4);
  CHECK(names(refusal([&] { per_host.reconfigure({.failure_threshold = 4, .open_for = -1s}); }), "open_for"));
  CHECK(per_host.get("a")->open_time(1) == 3s);

  armor::keyed<armor::bulkhead<>> per_tenant{{.max_concurrent = 1}};
  auto held = per_tenant.get("a")->try_acquire();
  REQUIRE(held);
  CHECK_FALSE(per_tenant.get("a")->try_acquire());
  per_tenant.reconfigure({.max_concurrent = 2});
  CHECK(per_tenant.get("a")->try_acquire());  // the one held stays inside; a second fits
  CHECK(per_tenant.get("b")->stats().max_concurrent == 2);
  CHECK(names(refusal([&] { per_tenant.reconfigure({.max_concurrent = 0}); }), "max_concurrent"));
  CHECK(per_tenant.get("a")->stats().max_concurrent == 2);

  armor::keyed<armor::sliding_window<armor::manual_clock>> per_ip{{.limit = 2, .window = 4s, .segments = 4}, {}, clock};
  for (int i = 0; i < 2; ++i) REQUIRE(per_ip.get("a")->try_acquire(1, t));
  CHECK_FALSE(per_ip.get("a")->try_acquire(1, t));
  per_ip.reconfigure({.limit = 3, .window = 4s, .segments = 4});
  const auto d = per_ip.get("a")->try_acquire(1, t);
  CHECK(d);
  CHECK(d.limit() == 3);
  CHECK(per_ip.get("b")->try_acquire(1, t).limit() == 3);
  CHECK(names(refusal([&] { per_ip.reconfigure({.limit = 3, .window = 8s, .segments = 4}); }), "window"));
  CHECK(per_ip.get("a")->try_acquire(1, t).limit() == 3);
}

TEST_CASE("token_bucket::reconfigure: rate and burst from whole options, the tokens kept; fixed options refused",
          "[reconfigure]") {
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> b{{.rate = {1, 1s}, .burst = 4}, clock};
  REQUIRE(b.try_acquire(3));  // 1 left
  b.reconfigure({.rate = {2, 1s}, .burst = 6});
  CHECK(b.rate().per == 500ms);  // 2 a second, in lowest terms
  CHECK(b.burst() == 6);
  CHECK(b.available() == 1);  // kept, none added
  clock.advance(1s);
  CHECK(b.available() == 3);  // the new rate refills
  b.reconfigure({.rate = {2, 1s}, .burst = 2});
  CHECK(b.available() == 2);  // above the new burst: dropped
  CHECK(names(refusal([&] { b.reconfigure({.rate = {0, 1s}, .burst = 2}); }), "rate.count"));
  CHECK(names(refusal([&] { b.reconfigure({.rate = {2, 1s}, .burst = 0}); }), "burst"));
  CHECK(names(refusal([&] { b.reconfigure({.rate = {2, 1s}, .burst = 2, .max_wait = 1s}); }), "max_wait"));
  CHECK(names(refusal([&] { b.reconfigure({.rate = {2, 1s}, .burst = 2, .count_calls = true}); }), "count_calls"));
  CHECK(names(refusal([&] {
                b.reconfigure({.rate = {2, 1s}, .burst = 2, .cost = armor::cost_source::per_call()});
              }),
              "cost"));
  CHECK(b.rate().per == 500ms);  // 2 a second, in lowest terms
  CHECK(b.burst() == 2);
}

TEST_CASE("keyed<token_bucket>::reconfigure: every key held keeps its tokens under the new rate; new keys get it",
          "[reconfigure]") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_ip{{.rate = {1, 1s}, .burst = 2}, {}, clock};
  const armor::timestamp t0 = armor::to_timestamp(clock.now());
  REQUIRE(per_ip.get("a")->try_acquire(2, t0));
  CHECK_FALSE(per_ip.get("a")->try_acquire(1, t0));
  per_ip.reconfigure({.rate = {5, 1s}, .burst = 10});
  CHECK(per_ip.options().burst == 10);
  CHECK(per_ip.get("a")->burst() == 10);
  CHECK_FALSE(per_ip.get("a")->try_acquire(1, t0));  // no token added
  clock.advance(1s);
  CHECK(per_ip.get("a")->try_acquire(5));  // refilled at 5 a second
  CHECK(per_ip.get("b")->try_acquire(10));  // a new key: the new burst, full
  CHECK(names(refusal([&] { per_ip.reconfigure({.rate = {5, 1s}, .burst = 10, .max_wait = 1s}); }), "max_wait"));
  CHECK(per_ip.options().max_wait == 0s);
  CHECK(per_ip.get("c")->burst() == 10);
}

TEST_CASE("keyed<shadow<P>>::reconfigure: every key's shadowed policy takes the new limit", "[reconfigure][shadow]") {
  armor::manual_clock clock;
  armor::keyed<armor::shadow<armor::fixed_window<armor::manual_clock>>> trial{{.limit = 2, .window = 1min}, {}, clock};
  const armor::timestamp t{1s};
  for (int i = 0; i < 2; ++i) REQUIRE_FALSE(trial.get("a")->try_acquire(1, t).would_refuse());
  CHECK(trial.get("a")->try_acquire(1, t).would_refuse());  // let through, counted
  trial.reconfigure({.limit = 5, .window = 1min});
  CHECK(trial.get("a")->policy().limit() == 5);
  CHECK_FALSE(trial.get("a")->try_acquire(1, t).would_refuse());  // 4 of 5
  CHECK(trial.get("b")->policy().limit() == 5);
  CHECK(names(refusal([&] { trial.reconfigure({.limit = 5, .window = 2min}); }), "window"));
  CHECK(trial.get("a")->policy().limit() == 5);
}

TEST_CASE("keyed::reconfigure refuses what P refuses, before changing anything", "[reconfigure]") {
  armor::manual_clock clock;
  armor::keyed<armor::fixed_window<armor::manual_clock>> per_ip{{.limit = 2, .window = 1min}, {}, clock};
  REQUIRE(per_ip.get("a")->try_acquire(1, armor::timestamp{}));
  CHECK(names(refusal([&] { per_ip.reconfigure({.limit = 0, .window = 1min}); }), "limit"));
  CHECK(names(refusal([&] { per_ip.reconfigure({.limit = 5, .window = 2min}); }), "window"));
  CHECK(per_ip.options().limit == 2);
  CHECK(per_ip.get("a")->limit() == 2);
  CHECK(per_ip.get("b")->limit() == 2);
  // A policy without reconfigure(): keyed has none either.
  static_assert(!reconfigurable<armor::keyed<armor::latency_recorder, armor::latency_recorder_options, armor::manual_clock>,
                                armor::latency_recorder_options>);
  static_assert(reconfigurable<armor::keyed<armor::fixed_window<armor::manual_clock>>, armor::fixed_window_options>);
  static_assert(reconfigurable<armor::keyed<armor::token_bucket<armor::manual_clock>>, armor::token_bucket_options>);
}
