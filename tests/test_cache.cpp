// armor::cache on manual_clock: RFC 5861 freshness with the numbers
// (max-age 600 s, stale-while-revalidate 30 s, stale-if-error 1200 s),
// no-store, per-entry freshness, entry and byte limits, CLOCK order, and
// expired entries reclaimed. Refreshes go to a recording executor that the
// test runs by hand; nothing sleeps.
#include <armor/cache.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using clock_t_ = armor::manual_clock;
using text_cache = armor::cache<std::string, std::string, clock_t_>;

// Holds posted tasks until the test runs them.
struct recording_executor {
  std::vector<std::function<void()>> tasks;
  void post(std::function<void()> f) { tasks.push_back(std::move(f)); }
  void run_all() {
    auto pending = std::move(tasks);
    tasks.clear();
    for (auto& t : pending) t();
  }
};

struct upstream {
  int calls = 0;
  std::string answer = "v";
  std::string operator()() {
    ++calls;
    return answer + std::to_string(calls);
  }
};

armor::cache_options rfc_options() {
  return {.max_age = 600s, .stale_while_revalidate = 30s, .stale_if_error = 0s, .max_entries = 64, .shards = 4};
}

}  // namespace

TEST_CASE("cache: a fresh entry answers without calling; max-age 600 s + swr 30 s: at 601 s stale and exactly one "
          "refresh, at 631 s a miss",
          "[cache]") {
  clock_t_ clock;
  text_cache c(rfc_options(), clock);
  recording_executor ex;
  upstream op;

  auto a = c.execute("k", std::ref(op), ex);
  CHECK(a.origin == armor::cache_origin::live);
  CHECK(*a == "v1");
  CHECK(op.calls == 1);

  clock.advance(599s);
  a = c.execute("k", std::ref(op), ex);
  CHECK(a.origin == armor::cache_origin::fresh);
  CHECK(*a == "v1");
  CHECK(op.calls == 1);
  CHECK(c.lookup("k").state == armor::cache_state::fresh);

  SECTION("at 601 s: stale at once for every caller, one refresh") {
    clock.advance(2s);  // 601 s
    CHECK(c.lookup("k").state == armor::cache_state::stale);
    for (int i = 0; i < 3; ++i) {
      a = c.execute("k", std::ref(op), ex);
      CHECK(a.origin == armor::cache_origin::stale);
      CHECK(*a == "v1");
      CHECK(!a.error);
    }
    CHECK(ex.tasks.size() == 1);
    CHECK(op.calls == 1);  // the refresh has not run yet
    CHECK(c.flights().in_flight("k"));
    ex.run_all();
    CHECK(op.calls == 2);
    CHECK(!c.flights().in_flight("k"));
    a = c.execute("k", std::ref(op), ex);
    CHECK(a.origin == armor::cache_origin::fresh);
    CHECK(*a == "v2");
    const auto st = c.stats();
    CHECK(st.stale_hits == 3);
    CHECK(st.refreshes == 1);
    CHECK(st.hits == 2);
    CHECK(st.misses == 1);
  }
  SECTION("at 630 s still stale, at 631 s a miss that calls") {
    clock.advance(30s);  // 629 s
    CHECK(c.lookup("k").state == armor::cache_state::stale);
    clock.advance(2s);  // 631 s
    CHECK(c.lookup("k").state == armor::cache_state::miss);
    CHECK(c.lookup("k").value == nullptr);
    a = c.execute("k", std::ref(op), ex);
    CHECK(a.origin == armor::cache_origin::live);
    CHECK(*a == "v2");
    CHECK(ex.tasks.empty());
    CHECK(op.calls == 2);
  }
  SECTION("a task dropped by the executor ends the flight; the next caller starts another") {
    clock.advance(2s);
    (void)c.execute("k", std::ref(op), ex);
    CHECK(ex.tasks.size() == 1);
    ex.tasks.clear();  // dropped
    CHECK(!c.flights().in_flight("k"));
    (void)c.execute("k", std::ref(op), ex);
    CHECK(ex.tasks.size() == 1);
    ex.run_all();
    CHECK(op.calls == 2);
  }
}

