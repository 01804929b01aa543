// The pipeline's deadline bounds every Redis round trip of a call (issue
// #11): with Redis frozen (SIGSTOP) and the connection's own timeouts far
// longer than the deadline, a call through quota_tracker (redis_quota_storage)
// or redis_token_bucket ends at its deadline with errc::deadline_exceeded;
// a call whose deadline has passed sends nothing at all.
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/token_bucket.hpp>
#include <armor/detail/redis_io.hpp>

#include "armor_catch.hpp"
#include "redis/failure_support.hpp"
#include "redis/redis_server.hpp"

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using namespace std::chrono;
using armor::quota_window;

namespace {

// Without redis-server there is nothing to test: exit 77 (CTest: skipped).
const bool have_redis_server_for_deadlines = armor_test::require_redis_server();

std::string deadline_name(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + "-dl-" + std::to_string(::getpid()) + "-" + std::to_string(n.fetch_add(1));
}

// Backend timeouts far longer than the pipeline's deadline: without the
// deadline, a call to a frozen Redis would take command_timeout (2 s).
armor::redis_options patient_redis(int port) {
  armor::redis_options o;
  o.port = static_cast<std::uint16_t>(port);
  o.prefix = "armor-test";
  o.connect_timeout = 2s;
  o.command_timeout = 2s;
  return o;
}

constexpr auto call_deadline = 150ms;
constexpr auto slack = 300ms;  // generous, for a loaded CI machine


using redis_tracker = armor::quota_tracker<armor::system_clock, armor::redis_quota_storage>;

const armor::token_bucket_options hourly_bucket{.rate = {1, 1h}, .burst = 10};

}  // namespace

TEST_CASE("redis quota, Redis frozen: a pipeline call ends at its deadline, not at command_timeout") {
  armor_test::redis_server server;
  const armor::redis_connection conn{patient_redis(server.port())};
  const auto mode = GENERATE(armor::redis_failure_mode::fail_closed, armor::redis_failure_mode::fail_open);
  const std::int64_t lease = GENERATE(std::int64_t{0}, std::int64_t{3});
  CAPTURE(static_cast<int>(mode), lease);
  redis_tracker t{{.windows = {quota_window::per_day(100)}},
                  {},
                  armor::redis_quota_storage{
                      conn, {.tracker = deadline_name("quota"), .on_failure = mode, .lease = lease}}};
  REQUIRE(t.try_consume(1));  // connected, scripts loaded (a lease: 2 units left in it)
  while (t.storage().leased() > 0) REQUIRE(t.try_consume(1));  // the next call must go to Redis
  const std::int64_t unit = lease > 0 ? lease : 1;

  server.pause();
  auto p = armor::pipeline{armor::deadline{call_deadline}, std::ref(t)};
  armor::result<int> r{0};
  bool ran = false;
  const nanoseconds took = armor_test::timed([&] {
    r = p.try_execute([&] {
      ran = true;
      return 1;
    });
  });
  server.resume();

  CHECK_FALSE(ran);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::deadline_exceeded);
  CHECK(took > 100ms);  // it did wait for Redis, until the deadline
  CHECK(took < call_deadline + slack);
  CHECK(t.storage().stats().deadline_exceeded == 1);
  CHECK(t.storage().stats().failed_open == 0);  // out of time: not admitted, whatever on_failure says
  CHECK(conn.stats().deadline_exceeded == 1);
  CHECK(conn.stats().failures == 0);  // the breaker was not told: the deadline says nothing of Redis
  CHECK(conn.breaker() == armor::breaker_state::closed);

  // Redis is back: the tracker counts again (the frozen call's script may
  // have run when Redis woke; its late reply was not taken for another's).
  CHECK(armor_test::eventually([&] { return t.try_consume(1).allowed(); }));
  // Each of the three consumptions (before, frozen, after) counts `unit`
  // units in Redis: one, or a whole lease.
  const std::int64_t used = t.usage(0).used;
  CHECK(used >= 2 * unit);
  CHECK(used <= 3 * unit);
}

