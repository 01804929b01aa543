// armor::bulkhead: the concurrency limit, its queue (arrival order, bounded
// waits, abandonment), permits released on every path, and keyed<bulkhead>.
// Single-threaded, on manual_clock; threads are in tests/stress/.
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/deadline.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/stats.hpp>

#include "armor_catch.hpp"
#include "test_policies.hpp"

#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct boom : std::runtime_error {
  boom() : std::runtime_error("boom") {}
};

// A waiter for the policy-level tests: counts its wake-ups.
struct test_waiter : armor::queue_waiter {
  test_waiter() : armor::queue_waiter(&on_wake) {}
  int wakes = 0;
  static void on_wake(armor::queue_waiter& w) noexcept { ++static_cast<test_waiter&>(w).wakes; }
};

std::string config_error(const armor::bulkhead_options& o) {
  try {
    armor::bulkhead b{o};
  } catch (const armor::error& e) {
    if (e.code() == armor::errc::invalid_argument) return e.what();
    return "wrong code";
  }
  return "";
}

}  // namespace

TEST_CASE("bulkhead options are validated, naming the option") {
  CHECK(config_error({}).empty());
  CHECK(config_error({.max_concurrent = 0}).find("max_concurrent") != std::string::npos);
  CHECK(config_error({.max_concurrent = 1u << 31}).find("max_concurrent") != std::string::npos);
  CHECK(config_error({.max_concurrent = 1, .max_queue = 1u << 31}).find("max_queue") != std::string::npos);
  CHECK(config_error({.max_concurrent = 1, .max_queue = 0, .max_wait = -1ms}).find("max_wait") != std::string::npos);
  CHECK(config_error({.max_concurrent = 1, .max_queue = 3, .max_wait = 0ms}).find("max_wait") != std::string::npos);
  CHECK(config_error({.max_concurrent = 1, .max_queue = 0, .max_wait = 0ms}).empty());  // no queue: unused
  const armor::bulkhead defaults;
  CHECK(defaults.max_concurrent() == 100);
  CHECK(defaults.max_queue() == 0);
  CHECK(defaults.max_wait() == 1s);
}

TEST_CASE("try_acquire admits max_concurrent holders and refuses the next; a release frees a slot") {
  armor::bulkhead b{{.max_concurrent = 3}};
  std::vector<armor::bulkhead_permit> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(b.try_acquire().permit());
    CHECK(static_cast<bool>(held.back()));
  }
  CHECK(b.in_use() == 3);
  CHECK(b.available() == 0);
  auto refused = b.try_acquire();
  CHECK_FALSE(refused);
  CHECK_FALSE(refused.permit());
  CHECK(b.in_use() == 3);  // a refusal writes nothing
  held.pop_back();          // dropping a permit gives its slot back
  CHECK(b.in_use() == 2);
  auto again = b.try_acquire();
  CHECK(static_cast<bool>(again));
  again.permit().release();
  CHECK_FALSE(again.permit());
  again.permit().release();  // releasing twice gives back nothing more
  CHECK(b.in_use() == 2);
  held.clear();
  CHECK(b.in_use() == 0);
  CHECK(b.available() == 3);
}

TEST_CASE("try_acquire answers an armor::decision: the permit when granted; bulkhead_full, no known wait, when refused") {
  static_assert(std::is_same_v<decltype(std::declval<armor::bulkhead<>&>().try_acquire()),
                               armor::decision<armor::bulkhead_permit>>);
  static_assert(armor::decision_like<armor::decision<armor::bulkhead_permit>>);
  armor::bulkhead b{{.max_concurrent = 1}};

  auto granted = b.try_acquire();
  REQUIRE(granted);
  CHECK_FALSE(granted.code());
  CHECK(granted.retry_after() == std::chrono::nanoseconds::zero());
  CHECK(static_cast<bool>(granted.permit()));
  CHECK(b.in_use() == 1);

  auto refused = b.try_acquire();
  CHECK_FALSE(refused);
  CHECK(refused.code() == armor::errc::bulkhead_full);
  CHECK(refused.code() == std::errc::resource_unavailable_try_again);
  CHECK(refused.retry_after() == std::chrono::nanoseconds::max());  // a bulkhead cannot know when a slot frees
  CHECK_FALSE(refused.permit());
  CHECK(b.in_use() == 1);

  // The permit moves out of the decision and holds the slot on its own.
  armor::bulkhead_permit held = std::move(granted).permit();
  CHECK(static_cast<bool>(held));
  CHECK(b.in_use() == 1);
  held.release();
  CHECK(b.in_use() == 0);

  // A granted decision dropped with its permit inside gives the slot back.
  {
    const auto dropped = b.try_acquire();
    CHECK(static_cast<bool>(dropped));
    CHECK(b.in_use() == 1);
  }
  CHECK(b.in_use() == 0);
}