TEST_CASE("cache: without an executor the caller that finds a stale entry refreshes it and answers live",
          "[cache]") {
  clock_t_ clock;
  text_cache c(rfc_options(), clock);
  upstream op;
  (void)c.execute("k", std::ref(op));
  clock.advance(601s);
  auto a = c.execute("k", std::ref(op));
  CHECK(a.origin == armor::cache_origin::live);
  CHECK(*a == "v2");
  CHECK(c.stats().refreshes == 1);
  CHECK(c.lookup("k").state == armor::cache_state::fresh);
}

TEST_CASE("cache: stale-if-error 1200 s: a 503 at 700 s serves the entry, marked stale with the failure's code",
          "[cache]") {
  clock_t_ clock;
  text_cache c({.max_age = 600s, .stale_if_error = 1200s, .shards = 1}, clock);
  int calls = 0;
  auto ok = [&] {
    ++calls;
    return std::string("body");
  };
  (void)c.execute("k", ok);
  clock.advance(700s);
  CHECK(c.lookup("k").state == armor::cache_state::stale_if_error);
  // The upstream answers 503: here as a pipeline would report it.
  auto unavailable = [&]() -> armor::result<std::string> {
    ++calls;
    return armor::failure{armor::errc::operation_failed, 5s, nullptr};
  };
  auto r = c.try_execute("k", unavailable);
  REQUIRE(r.ok());
  CHECK(r->origin == armor::cache_origin::stale);
  CHECK(*r->value == "body");
  CHECK(r->error == armor::errc::operation_failed);
  CHECK(calls == 2);

  SECTION("an armor refusal (open breaker) and an exception are served stale too") {
    auto open = []() -> armor::result<std::string> { return armor::failure{armor::errc::circuit_open, 30s, nullptr}; };
    auto a = c.execute("k", open);
    CHECK(a.origin == armor::cache_origin::stale);
    CHECK(a.error == armor::errc::circuit_open);
    auto throws = []() -> std::string { throw std::runtime_error("503"); };
    a = c.execute("k", throws);
    CHECK(a.origin == armor::cache_origin::stale);
    CHECK(a.error == armor::errc::operation_failed);
    CHECK(c.stats().stale_on_error == 3);
  }
  SECTION("a value the pipeline judged a failure is not stored and the entry answers") {
    auto judged = [] { return armor::result<std::string>(armor::detail::judged_failure, "503 body"); };
    auto a = c.execute("k", judged);
    CHECK(a.origin == armor::cache_origin::stale);
    CHECK(*a == "body");
  }
  SECTION("past 1800 s the failure reaches the caller") {
    clock.advance(1101s);  // 1801 s
    CHECK(c.lookup("k").state == armor::cache_state::miss);
    r = c.try_execute("k", unavailable);
    CHECK(!r);
    CHECK(r.code() == armor::errc::operation_failed);
    CHECK(r.retry_after() == 5s);
    auto throws = []() -> std::string { throw std::runtime_error("503"); };
    CHECK_THROWS_AS(c.execute("k", throws), std::runtime_error);
  }
  SECTION("a successful call replaces the entry") {
    auto a = c.execute("k", ok);
    CHECK(a.origin == armor::cache_origin::live);
    CHECK(c.lookup("k").state == armor::cache_state::fresh);
  }
}

TEST_CASE("cache: a failure with no usable entry reaches the caller and nothing is stored", "[cache]") {
  clock_t_ clock;
  text_cache c({.shards = 1}, clock);
  auto fails = []() -> armor::result<std::string> { return armor::failure{armor::errc::rate_limited, 1s, nullptr}; };
  auto r = c.try_execute("k", fails);
  CHECK(r.code() == armor::errc::rate_limited);
  CHECK(c.stats().entries == 0);
  auto judged = [] { return armor::result<std::string>(armor::detail::judged_failure, "500 body"); };
  r = c.try_execute("k", judged);
  REQUIRE(r.has_value());
  CHECK(!r.ok());
  CHECK(*r->value == "500 body");
  CHECK(c.stats().entries == 0);
}

