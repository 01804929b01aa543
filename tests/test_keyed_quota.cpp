// Per-key quotas (issue 21): keyed<quota_tracker> with bounded memory and
// idle expiry (keyed_options::expire_after), measured with keyed_stats.
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

using tracker = armor::quota_tracker<armor::manual_clock>;
using keyed_quota = armor::keyed<tracker>;

static_assert(armor::keyable_policy<tracker, armor::quota_tracker_options, armor::manual_clock>);

template <class T>
concept names_clock = requires { typename T::clock_type; };

// Appended, not prefix + ...: GCC 12 at -O3 warns there (-Wrestrict, a false positive).
std::string client(const char* prefix, std::size_t i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

}  // namespace

TEST_CASE("keyed quota: 100 per 10 s per client, 100 000 clients, forgotten 30 s after their last request",
          "[keyed_quota]") {
  // HAProxy's `http_req_rate(10s) gt 100 -> deny` over a stick table of
  // 100 000 entries that expire 30 s after their last request.
  armor::manual_clock clock{1'000'000s};  // a whole number of 10 s windows
  keyed_quota per_ip{{.windows = {armor::quota_window::fixed(100, 10s)}, .alerts = {}},
                     {.max_keys = 100'000, .expire_after = 30s},
                     clock};
  clock.advance(2500ms);

  // One client: the 101st request within the window is refused until the window turns.
  for (int i = 0; i < 100; ++i) REQUIRE(per_ip.get("10.0.0.1")->try_consume());
  const auto refused = per_ip.get("10.0.0.1")->try_consume();
  CHECK(refused.status() == armor::quota_tracker_status::exhausted);
  CHECK(refused.retry_after() == 7500ms);  // to the end of the 10 s window
  CHECK(refused.used() == 100);

  // 100 000 clients in all: the map holds every one of them, and no more.
  std::size_t peak = 0;
  for (std::size_t i = 1; i < 100'000; ++i) {
    REQUIRE(per_ip.get(client("a", i))->try_consume());
    if (i % 1000 == 0) peak = std::max<std::size_t>(peak, per_ip.stats().keys);
  }
  armor::keyed_stats s = per_ip.stats();
  CHECK(s.keys == 100'000);
  CHECK(s.max_keys == 100'000);
  CHECK(s.created == 100'000);
  CHECK(s.removed() == 0);

  // 30 s after its last request a client is forgotten, even one still
  // refused: it starts afresh (its entry is replaced on its return).
  clock.advance(30s);
  CHECK(per_ip.find("10.0.0.1")->idle(armor::to_timestamp(clock.now())));  // find() is not a use
  clock.advance(1ms);
  // 25 000 new clients (fewer than the table, to keep the test quick): the
  // inserts make room by dropping expired entries, never by pushing out a
  // client in its window.
  for (std::size_t i = 0; i < 25'000; ++i) {
    REQUIRE(per_ip.get(client("b", i))->try_consume());
    if (i % 1000 == 0) peak = std::max<std::size_t>(peak, per_ip.stats().keys);
  }
  s = per_ip.stats();
  CHECK(peak <= 100'000);
  CHECK(s.keys <= 100'000);
  CHECK(s.created == 125'000);
  CHECK(s.keys + s.removed() == s.created);
  CHECK(s.expired >= 25'000);  // the old clients that made room: expired
  CHECK(s.evicted_lru == 0);   // no new client was pushed out
  CHECK(s.erased == 0);
  // An old client comes back: a fresh budget.
  clock.advance(1s);
  for (int i = 0; i < 100; ++i) REQUIRE(per_ip.get("10.0.0.1")->try_consume());
  CHECK_FALSE(per_ip.get("10.0.0.1")->try_consume());
  // A sweep gives the rest back once every client has expired.
  clock.advance(31s);
  const std::size_t held = per_ip.stats().keys;
  CHECK(per_ip.evict_idle() == held);
  CHECK(per_ip.stats().keys == 0);
}

TEST_CASE("keyed quota: expiry is exact to the millisecond and never drops a key in use", "[keyed_quota]") {
  armor::manual_clock clock{24h};
  keyed_quota per_user{{.windows = {armor::quota_window::per_day(3)}, .alerts = {}},
                       {.max_keys = 8, .expire_after = 30s},
                       clock};
  for (int i = 0; i < 3; ++i) REQUIRE(per_user.get("ann")->try_consume());
  REQUIRE_FALSE(per_user.get("ann")->try_consume());  // a use: the 30 s start again
  clock.advance(30s - 1ns);
  CHECK_FALSE(per_user.get("ann")->try_consume());  // not yet forgotten (and used again)
  clock.advance(30s + 1ms);
  CHECK(per_user.get("ann")->try_consume());  // forgotten: a fresh tracker
  CHECK(per_user.stats().expired == 1);
  // A pinned entry is in use: never expired, whatever the time.
  auto held = per_user.get("bob");
  clock.advance(1h);
  CHECK(per_user.evict_idle() == 1);  // ann expired; bob is held
  CHECK(per_user.get("bob").key() == "bob");
  CHECK(per_user.stats().expired == 2);
  CHECK(per_user.stats().keys == 1);
  CHECK(per_user.expire_after() == 30s);
}

TEST_CASE("keyed quota: a pipeline layer keyed by call_options::key", "[keyed_quota]") {
  armor::manual_clock clock{24h};
  keyed_quota per_user{{.windows = {armor::quota_window::per_day(2)}, .alerts = {}}, {.max_keys = 16}, clock};
  auto p = armor::pipeline{clock, std::ref(per_user)};
  const auto op = [] { return 1; };
  CHECK(p.try_execute(op, {.key = "ann"}).has_value());
  CHECK(p.try_execute(op, {.key = "ann"}).has_value());
  const auto r = p.try_execute(op, {.key = "ann"});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.code() == armor::errc::quota_exhausted);
  CHECK(p.try_execute(op, {.key = "bob"}).has_value());
  CHECK(per_user.find("ann")->usage(0).used == 2);
}

TEST_CASE("keyed quota: a bad expire_after is refused", "[keyed_quota]") {
  armor::manual_clock clock;
  CHECK_THROWS_AS(keyed_quota({.windows = {armor::quota_window::per_day(2)}}, {.expire_after = -1s}, clock),
                  armor::error);
}

TEST_CASE("keyed quota: $5 per 30-minute session, a lifetime budget that ends 30 min after the last call",
          "[keyed_quota]") {
  // Units are micro-dollars. A session is forgotten 30 minutes after its
  // last call (not after its start): an active session keeps its spend.
  armor::manual_clock clock{24h};
  keyed_quota sessions{{.windows = {armor::quota_window::lifetime(5'000'000)}, .alerts = {}},
                       {.max_keys = 1000, .expire_after = 30min},
                       clock};
  auto p = armor::pipeline{clock, std::ref(sessions)};
  const auto op = [] { return 1; };
  for (int i = 0; i < 4; ++i) {
    REQUIRE(p.try_execute(op, {.key = "s1", .cost = 1'200'000}).has_value());  // $1.20 each
    clock.advance(29min);  // within the session: it stays
  }
  CHECK(sessions.find("s1")->usage(0).used == 4'800'000);
  const auto over = p.try_execute(op, {.key = "s1", .cost = 300'000});
  REQUIRE_FALSE(over.has_value());
  CHECK(over.code() == armor::errc::quota_exhausted);
  {
    const auto d = sessions.get("s1")->try_consume(300'000);
    CHECK(d.status() == armor::quota_tracker_status::exhausted);
    CHECK(d.retry_after() == nanoseconds::max());  // no wait helps: the budget never resets
    CHECK(d.used() == 4'800'000);
    CHECK(d.limit() == 5'000'000);
  }
  CHECK(p.try_execute(op, {.key = "s1", .cost = 200'000}).has_value());  // exactly $5.00
  CHECK_FALSE(p.try_execute(op, {.key = "s1", .cost = 1}).has_value());
  CHECK(sessions.find("s1")->usage(0).resets_in == nanoseconds::max());
  CHECK(sessions.find("s1")->usage(0).remaining() == 0);
  // Another session has its own $5.
  CHECK(p.try_execute(op, {.key = "s2", .cost = 5'000'000}).has_value());
  // Just under 30 min after the last call: still spent (and a call is a use).
  clock.advance(30min - 1ns);
  CHECK_FALSE(p.try_execute(op, {.key = "s1", .cost = 1}).has_value());
  // 30 min (and the 1 ms of recency) after the last call: a new session.
  clock.advance(30min + 1ms);
  CHECK(p.try_execute(op, {.key = "s1", .cost = 5'000'000}).has_value());
  CHECK(sessions.stats().expired == 1);
  CHECK(sessions.find("s1")->window_name(0) == "lifetime");
}

TEST_CASE("keyed quota: $0.50 per user per day, reset at midnight UTC", "[keyed_quota]") {
  armor::manual_clock clock{20'000 * 24h + 10h};  // 10:00 UTC
  keyed_quota per_user{{.windows = {armor::quota_window::per_day(500'000)}, .alerts = {}}, {.max_keys = 1000}, clock};
  for (int i = 0; i < 5; ++i) REQUIRE(per_user.get("ann")->try_consume(100'000));  // $0.10 each
  const auto d = per_user.get("ann")->try_consume(1);
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.retry_after() == 14h);  // to midnight
  CHECK(per_user.get("bob")->try_consume(500'000));
  // A reservation that is given back does not count.
  {
    auto r = per_user.get("cat")->reserve(400'000);
    REQUIRE(r);
    CHECK(r.permit().commit(250'000) == armor::quota_tracker_status::granted);
  }
  CHECK(per_user.find("cat")->usage(0).used == 250'000);
  CHECK_FALSE(per_user.get("cat")->try_consume(250'001));
  clock.advance(14h - 1ns);
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
  CHECK(per_user.evict_idle() == 0);  // every user still counts units today
  clock.advance(1ns);
  CHECK(per_user.evict_idle() == 3);  // a new day: every tracker is idle, dropping them changes nothing
  CHECK(per_user.get("ann")->try_consume(500'000));
  CHECK_FALSE(per_user.get("ann")->try_consume(1));
}

TEST_CASE("quota_tracker: a lifetime window never resets and refuses a length", "[keyed_quota]") {
  armor::manual_clock clock{24h};
  armor::quota_tracker<armor::manual_clock> t{{.windows = {armor::quota_window::lifetime(3)}, .alerts = {1.0}}, clock};
  CHECK(t.try_consume(3));
  clock.advance(24h * 365 * 100);
  const auto d = t.try_consume();
  CHECK(d.status() == armor::quota_tracker_status::exhausted);
  CHECK(d.retry_after() == nanoseconds::max());
  CHECK(t.usage(0).used == 3);
  CHECK(t.usage(0).exhausted_in == nanoseconds::zero());  // spent
  CHECK(t.stats().alerts == 1);
  CHECK(armor::to_string(armor::quota_window_kind::lifetime) == "lifetime");
  CHECK_THROWS_AS((armor::quota_tracker<armor::manual_clock>{
                      {.windows = {{.limit = 3, .length = 1s, .kind = armor::quota_window_kind::lifetime}}}, clock}),
                  armor::error);
}

TEST_CASE("keyed quota: on the system clock, in a pipeline of the steady clock", "[keyed_quota]") {
  // A quota tracker reads its own wall clock in a pipeline of any clock;
  // so does a map of them (and it keeps recency on that wall clock).
  armor::keyed<armor::quota_tracker<>> per_user{{.windows = {armor::quota_window::per_day(1'000'000)}, .alerts = {}},
                                                {.max_keys = 4, .expire_after = 1h}};
  static_assert(!names_clock<armor::keyed<armor::quota_tracker<>>>);
  auto p = armor::pipeline{std::ref(per_user)};
  CHECK(p.try_execute([] { return 1; }, {.key = "ann"}).has_value());
  CHECK(per_user.find("ann")->usage(0).used >= 1);
}