TEST_CASE("bulkhead enums have to_string; bulkhead_stats describes its four gauges and two counters") {
  CHECK(armor::to_string(armor::bulkhead_event_kind::rejected) == "rejected");
  CHECK(armor::to_string(armor::bulkhead_event_kind::queued) == "queued");
  CHECK(armor::to_string(armor::bulkhead_event_kind::abandoned) == "abandoned");
  static_assert(armor::to_string(armor::bulkhead_event_kind::queued) == "queued");

  static_assert(armor::described_stats<armor::bulkhead_stats>);
  armor::bulkhead b{{.max_concurrent = 3, .max_queue = 2, .max_wait = 1s}};
  auto h = b.try_acquire();
  const armor::bulkhead_stats s = b.stats();
  std::vector<std::string> seen;
  armor::detail::for_each_field<armor::bulkhead_stats>([&](const auto& f) {
    const bool total = std::string_view(f.metric).ends_with("_total");
    CHECK(f.type == (total ? armor::metric_type::counter : armor::metric_type::gauge));
    CHECK_FALSE(f.counted);  // always kept, refusals included
    CHECK(armor::detail::exported(f, s));
    seen.push_back(std::string(f.name) + "=" + std::to_string(s.*(f.member)) + " " + std::string(f.metric));
  });
  CHECK(seen == std::vector<std::string>{"in_use=1 armor_bulkhead_in_use", "queued=0 armor_bulkhead_queued",
                                         "max_concurrent=3 armor_bulkhead_max_concurrent",
                                         "max_queue=2 armor_bulkhead_max_queue",
                                         "rejected=0 armor_bulkhead_rejected_total",
                                         "abandoned=0 armor_bulkhead_abandoned_total"});
}