TEST_CASE("redis bucket, Redis frozen: a pipeline call ends at its deadline, not at command_timeout") {
  armor_test::redis_server server;
  const armor::redis_connection conn{patient_redis(server.port())};
  const auto mode = GENERATE(armor::redis_failure_mode::fail_closed, armor::redis_failure_mode::fail_open);
  const std::int64_t lease = GENERATE(std::int64_t{0}, std::int64_t{2});
  const bool keyed = GENERATE(false, true);
  CAPTURE(static_cast<int>(mode), lease, keyed);
  armor::redis_token_bucket<> b{
      hourly_bucket, conn, {.name = deadline_name("bucket"), .on_failure = mode, .lease = lease}};
  REQUIRE(b.try_acquire(1));  // connected, scripts loaded
  while (b.leased() > 0) REQUIRE(b.try_acquire(1));

  server.pause();
  auto p = armor::pipeline{armor::deadline{call_deadline}, std::ref(b)};
  armor::result<int> r{0};
  bool ran = false;
  const nanoseconds took = armor_test::timed([&] {
    r = p.try_execute(
        [&] {
          ran = true;
          return 1;
        },
        {.key = keyed ? std::string_view{"user-7"} : std::string_view{}});
  });
  server.resume();

  CHECK_FALSE(ran);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::deadline_exceeded);
  CHECK(took > 100ms);
  CHECK(took < call_deadline + slack);
  CHECK(b.stats().deadline_exceeded == 1);
  CHECK(b.stats().failed_open == 0);
  CHECK(conn.stats().deadline_exceeded == 1);
  CHECK(conn.stats().failures == 0);
  CHECK(conn.breaker() == armor::breaker_state::closed);
  CHECK(armor_test::eventually([&] { return b.try_acquire(1).allowed(); }));
}

TEST_CASE("redis quota and bucket: a call whose deadline has passed sends nothing") {
  armor_test::redis_server server;
  const armor::redis_connection conn{patient_redis(server.port())};
  redis_tracker t{{.windows = {quota_window::per_day(100)}},
                  {},
                  armor::redis_quota_storage{conn, {.tracker = deadline_name("spent")}}};
  armor::redis_token_bucket<> b{hourly_bucket, conn, {.name = deadline_name("spent")}};

  // Deadline = now: no time left.
  armor::context ctx{armor::timestamp{1s}, {.timeout = 0ns}};
  REQUIRE(ctx.has_deadline());
  auto q = t.admit(ctx);
  CHECK(q.kind == armor::admission_kind::rejected);
  CHECK(q.code == armor::errc::deadline_exceeded);
  CHECK(q.retryable);
  auto a = b.admit(ctx);
  CHECK(a.kind == armor::admission_kind::rejected);
  CHECK(a.code == armor::errc::deadline_exceeded);

  // The storage's own deadline overloads, with an instant long past.
  const armor::quota_stamp at{};
  CHECK(t.storage().try_consume(at, 1, armor::quota_deadline{}).status ==
        armor::quota_storage_status::deadline_exceeded);
  std::array<std::int64_t, 1> out{};
  CHECK_THROWS_AS((void)t.storage().read(0, 0, out, armor::quota_deadline{}), armor::error);

  // Nothing reached Redis: no connection was even made.
  const armor::redis_connection_stats s = conn.stats();
  CHECK(s.connects == 0);
  CHECK(s.calls == 0);
  CHECK(s.failures == 0);
  CHECK(s.deadline_exceeded == 4);
  CHECK(t.storage().stats().deadline_exceeded == 3);  // admit, try_consume, read
  CHECK(b.stats().deadline_exceeded == 1);

  // With time left, the same calls reach Redis, which counted nothing before.
  armor::context roomy{armor::timestamp{1s}, {.timeout = 1s}};
  auto q2 = t.admit(roomy);
  REQUIRE(q2.kind == armor::admission_kind::admitted);
  q2.permit.commit();
  CHECK(t.usage(0).used == 1);
  CHECK(b.admit(roomy).kind == armor::admission_kind::admitted);
  CHECK(conn.stats().connects >= 1);
}

TEST_CASE("redis: a call without a deadline is bounded only by the connection's timeouts") {
  armor_test::redis_server server;
  const armor::redis_connection conn{armor_test::failing_redis_options(patient_redis(server.port()))};
  armor::redis_token_bucket<> b{hourly_bucket, conn, {.name = deadline_name("none")}};
  REQUIRE(b.try_acquire(1));  // connected, scripts loaded
  armor::context ctx{armor::timestamp{1s}};
  REQUIRE_FALSE(ctx.has_deadline());
  REQUIRE(ctx.remaining() == nanoseconds::max());
  server.pause();
  armor::admission<armor::no_permit> a;
  const nanoseconds took = armor_test::timed([&] { a = b.admit(ctx); });
  server.resume();
  CHECK(a.kind == armor::admission_kind::rejected);
  CHECK(a.code == armor::errc::storage_unavailable);  // not deadline_exceeded: there was none
  CHECK(took >= 90ms);                                // it waited command_timeout (100 ms)
  CHECK(took < armor_test::redis_call_bound);
  CHECK(conn.stats().deadline_exceeded == 0);
  CHECK(conn.stats().failures == 1);
  CHECK(conn.stats().breaker == armor::breaker_state::closed);  // one failure of the two that open it
  CHECK(b.stats().deadline_exceeded == 0);
  CHECK(b.stats().failed_closed == 1);
}