TEST_CASE("cache: no-store is never stored; per-entry freshness comes from the operation", "[cache]") {
  clock_t_ clock;
  text_cache c({.max_age = 600s, .shards = 1}, clock);
  int calls = 0;
  auto no_store = [&] {
    ++calls;
    return armor::cache_item<std::string>{std::make_shared<const std::string>("private"), std::nullopt, false};
  };
  for (int i = 0; i < 3; ++i) CHECK(c.execute("k", no_store).origin == armor::cache_origin::live);
  CHECK(calls == 3);
  CHECK(c.lookup("k").state == armor::cache_state::miss);
  CHECK(c.stats().not_stored == 3);
  CHECK(c.stats().stores == 0);

  auto short_lived = [&] {
    ++calls;
    return armor::cache_item<std::string>{std::make_shared<const std::string>("s"),
                                          armor::cache_freshness{.max_age = 5s, .stale_while_revalidate = 0s,
                                                                 .stale_if_error = 0s},
                                          true};
  };
  (void)c.execute("s", short_lived);
  clock.advance(4s);
  CHECK(c.execute("s", short_lived).origin == armor::cache_origin::fresh);
  clock.advance(1s);
  CHECK(c.lookup("s").state == armor::cache_state::miss);
  CHECK(c.execute("s", short_lived).origin == armor::cache_origin::live);
}

TEST_CASE("cache: a refresh answered no-store leaves the stale entry refreshable", "[cache]") {
  clock_t_ clock;
  text_cache c({.max_age = 10s, .stale_while_revalidate = 100s, .max_entries = 8, .shards = 1}, clock);
  int calls = 0;
  auto no_store = [&] {
    ++calls;
    return armor::cache_item<std::string>{std::make_shared<const std::string>("private"), std::nullopt, false};
  };
  c.insert("k", "old");
  clock.advance(11s);
  SECTION("with an executor: the next stale caller starts another refresh") {
    recording_executor ex;
    for (int round = 1; round <= 3; ++round) {
      const auto a = c.execute("k", no_store, ex);
      CHECK(a.origin == armor::cache_origin::stale);
      CHECK(*a == "old");
      REQUIRE(ex.tasks.size() == 1);
      ex.run_all();
      CHECK(calls == round);
      clock.advance(1s);
    }
    CHECK(c.stats().refreshes == 3);
  }
  SECTION("without an executor: each stale caller refreshes and answers live") {
    for (int round = 1; round <= 3; ++round) {
      const auto a = c.execute("k", no_store);
      CHECK(a.origin == armor::cache_origin::live);
      CHECK(*a == "private");
      CHECK(calls == round);
      CHECK(c.lookup("k").state == armor::cache_state::stale);
    }
  }
}

TEST_CASE("cache: an entry is refreshed again each time it goes stale", "[cache]") {
  clock_t_ clock;
  armor::cache<int, int, clock_t_> c({.max_age = 10s, .stale_while_revalidate = 100s, .max_entries = 8, .shards = 1},
                                     clock);
  recording_executor ex;
  int calls = 0;
  auto op = [&] { return ++calls; };
  (void)c.execute(1, op, ex);
  for (int round = 0; round < 3; ++round) {
    clock.advance(11s);
    CHECK(c.execute(1, op, ex).origin == armor::cache_origin::stale);
    REQUIRE(ex.tasks.size() == 1);
    ex.run_all();
    CHECK(c.lookup(1).state == armor::cache_state::fresh);
  }
  CHECK(calls == 4);
}

TEST_CASE("cache: values are shared, not copied", "[cache]") {
  clock_t_ clock;
  armor::cache<int, std::vector<int>, clock_t_> c({.shards = 1}, clock);
  auto a = c.execute(1, [] { return std::vector<int>(1000, 7); });
  auto b = c.execute(1, [] { return std::vector<int>{}; });
  CHECK(b.origin == armor::cache_origin::fresh);
  CHECK(a.value.get() == b.value.get());
  CHECK(c.lookup(1).value.get() == a.value.get());
}