TEST_CASE("a full bulkhead without a queue fails fast with bulkhead_full and does not call the operation") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 2}};
  auto p = armor::pipeline{clock, std::ref(b)};
  auto a = b.try_acquire().permit();
  auto c = b.try_acquire().permit();
  int calls = 0;
  auto r = p.try_execute([&] { return ++calls; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(r.code() == std::errc::resource_unavailable_try_again);
  CHECK_FALSE(r.retry_after().has_value());
  CHECK_THROWS_AS(p.execute([&] { return ++calls; }), armor::error);
  CHECK(calls == 0);
  CHECK(clock.now().time_since_epoch() == 0ns);  // nothing waited
  a.release();
  CHECK(p.execute([&] { return ++calls; }) == 1);
  CHECK(b.in_use() == 1);  // only `c` is left inside
}

TEST_CASE("retry_after_hint: a refusal says when to try again, so a server can send Retry-After") {
  CHECK(config_error({.retry_after_hint = -1ms}).find("retry_after_hint") != std::string::npos);
  CHECK(armor::bulkhead{}.retry_after_hint() == 0ns);  // none by default
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1, .retry_after_hint = 250ms}};
  CHECK(b.retry_after_hint() == 250ms);
  auto holder = b.try_acquire().permit();

  const auto refused = b.try_acquire();
  CHECK(refused.code() == armor::errc::bulkhead_full);
  CHECK(refused.retry_after() == 250ms);

  // In a pipeline: the failure carries it (the default carries none, above).
  auto p = armor::pipeline{clock, std::ref(b)};
  const auto r = p.try_execute([] { return 1; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(r.retry_after() == std::optional<std::chrono::nanoseconds>{250ms});

  // With a queue: a full queue, and a wait that ends unserved after max_wait,
  // say the same; a wait the deadline ended says nothing (it is the
  // caller's deadline, not the bulkhead, that refused).
  armor::bulkhead q{{.max_concurrent = 1, .max_queue = 1, .max_wait = 100ms, .retry_after_hint = 2s}};
  auto qp = armor::pipeline{clock, std::ref(q)};
  auto inside = q.try_acquire().permit();
  const auto timed_out = qp.try_execute([] { return 1; });
  CHECK(timed_out.code() == armor::errc::bulkhead_full);
  CHECK(timed_out.retry_after() == std::optional<std::chrono::nanoseconds>{2s});
  armor::context ctx(armor::timestamp{});
  test_waiter w;
  auto place = q.enqueue(ctx, w);  // takes the only place in the queue
  REQUIRE(place.kind == armor::admission_kind::queued);
  const auto full = qp.try_execute([] { return 1; });
  CHECK(full.code() == armor::errc::bulkhead_full);
  CHECK(full.retry_after() == std::optional<std::chrono::nanoseconds>{2s});
  place.permit.release();
  const auto cut = qp.try_execute([] { return 1; }, {.timeout = 50ms});
  CHECK(cut.code() == armor::errc::deadline_exceeded);
  CHECK_FALSE(cut.retry_after().has_value());
}

TEST_CASE("the operation runs inside the bulkhead and its slot comes back on every path") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1}};
  auto p = armor::pipeline{clock, std::ref(b)};
  std::uint32_t inside_during = 0;

  SECTION("success") {
    CHECK(p.execute([&] {
      inside_during = b.in_use();
      return 5;
    }) == 5);
  }
  SECTION("an exception") {
    CHECK_THROWS_AS(p.execute([&]() -> int {
      inside_during = b.in_use();
      throw boom();
    }),
                    boom);
    auto r = p.try_execute([&]() -> int { throw boom(); });
    CHECK(r.code() == armor::errc::operation_failed);
  }
  SECTION("an error value") {
    const std::error_code ec = p.execute([&] {
      inside_during = b.in_use();
      return std::make_error_code(std::errc::connection_refused);
    });
    CHECK(ec == std::errc::connection_refused);
  }
  SECTION("void") {
    p.execute([&] { inside_during = b.in_use(); });
  }
  CHECK(inside_during == 1);
  CHECK(b.in_use() == 0);
  CHECK(b.queued() == 0);
}

TEST_CASE("a retry layer inside the bulkhead keeps one slot; outside it, each attempt takes one") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1}};
  const armor::backoff_options retry{.max_attempts = 3, .initial = 10ms, .jitter = armor::jitter_mode::none};
  std::vector<std::uint32_t> seen;
  auto failing_twice = [&](const armor::context& ctx) {
    seen.push_back(b.in_use());
    if (ctx.attempt() < 3) throw boom();
    return 1;
  };

  auto slot_outside = armor::pipeline{clock, std::ref(b), armor::backoff{retry}};
  CHECK(slot_outside.execute(failing_twice) == 1);
  CHECK(seen == std::vector<std::uint32_t>{1, 1, 1});
  CHECK(b.in_use() == 0);

  // Outside: while another holder keeps the only slot, the attempt is
  // refused, and the call ends refused at once (a full bulkhead gives no
  // retry_after, so the retry layer does not wait for it).
  seen.clear();
  auto slot_per_attempt = armor::pipeline{clock, armor::backoff{retry}, std::ref(b)};
  auto other = b.try_acquire().permit();
  auto r = slot_per_attempt.try_execute(failing_twice);
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(seen.empty());
  other.release();
  CHECK(slot_per_attempt.execute(failing_twice) == 1);
  CHECK(b.in_use() == 0);
}