// ------------------------------------------ the storage trait, without Redis

namespace {

// A storage that takes deadlines: records the one it was given and answers
// what `answer` says.
struct deadline_recorder {
  armor::quota_storage_status answer = armor::quota_storage_status::consumed;
  std::shared_ptr<armor::quota_deadline> seen = std::make_shared<armor::quota_deadline>();
  std::shared_ptr<int> deadline_calls = std::make_shared<int>(0);

  void bind(std::span<const armor::quota_window_layout>) {}
  armor::quota_consumption try_consume(const armor::quota_stamp& at, std::int64_t) noexcept {
    armor::quota_consumption c;
    c.at = at;
    return c;
  }
  armor::quota_consumption try_consume(const armor::quota_stamp& at, std::int64_t n,
                                       armor::quota_deadline until) noexcept {
    ++*deadline_calls;
    *seen = until;
    armor::quota_consumption c = try_consume(at, n);
    c.status = answer;
    return c;
  }
  armor::quota_consumption charge(const armor::quota_stamp& at, std::int64_t n) noexcept { return try_consume(at, n); }
  void release(const armor::quota_stamp&, std::int64_t) noexcept {}
  std::int64_t read(std::size_t, std::int64_t i, std::span<std::int64_t>) const noexcept { return i; }
  std::int64_t read(std::size_t, std::int64_t i, std::span<std::int64_t>, armor::quota_deadline) const noexcept {
    return i;
  }
};

static_assert(armor::deadline_quota_storage<deadline_recorder>);
static_assert(armor::deadline_quota_storage<armor::redis_quota_storage>);
// The memory backend is called as before: no deadline, no clock read for it.
static_assert(armor::quota_storage<armor::memory_quota_storage>);
static_assert(!armor::deadline_quota_storage<armor::memory_quota_storage>);

}  // namespace

TEST_CASE("quota_tracker::admit hands a deadline-taking storage the call's deadline, and maps its answer") {
  deadline_recorder rec;
  armor::quota_tracker<armor::system_clock, deadline_recorder> t{
      {.windows = {quota_window::per_day(100)}}, {}, rec};

  armor::context none{armor::timestamp{5s}};
  auto a = t.admit(none);
  CHECK(a.kind == armor::admission_kind::admitted);
  CHECK(*rec.deadline_calls == 1);
  CHECK(*rec.seen == armor::quota_deadline::max());  // no deadline: none passed, no clock read for it

  armor::context bounded{armor::timestamp{5s}, {.timeout = 40ms}};
  const auto before = steady_clock::now();
  auto b = t.admit(bounded);
  const auto after = steady_clock::now();
  CHECK(b.kind == armor::admission_kind::admitted);
  CHECK(*rec.seen >= before + 40ms);
  CHECK(*rec.seen <= after + 40ms);

  t.storage().answer = armor::quota_storage_status::deadline_exceeded;
  auto c = t.admit(bounded);
  CHECK(c.kind == armor::admission_kind::rejected);
  CHECK(c.code == armor::errc::deadline_exceeded);
  CHECK(c.retryable);
  CHECK(t.stats().unavailable == 1);

  t.storage().answer = armor::quota_storage_status::unavailable;
  auto d = t.admit(bounded);
  CHECK(d.code == armor::errc::storage_unavailable);
  // Outside a pipeline there is no deadline: max() is passed.
  t.storage().answer = armor::quota_storage_status::consumed;
  CHECK(t.try_consume(1).allowed());
  CHECK(*rec.deadline_calls == 5);
  CHECK(*rec.seen == armor::quota_deadline::max());
}

TEST_CASE("redis_until: nanoseconds::max() means no deadline, as everywhere in armor") {
  using armor::detail::redis_no_deadline;
  using armor::detail::redis_until;
  // One meaning of "none" for every deadline instant in the library.
  static_assert(redis_no_deadline == armor::quota_deadline::max());
  CHECK(redis_until(nanoseconds::max()) == redis_no_deadline);

  // Any other time left is a deadline, however far: saturated, never "none".
  const armor::detail::redis_deadline far = redis_until(nanoseconds::max() - 1ns);
  CHECK(far != redis_no_deadline);
  CHECK(far > steady_clock::now() + hours{24 * 365 * 200});

  const auto before = steady_clock::now();
  const armor::detail::redis_deadline soon = redis_until(40ms);
  const auto after = steady_clock::now();
  CHECK(soon >= before + 40ms);
  CHECK(soon <= after + 40ms);

  // No time left, or less than none: a deadline that has passed.
  const armor::detail::redis_deadline now_ = redis_until(0ns);
  const armor::detail::redis_deadline past = redis_until(-5s);
  const auto later = steady_clock::now();
  CHECK(now_ <= later);
  CHECK(past < later - 4s);
}