TEST_CASE("cache: eviction keeps the entry limit (measured)", "[cache]") {
  clock_t_ clock;
  armor::cache<int, int, clock_t_> c({.max_entries = 100, .shards = 4}, clock);
  std::size_t most = 0;
  for (int k = 0; k < 5000; ++k) {
    CHECK(c.insert(k, k));
    most = std::max<std::size_t>(most, c.stats().entries);
  }
  const auto st = c.stats();
  CHECK(most <= 100);
  CHECK(st.entries <= 100);
  CHECK(st.entries >= 80);  // a set-associative table of twice the slots holds nearly all of it
  CHECK(st.stores == 5000);
  CHECK(st.evictions == 5000 - st.entries);
  std::size_t present = 0;
  for (int k = 0; k < 5000; ++k) present += c.lookup(k).state == armor::cache_state::fresh ? 1 : 0;
  CHECK(present == st.entries);
}

TEST_CASE("cache: eviction keeps the byte limit, as the size function counts (measured)", "[cache]") {
  clock_t_ clock;
  using blob_cache = armor::cache<int, std::string, clock_t_>;
  blob_cache c({.max_entries = 1000, .max_bytes = 10'000, .shards = 2},
               [](const int&, const std::string& v) { return v.size(); }, clock);
  std::size_t most = 0;
  for (int k = 0; k < 2000; ++k) {
    c.insert(k, std::string(static_cast<std::size_t>(50 + (k * 37) % 400), 'x'));
    most = std::max<std::size_t>(most, c.stats().bytes);
  }
  CHECK(most <= 10'000);
  CHECK(c.stats().bytes <= 10'000);
  CHECK(c.stats().bytes >= 7'000);
  // A value larger than a shard's share (5000 bytes) is refused and counted.
  CHECK(!c.insert(1, std::string(6000, 'y')));
  CHECK(c.stats().not_stored == 1);
  CHECK(c.lookup(1).state == armor::cache_state::miss);
}

TEST_CASE("cache: CLOCK gives a referenced entry a second chance", "[cache]") {
  clock_t_ clock;
  armor::cache<int, int, clock_t_> c({.max_entries = 4, .shards = 1}, clock);
  for (int k = 0; k < 4; ++k) c.insert(k, k);
  CHECK(c.lookup(0).value != nullptr);  // referenced
  c.insert(4, 4);
  CHECK(c.stats().evictions == 1);
  CHECK(c.lookup(0).state == armor::cache_state::fresh);
  CHECK(c.lookup(4).state == armor::cache_state::fresh);
  int gone = 0;
  for (int k = 1; k < 4; ++k) gone += c.lookup(k).state == armor::cache_state::miss ? 1 : 0;
  CHECK(gone == 1);
}

TEST_CASE("cache: expired entries are reclaimed, first by eviction and by purge_expired", "[cache]") {
  clock_t_ clock;
  armor::cache<int, int, clock_t_> c({.max_age = 10s, .max_entries = 8, .shards = 1}, clock);
  for (int k = 0; k < 8; ++k) c.insert(k, k);
  c.insert(100, 100, armor::cache_freshness{.max_age = 1h});
  CHECK(c.stats().entries == 8);
  clock.advance(11s);
  CHECK(c.lookup(100).state == armor::cache_state::fresh);
  CHECK(c.purge_expired() == 7);
  CHECK(c.stats().entries == 1);
  CHECK(c.stats().expirations == 7);
  CHECK(c.lookup(100).state == armor::cache_state::fresh);
  CHECK(c.erase(100));
  CHECK(!c.erase(100));
  CHECK(c.stats().entries == 0);
}

TEST_CASE("cache: bad options are refused with messages naming them", "[cache]") {
  auto refused = [](armor::cache_options o, const std::string& name) {
    try {
      armor::cache<int, int> c(o);
      FAIL("accepted");
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      CHECK(std::string(e.what()).find(name) != std::string::npos);
    }
  };
  refused({.max_age = -1s}, "max_age");
  refused({.stale_while_revalidate = -1s}, "stale_while_revalidate");
  refused({.stale_if_error = -1ns}, "stale_if_error");
  refused({.shards = 3}, "shards");
  refused({.shards = 0}, "shards");
  refused({.max_entries = 8, .shards = 16}, "max_entries");
  refused({.max_bytes = 8, .shards = 16}, "max_bytes");
  refused({.max_refreshes = 0}, "max_refreshes");
  CHECK(armor::to_string(armor::cache_state::stale_if_error) == "stale_if_error");
  CHECK(armor::to_string(armor::cache_origin::live) == "live");
}

TEST_CASE("cache: max_refreshes bounds the refreshes posted to an executor; a dropped task gives its slot back",
          "[cache]") {
  clock_t_ clock;
  text_cache c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 4, .max_refreshes = 1},
               clock);
  recording_executor ex;
  upstream op;
  c.insert("a", std::string("a0"));
  c.insert("b", std::string("b0"));
  clock.advance(601s);
  CHECK(c.execute("a", std::ref(op), ex).origin == armor::cache_origin::stale);
  CHECK(c.execute("b", std::ref(op), ex).origin == armor::cache_origin::stale);
  CHECK(ex.tasks.size() == 1);  // only a's: b's was skipped, its claim given back
  CHECK(c.stats().refreshes == 1);
  CHECK(c.stats().refreshes_skipped == 1);
  CHECK_FALSE(c.flights().in_flight("b"));
  // Without an executor the caller refreshes on its own thread: not bounded.
  CHECK(c.execute("b", std::ref(op)).origin == armor::cache_origin::live);
  CHECK(op.calls == 1);
  ex.tasks.clear();  // a's task dropped: its slot and its claim come back
  CHECK(c.execute("a", std::ref(op), ex).origin == armor::cache_origin::stale);
  CHECK(ex.tasks.size() == 1);
  ex.run_all();
  CHECK(op.calls == 2);
  CHECK(c.lookup("a").state == armor::cache_state::fresh);
  CHECK(c.stats().refreshes == 3);
}

TEST_CASE("cache: a caller's timeout bounds its wait for another caller's fill; stale-if-error still answers",
          "[cache]") {
  // Over a manual clock a waiting caller moves the clock to its deadline
  // (as the coalescer does), so nothing here sleeps or races: the second
  // caller joins only once the first one's operation is running.
  clock_t_ clock;
  text_cache c({.max_age = 600s, .stale_if_error = 1200s, .shards = 1}, clock);
  std::atomic<bool> running{false};
  std::atomic<bool> release{false};
  auto slow = [&] {
    running = true;
    while (!release.load()) std::this_thread::yield();
    return std::string("fresh body");
  };
  auto never = []() -> std::string { throw std::logic_error("a joining caller's operation is not run"); };

  SECTION("no entry: the caller leaves with deadline_exceeded, the fill goes on") {
    std::optional<armor::cache_answer<std::string>> first;
    std::thread leader([&] { first = c.execute("k", slow); });
    while (!running.load()) std::this_thread::yield();
    const auto start = clock.now();
    auto r = c.try_execute("k", never, {.timeout = 5s});
    CHECK(r.code() == armor::errc::deadline_exceeded);
    CHECK(clock.now() - start == 5s);
    release = true;
    leader.join();
    REQUIRE(first);
    CHECK(first->origin == armor::cache_origin::live);
    CHECK(*first->value == "fresh body");
    CHECK(c.flights().stats().executions == 1);
    CHECK(c.flights().stats().abandoned == 1);
  }
  SECTION("an entry within stale-if-error: the caller that gives up gets it, marked stale") {
    (void)c.execute("k", [] { return std::string("old body"); });
    clock.advance(700s);
    std::optional<armor::cache_answer<std::string>> first;
    std::thread leader([&] { first = c.execute("k", slow); });
    while (!running.load()) std::this_thread::yield();
    auto a = c.execute("k", never, {.timeout = 5s});
    CHECK(a.origin == armor::cache_origin::stale);
    CHECK(*a.value == "old body");
    CHECK(a.error == armor::errc::deadline_exceeded);
    release = true;
    leader.join();
    REQUIRE(first);
    CHECK(first->origin == armor::cache_origin::live);
    CHECK(c.lookup("k").state == armor::cache_state::fresh);
  }
}