TEST_CASE("queued callers are served in arrival order; a newcomer never overtakes them") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 3, .max_wait = 1s}};
  armor::context ctx(armor::timestamp{});
  auto inside = b.admit(ctx);
  REQUIRE(inside.kind == armor::admission_kind::admitted);

  auto full = b.admit(ctx);
  CHECK(full.kind == armor::admission_kind::queue);  // invited to queue
  CHECK(full.code == armor::errc::bulkhead_full);

  test_waiter w1;
  test_waiter w2;
  test_waiter w3;
  test_waiter w4;
  auto q1 = b.enqueue(ctx, w1);
  auto q2 = b.enqueue(ctx, w2);
  auto q3 = b.enqueue(ctx, w3);
  REQUIRE(q1.kind == armor::admission_kind::queued);
  REQUIRE(q2.kind == armor::admission_kind::queued);
  REQUIRE(q3.kind == armor::admission_kind::queued);
  CHECK(q1.delay == 1s);
  CHECK(q1.code == armor::errc::bulkhead_full);
  CHECK(b.queued() == 3);
  CHECK(b.available() == 0);

  // The queue is full: the fourth is refused at once.
  auto q4 = b.enqueue(ctx, w4);
  CHECK(q4.kind == armor::admission_kind::rejected);
  CHECK(q4.code == armor::errc::bulkhead_full);

  // The holder leaves: its slot goes to the head of the queue, not to a newcomer.
  b.settle(ctx, std::move(inside.permit), armor::verdict::success());
  CHECK(w1.wakes == 1);
  CHECK(w2.wakes == 0);
  CHECK(b.in_use() == 1);
  CHECK(b.queued() == 2);
  CHECK_FALSE(b.try_acquire());
  CHECK(b.admit(ctx).kind == armor::admission_kind::queue);

  // w2 gives up: it leaves the queue unserved, and w3 is next.
  CHECK_FALSE(q2.permit.leave_queue());
  CHECK_FALSE(q2.permit);
  CHECK(b.queued() == 1);

  CHECK(q1.permit.leave_queue());  // w1 was granted: it now holds the slot
  CHECK(static_cast<bool>(q1.permit));
  CHECK_FALSE(q1.permit.queued());
  b.settle(ctx, std::move(q1.permit), armor::verdict::success());
  CHECK(w3.wakes == 1);
  CHECK(w2.wakes == 0);
  CHECK(b.queued() == 0);
  CHECK(b.in_use() == 1);
  CHECK(q3.permit.leave_queue());
  q3.permit.release();
  CHECK(b.in_use() == 0);
  CHECK(b.idle(armor::timestamp{}));
}

TEST_CASE("a queued permit dropped unserved leaves the queue; one granted meanwhile gives its slot on") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 4, .max_wait = 1s}};
  armor::context ctx(armor::timestamp{});
  auto holder = b.try_acquire().permit();
  test_waiter w1;
  test_waiter w2;
  test_waiter w3;
  std::optional<armor::admission<armor::bulkhead_permit>> q1{b.enqueue(ctx, w1)};
  std::optional<armor::admission<armor::bulkhead_permit>> q2{b.enqueue(ctx, w2)};
  auto q3 = b.enqueue(ctx, w3);
  CHECK(b.queued() == 3);

  q2.reset();  // dropped while waiting (a destroyed coroutine): out of the queue
  CHECK(b.queued() == 2);

  holder.release();  // handed to w1
  CHECK(w1.wakes == 1);
  q1.reset();  // w1 was granted but its permit is dropped without leave_queue: the slot goes on to w3
  CHECK(w3.wakes == 1);
  CHECK(w2.wakes == 0);
  CHECK(b.queued() == 0);
  CHECK(b.in_use() == 1);
  q3.permit.release();  // granted, dropped without leave_queue: back to free
  CHECK(b.in_use() == 0);
  CHECK(b.available() == 1);
}

TEST_CASE("enqueue takes a slot at once when one came free after admit") {
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 1, .max_wait = 1s}};
  armor::context ctx(armor::timestamp{});
  auto holder = b.try_acquire().permit();
  REQUIRE(b.admit(ctx).kind == armor::admission_kind::queue);
  holder.release();
  test_waiter w;
  auto q = b.enqueue(ctx, w);
  CHECK(q.kind == armor::admission_kind::admitted);
  CHECK(b.in_use() == 1);
  CHECK(b.queued() == 0);
  CHECK(w.wakes == 0);
}

TEST_CASE("in a pipeline on a manual clock, a queued call waits max_wait and then fails with bulkhead_full") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 2, .max_wait = 200ms}};
  auto p = armor::pipeline{clock, std::ref(b)};
  auto holder = b.try_acquire().permit();
  int calls = 0;
  auto r = p.try_execute([&] { return ++calls; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(clock.now().time_since_epoch() == 200ms);  // waited exactly max_wait, in virtual time
  CHECK(calls == 0);
  CHECK(b.queued() == 0);  // it left the queue
  CHECK(b.in_use() == 1);
}

TEST_CASE("a queued wait is cut short by the deadline: deadline_exceeded at the deadline") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 2, .max_wait = 10s}};
  auto p = armor::pipeline{clock, armor::deadline{300ms}, std::ref(b)};
  auto holder = b.try_acquire().permit();
  auto r = p.try_execute([] { return 1; });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::deadline_exceeded);
  CHECK(clock.now().time_since_epoch() == 300ms);
  CHECK(b.queued() == 0);

  // A per-call timeout does the same.
  auto q = armor::pipeline{clock, std::ref(b)};
  auto r2 = q.try_execute([] { return 1; }, {.timeout = 40ms});
  CHECK(r2.code() == armor::errc::deadline_exceeded);
  CHECK(clock.now().time_since_epoch() == 340ms);
}

TEST_CASE("a call that finds the queue full is refused at once, without waiting") {
  armor::manual_clock clock;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 1, .max_wait = 1s}};
  auto p = armor::pipeline{clock, std::ref(b)};
  armor::context ctx(armor::timestamp{});
  auto holder = b.try_acquire().permit();
  test_waiter w;
  auto q = b.enqueue(ctx, w);  // takes the only place in the queue
  REQUIRE(q.kind == armor::admission_kind::queued);
  auto r = p.try_execute([] { return 1; });
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(clock.now().time_since_epoch() == 0ns);
}

TEST_CASE("layers outside a bulkhead see its refusal as a rejection") {
  armor::manual_clock clock;
  armor_test::verdict_recorder outer;
  armor::bulkhead b{{.max_concurrent = 1}};
  auto p = armor::pipeline{clock, std::ref(outer), std::ref(b)};
  auto holder = b.try_acquire().permit();
  (void)p.try_execute([] { return 1; });
  REQUIRE(outer.verdicts.size() == 1);
  CHECK(outer.verdicts[0].kind == armor::outcome::rejected);
  CHECK(outer.verdicts[0].code == armor::errc::bulkhead_full);
  CHECK(outer.verdicts[0].retryable);
}

TEST_CASE("keyed<bulkhead> limits each key on its own and evicts only idle keys") {
  armor::manual_clock clock;
  // keyed<bulkhead> alone uses steady_clock; this pipeline runs on a manual clock.
  armor::keyed<armor::bulkhead<>, armor::bulkhead_options, armor::manual_clock> per_upstream{
      {.max_concurrent = 2}, {.max_keys = 16}, clock};
  static_assert(std::is_same_v<armor::keyed<armor::bulkhead<>>::clock_type, armor::steady_clock>);
  auto p = armor::pipeline{clock, std::ref(per_upstream)};

  // Standalone permits do not pin the key: the handle does.
  auto api_a = per_upstream.get("api.a");
  auto a1 = api_a->try_acquire().permit();
  auto a2 = api_a->try_acquire().permit();
  CHECK(p.try_execute([] { return 1; }, {.key = "api.a"}).code() == armor::errc::bulkhead_full);
  CHECK(p.execute([] { return 2; }, {.key = "api.b"}) == 2);  // another upstream is not affected
  CHECK(per_upstream.get("api.a")->in_use() == 2);
  CHECK(per_upstream.get("api.b")->in_use() == 0);

  // api.b is idle and goes; api.a has callers inside and stays.
  CHECK(per_upstream.size() == 2);
  CHECK(per_upstream.evict_idle(armor::timestamp{}) == 1);
  CHECK(per_upstream.find("api.a"));
  CHECK_FALSE(per_upstream.find("api.b"));
  a1.release();
  a2.release();
  api_a.reset();
  CHECK(per_upstream.evict_idle(armor::timestamp{}) == 1);
  CHECK(per_upstream.size() == 0);
}

TEST_CASE("keyed<bulkhead> with a queue: the key's callers queue, and give up after max_wait") {
  armor::manual_clock clock;
  armor::keyed<armor::bulkhead<>, armor::bulkhead_options, armor::manual_clock> per_upstream{
      {.max_concurrent = 1, .max_queue = 2, .max_wait = 80ms}, {.max_keys = 16}, clock};
  static_assert(armor::queueing_policy<decltype(per_upstream)>);
  auto p = armor::pipeline{clock, std::ref(per_upstream)};
  auto api_a = per_upstream.get("api.a");  // pins the key while `holder` lives
  auto holder = api_a->try_acquire().permit();
  auto r = p.try_execute([] { return 1; }, {.key = "api.a"});
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(clock.now().time_since_epoch() == 80ms);
  CHECK(per_upstream.get("api.a")->queued() == 0);
  CHECK(p.execute([] { return 2; }, {.key = "api.b"}) == 2);
  CHECK(clock.now().time_since_epoch() == 80ms);

  // Policy level: a queued keyed permit that was granted holds the slot.
  armor::context ctx(armor::timestamp{}, {.key = "api.a"});
  REQUIRE(per_upstream.admit(ctx).kind == armor::admission_kind::queue);
  test_waiter w;
  auto q = per_upstream.enqueue(ctx, w);
  REQUIRE(q.kind == armor::admission_kind::queued);
  holder.release();
  CHECK(w.wakes == 1);
  CHECK(q.permit.leave_queue());
  CHECK(per_upstream.get("api.a")->in_use() == 1);
  per_upstream.settle(ctx, std::move(q.permit), armor::verdict::success());
  CHECK(per_upstream.get("api.a")->in_use() == 0);
}

// ---------------------------------------------------------------------------
// The listener (bulkhead<L>).

namespace {

// Records what it hears (single-threaded tests only).
struct event_log {
  std::vector<armor::bulkhead_event> events;
  void operator()(const armor::bulkhead_event& e) noexcept { events.push_back(e); }

  [[nodiscard]] bool saw(armor::bulkhead_event_kind k, std::uint32_t in_use, std::uint32_t queued,
                         std::size_t i) const {
    return i < events.size() && events[i].kind == k && events[i].in_use == in_use && events[i].queued == queued;
  }
};

// Counts inside itself: held by value, it tells which bulkhead's listener heard.
struct counting_listener {
  int heard = 0;
  void operator()(const armor::bulkhead_event&) noexcept { ++heard; }
};

struct throwing_listener {
  void operator()(const armor::bulkhead_event&) {}
};

// The layout of armor::bulkhead before it had a listener: the listener must
// cost the plain bulkhead no space.
struct alignas(armor::detail::cache_line) old_bulkhead_state {
  std::atomic<std::uint64_t> word;
  armor::detail::config_cell<armor::detail::bulkhead_limits> limits;  // changeable at run time
  std::mutex mutex;
  armor::queue_waiter* head;
  armor::queue_waiter* tail;
};
struct old_bulkhead {
  old_bulkhead_state state;
  std::chrono::nanoseconds retry_after_hint;
};

using rk = armor::bulkhead_event_kind;

}  // namespace

static_assert(std::is_same_v<armor::bulkhead<>, armor::bulkhead<armor::no_listener>>);
static_assert(sizeof(armor::bulkhead<>) == sizeof(old_bulkhead), "the listener must not grow a bulkhead without one");
static_assert(armor::queueing_policy<armor::bulkhead<std::reference_wrapper<event_log>>>);
static_assert(armor::listener_for<event_log, armor::bulkhead_event>);
static_assert(armor::listener_for<std::reference_wrapper<event_log>, armor::bulkhead_event>);
static_assert(!armor::listener_for<throwing_listener, armor::bulkhead_event>);  // must be noexcept
static_assert(!armor::listener_for<int, armor::bulkhead_event>);
// keyed<bulkhead<>> stores plain bulkheads per key (keyed refuses a bulkhead
// with a listener: tests/compile_fail/keyed_listener_dropped.cpp).
static_assert(std::is_same_v<armor::keyed<armor::bulkhead<>>::instance_type, armor::bulkhead<>>);

TEST_CASE("bulkhead listener: a refusal without a queue is heard once, with the counts; admissions are not") {
  armor::manual_clock clock;
  event_log log;
  armor::bulkhead b{{.max_concurrent = 2}, std::ref(log)};
  static_assert(std::is_same_v<decltype(b), armor::bulkhead<std::reference_wrapper<event_log>>>);
  auto p = armor::pipeline{clock, std::ref(b)};

  CHECK(p.execute([] { return 1; }) == 1);
  auto h1 = b.try_acquire().permit();
  auto h2 = b.try_acquire().permit();
  REQUIRE(h2);
  CHECK(log.events.empty());  // nothing refused yet

  int calls = 0;
  auto r = p.try_execute([&] { return ++calls; });
  CHECK(r.code() == armor::errc::bulkhead_full);
  CHECK(calls == 0);
  REQUIRE(log.events.size() == 1);
  CHECK(log.saw(rk::rejected, 2, 0, 0));

  CHECK_FALSE(b.try_acquire());  // a failed try_acquire is a refusal too
  REQUIRE(log.events.size() == 2);
  CHECK(log.saw(rk::rejected, 2, 0, 1));

  h1.release();
  CHECK(p.execute([] { return 2; }) == 2);
  CHECK(log.events.size() == 2);
}

TEST_CASE("bulkhead listener: joining the queue, a full queue, and leaving it unserved are each heard once") {
  event_log log;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 2, .max_wait = 1s}, std::ref(log)};
  armor::context ctx(armor::timestamp{});
  auto holder = b.try_acquire().permit();
  REQUIRE(b.admit(ctx).kind == armor::admission_kind::queue);
  CHECK(log.events.empty());  // an invitation to queue is not an event yet

  test_waiter w1;
  test_waiter w2;
  test_waiter w3;
  test_waiter w4;
  auto q1 = b.enqueue(ctx, w1);
  std::optional<armor::admission<armor::bulkhead_permit>> q2{b.enqueue(ctx, w2)};
  REQUIRE(log.events.size() == 2);
  CHECK(log.saw(rk::queued, 1, 1, 0));
  CHECK(log.saw(rk::queued, 1, 2, 1));

  auto q3 = b.enqueue(ctx, w3);  // the queue is full
  CHECK(q3.kind == armor::admission_kind::rejected);
  REQUIRE(log.events.size() == 3);
  CHECK(log.saw(rk::rejected, 1, 2, 2));

  // q1 gives up (max_wait, deadline or cancellation: the driver's call).
  CHECK_FALSE(q1.permit.leave_queue());
  REQUIRE(log.events.size() == 4);
  CHECK(log.saw(rk::abandoned, 1, 1, 3));
  CHECK_FALSE(q1.permit.leave_queue());  // already out: heard once only
  CHECK(log.events.size() == 4);

  // q2's permit is dropped while queued (a destroyed coroutine): abandoned too.
  q2.reset();
  REQUIRE(log.events.size() == 5);
  CHECK(log.saw(rk::abandoned, 1, 0, 4));

  // A waiter that was served is not abandoned, even if its permit is dropped.
  auto q4 = b.enqueue(ctx, w4);
  REQUIRE(q4.kind == armor::admission_kind::queued);
  CHECK(log.saw(rk::queued, 1, 1, 5));
  holder.release();
  CHECK(w4.wakes == 1);
  q4.permit.release();
  CHECK(log.events.size() == 6);
  CHECK(b.idle(armor::timestamp{}));
}

TEST_CASE("bulkhead listener in a pipeline: max_wait and the deadline end a wait as queued, then abandoned") {
  armor::manual_clock clock;
  event_log log;
  armor::bulkhead b{{.max_concurrent = 1, .max_queue = 1, .max_wait = 200ms}, std::ref(log)};
  auto holder = b.try_acquire().permit();

  auto p = armor::pipeline{clock, std::ref(b)};
  CHECK(p.try_execute([] { return 1; }).code() == armor::errc::bulkhead_full);
  REQUIRE(log.events.size() == 2);
  CHECK(log.saw(rk::queued, 1, 1, 0));
  CHECK(log.saw(rk::abandoned, 1, 0, 1));

  auto d = armor::pipeline{clock, armor::deadline{50ms}, std::ref(b)};
  CHECK(d.try_execute([] { return 1; }).code() == armor::errc::deadline_exceeded);
  REQUIRE(log.events.size() == 4);
  CHECK(log.saw(rk::queued, 1, 1, 2));
  CHECK(log.saw(rk::abandoned, 1, 0, 3));

  // Served while queued: queued only. (Over a manual clock the driver does
  // not block; the slot must have been handed over when it looks.)
  holder.release();
  CHECK(p.execute([] { return 3; }) == 3);
  CHECK(log.events.size() == 4);
}

TEST_CASE("bulkhead listener held by value moves with the bulkhead, abandon hook included") {
  armor::bulkhead<counting_listener> b2 = [] {
    armor::bulkhead<counting_listener> b1{{.max_concurrent = 1, .max_queue = 1, .max_wait = 1s}};
    return armor::bulkhead<counting_listener>(std::move(b1));
  }();
  armor::context ctx(armor::timestamp{});
  auto holder = b2.try_acquire().permit();
  CHECK_FALSE(b2.try_acquire());  // rejected
  test_waiter w;
  auto q = b2.enqueue(ctx, w);      // queued
  CHECK_FALSE(q.permit.leave_queue());  // abandoned: told through the moved-to bulkhead's hook
  CHECK(b2.listener().heard == 3);
}


TEST_CASE("bulkhead: refusals and queue give-ups are always counted in stats", "[bulkhead]") {
  SECTION("rejections: try_acquire and admissions with no room") {
    armor::bulkhead b{{.max_concurrent = 1}};
    auto held = b.try_acquire();
    REQUIRE(held);
    CHECK_FALSE(b.try_acquire());
    auto p = armor::pipeline{armor::manual_clock{}, std::ref(b)};
    CHECK(p.try_execute([] { return 1; }).error().code == armor::errc::bulkhead_full);
    CHECK(b.stats().rejected == 2);
    CHECK(b.stats().abandoned == 0);
  }
  SECTION("a queued caller that gives up at max_wait is abandoned, a full queue rejects") {
    armor::manual_clock clock;
    armor::bulkhead b{{.max_concurrent = 1, .max_queue = 1, .max_wait = 100ms}};
    auto held = b.try_acquire();
    REQUIRE(held);
    auto p = armor::pipeline{clock, std::ref(b)};
    CHECK(p.try_execute([] { return 1; }).error().code == armor::errc::bulkhead_full);  // waited 100ms
    CHECK(b.stats().abandoned == 1);
    CHECK(b.stats().rejected == 0);
  }
  SECTION("moving a bulkhead keeps its counts") {
    armor::bulkhead b{{.max_concurrent = 1}};
    {
      auto held = b.try_acquire();
      CHECK_FALSE(b.try_acquire());
    }
    armor::bulkhead moved{std::move(b)};
    CHECK(moved.stats().rejected == 1);
  }
}
