// armor::cache under Asio, on manual_clock: one io_context on this thread,
// operations gated on channels the test fills, callers cancelled through
// their own cancellation signals. Everything advances by io.poll() or
// io.run_one(); nothing sleeps. The last test runs two threads whose
// operations never wait for anything, so it cannot hang on a busy machine.
#include <armor/asio.hpp>
#include <armor/cache.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/experimental/channel.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

using namespace std::chrono_literals;

namespace {

using clock_type = armor::manual_clock;
using text_cache = armor::cache<std::string, std::string, clock_type>;
using gate_type = asio::experimental::channel<void(std::error_code, int)>;
using answer_result = armor::result<armor::cache_answer<std::string>>;

// The upstream: each call waits for the gate; the number it receives picks
// the outcome: >= 0 a value ("v" and the call's number), -1 an exception,
// -2 an armor failure (circuit_open), -3 a value the pipeline judged a
// failure, -4 a value not to be stored (no-store).
struct gated {
  gate_type gate;
  int calls = 0;
  int aborted = 0;

  explicit gated(asio::io_context& io) : gate(io, 1) {}

  asio::awaitable<armor::result<armor::cache_item<std::string>>> operator()() {
    const int call = ++calls;
    auto [e, v] = co_await gate.async_receive(asio::experimental::as_tuple(asio::use_awaitable));
    if (e) {
      ++aborted;
      throw std::system_error(e);
    }
    std::string value = "v";
    value += std::to_string(call);
    if (v == -1) throw armor_test::boom{};
    if (v == -2) co_return armor::failure{armor::errc::circuit_open, std::nullopt, nullptr};
    armor::cache_item<std::string> item{std::make_shared<const std::string>(std::move(value)), std::nullopt, v != -4};
    if (v == -3) co_return armor::result<armor::cache_item<std::string>>(armor::detail::judged_failure, std::move(item));
    co_return item;
  }

  bool open(int v = 0) { return gate.try_send(std::error_code{}, v); }
};

// One caller: its own cancellation signal and its answer.
struct caller {
  asio::cancellation_signal cancel;
  std::optional<answer_result> got;
};

void start(asio::io_context& io, text_cache& c, const std::string& key, gated& op, caller& who,
           armor::coalescer_call_options o = {}) {
  asio::co_spawn(
      io,
      [&c, key, &op, &who, o]() -> asio::awaitable<void> {
        who.got.emplace(co_await c.async_try_execute(key, [&op] { return op(); }, o));
      },
      asio::bind_cancellation_slot(who.cancel.slot(), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      }));
}

void settle(asio::io_context& io) {
  io.restart();
  io.poll();
}

armor::cache_options rfc_options() {
  return {.max_age = 600s, .stale_while_revalidate = 30s, .stale_if_error = 1200s, .max_entries = 64, .shards = 4};
}

armor::cache_origin origin(const caller& who) {
  REQUIRE(who.got.has_value());
  REQUIRE(who.got->has_value());
  return (*who.got)->origin;
}

const std::string& value(const caller& who) {
  REQUIRE(who.got.has_value());
  REQUIRE(who.got->has_value());
  return *(**who.got).value;
}

}  // namespace

TEST_CASE("asio cache: a miss runs one call for three callers; a fresh hit returns without suspending",
          "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c(rfc_options(), clock);
  gated op(io);
  std::array<caller, 3> callers;
  for (auto& who : callers) start(io, c, "k", op, who);
  settle(io);
  CHECK(op.calls == 1);
  CHECK(c.flights().stats().executions == 1);
  CHECK(c.flights().stats().joined == 2);
  CHECK(op.open());
  settle(io);
  for (auto& who : callers) {
    CHECK(origin(who) == armor::cache_origin::live);
    CHECK(value(who) == "v1");
  }
  CHECK(c.stats().misses == 3);
  CHECK(c.stats().stores == 1);

  // A fresh hit: the coroutine that asks runs to its end in the one
  // handler that starts it (a suspension would need a second one).
  caller hit;
  start(io, c, "k", op, hit);
  io.restart();
  CHECK(io.run_one() == 1);
  CHECK(origin(hit) == armor::cache_origin::fresh);
  CHECK(value(hit) == "v1");
  CHECK(op.calls == 1);
  CHECK(c.stats().hits == 1);
}

TEST_CASE("asio cache: max-age 600 s, swr 30 s: at 601 s stale answers at once and one background refresh runs; "
          "at 631 s a miss",
          "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 4}, clock);
  gated op(io);
  c.insert("k", std::string("v0"));
  clock.advance(601s);
  std::array<caller, 4> callers;
  for (auto& who : callers) start(io, c, "k", op, who);
  settle(io);
  // Every caller answered stale at once; the refresh waits on the gate.
  for (auto& who : callers) {
    CHECK(origin(who) == armor::cache_origin::stale);
    CHECK(value(who) == "v0");
  }
  CHECK(op.calls == 1);
  CHECK(c.stats().refreshes == 1);
  CHECK(c.stats().stale_hits == 4);
  CHECK(c.flights().in_flight("k"));
  CHECK(op.open());
  settle(io);
  CHECK_FALSE(c.flights().in_flight("k"));
  CHECK(c.lookup("k").state == armor::cache_state::fresh);
  caller after;
  start(io, c, "k", op, after);
  settle(io);
  CHECK(origin(after) == armor::cache_origin::fresh);
  CHECK(value(after) == "v1");

  // 631 s after the refresh stored it: past max-age + swr, a miss.
  clock.advance(631s);
  CHECK(c.lookup("k").state == armor::cache_state::miss);
  caller missed;
  start(io, c, "k", op, missed);
  settle(io);
  CHECK_FALSE(missed.got.has_value());
  CHECK(op.open());
  settle(io);
  CHECK(origin(missed) == armor::cache_origin::live);
  CHECK(value(missed) == "v2");
  CHECK(op.calls == 2);
  CHECK(c.stats().refreshes == 1);
}

TEST_CASE("asio cache: stale-if-error 1200 s: a failure at 700 s answers the entry; at 1801 s it reaches the caller",
          "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c(rfc_options(), clock);
  gated op(io);
  c.insert("k", std::string("v0"));
  clock.advance(700s);
  CHECK(c.lookup("k").state == armor::cache_state::stale_if_error);
  for (const int failure : {-1, -2, -3}) {
    caller who;
    start(io, c, "k", op, who);
    settle(io);
    CHECK(op.open(failure));
    settle(io);
    CHECK(origin(who) == armor::cache_origin::stale);
    CHECK(value(who) == "v0");
    const auto expected = failure == -2 ? armor::errc::circuit_open : armor::errc::operation_failed;
    CHECK((**who.got).error == std::error_code(expected));
  }
  CHECK(c.stats().stale_on_error == 3);
  CHECK(c.lookup("k").state == armor::cache_state::stale_if_error);  // nothing stored

  clock.advance(1101s);  // 1801 s: past max-age + stale-if-error
  caller late;
  start(io, c, "k", op, late);
  settle(io);
  CHECK(op.open(-2));
  settle(io);
  REQUIRE(late.got.has_value());
  CHECK(late.got->code() == armor::errc::circuit_open);
  // A judged failure reaches the caller with its value, as the sync driver's.
  caller judged;
  start(io, c, "k", op, judged);
  settle(io);
  CHECK(op.open(-3));
  settle(io);
  REQUIRE(judged.got.has_value());
  CHECK(judged.got->has_value());
  CHECK_FALSE(judged.got->ok());
  CHECK(c.stats().stale_on_error == 3);
}

TEST_CASE("asio cache: cancelling one of three waiting callers leaves one call; the others get the value",
          "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c(rfc_options(), clock);
  gated op(io);
  std::array<caller, 3> callers;
  for (auto& who : callers) start(io, c, "k", op, who);
  settle(io);
  callers[0].cancel.emit(asio::cancellation_type::terminal);  // the first: it started the flight
  settle(io);
  REQUIRE(callers[0].got.has_value());
  CHECK(callers[0].got->code() == armor::errc::cancelled);
  CHECK(c.flights().in_flight("k"));
  CHECK(op.aborted == 0);
  CHECK(op.open());
  settle(io);
  CHECK(value(callers[1]) == "v1");
  CHECK(value(callers[2]) == "v1");
  CHECK(op.calls == 1);
  CHECK(c.flights().stats().abandoned == 1);
  CHECK(c.flights().stats().cancelled == 0);
  CHECK(c.lookup("k").state == armor::cache_state::fresh);
}

TEST_CASE("asio cache: a cancelled caller is not answered stale; when every caller has left, the call is cancelled",
          "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c(rfc_options(), clock);
  gated op(io);
  c.insert("k", std::string("v0"));
  clock.advance(700s);  // within stale-if-error only: callers wait for the call
  std::array<caller, 2> callers;
  for (auto& who : callers) start(io, c, "k", op, who);
  settle(io);
  for (auto& who : callers) who.cancel.emit(asio::cancellation_type::terminal);
  settle(io);
  for (auto& who : callers) {
    REQUIRE(who.got.has_value());
    CHECK(who.got->code() == armor::errc::cancelled);
  }
  CHECK(op.calls == 1);
  CHECK(op.aborted == 1);
  CHECK(c.flights().stats().cancelled == 1);
  CHECK_FALSE(c.flights().in_flight("k"));
  CHECK(c.stats().stale_on_error == 0);
}

TEST_CASE("asio cache: the operation's exception reaches every waiter of a miss", "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c(rfc_options(), clock);
  gated op(io);
  std::array<std::exception_ptr, 3> thrown;
  // The key is read in place when the call starts (after co_spawn returns):
  // it must outlive the call, so not a temporary "k" here.
  const std::string key = "k";
  for (auto& e : thrown) {
    asio::co_spawn(io, c.async_execute(key, [&op] { return op(); }),
                   [&e](std::exception_ptr x, const armor::cache_answer<std::string>&) { e = x; });
  }
  settle(io);
  CHECK(op.open(-1));
  settle(io);
  for (auto& e : thrown) CHECK_THROWS_AS(std::rethrow_exception(e), armor_test::boom);
  CHECK(op.calls == 1);
  CHECK(c.stats().entries == 0);
}

TEST_CASE("asio cache: a failed refresh keeps the stale entry and the next stale caller refreshes again",
          "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 4}, clock);
  gated op(io);
  c.insert("k", std::string("v0"));
  clock.advance(601s);
  caller first;
  start(io, c, "k", op, first);
  settle(io);
  CHECK(origin(first) == armor::cache_origin::stale);
  // The caller that started the refresh is gone; cancelling its signal now
  // reaches nobody, and the refresh goes on.
  first.cancel.emit(asio::cancellation_type::terminal);
  settle(io);
  CHECK(op.aborted == 0);
  CHECK(op.open(-1));
  settle(io);
  CHECK(c.stats().refresh_failures == 1);
  CHECK(c.lookup("k").state == armor::cache_state::stale);
  caller second;
  start(io, c, "k", op, second);
  settle(io);
  CHECK(origin(second) == armor::cache_origin::stale);
  CHECK(op.calls == 2);
  CHECK(c.stats().refreshes == 2);
  CHECK(op.open(-4));  // no-store: not stored, so the claim is given back again
  settle(io);
  CHECK(c.stats().not_stored == 1);
  CHECK(c.lookup("k").state == armor::cache_state::stale);
  caller third;
  start(io, c, "k", op, third);
  settle(io);
  CHECK(op.open(0));
  settle(io);
  CHECK(op.calls == 3);
  const auto l = c.lookup("k");
  CHECK(l.state == armor::cache_state::fresh);
  CHECK(*l.value == "v3");
}

TEST_CASE("asio cache: a miss during a background refresh joins it", "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 4}, clock);
  gated op(io);
  c.insert("k", std::string("v0"));
  clock.advance(601s);
  caller stale;
  start(io, c, "k", op, stale);
  settle(io);
  CHECK(origin(stale) == armor::cache_origin::stale);
  CHECK(c.erase("k"));
  caller missed;
  start(io, c, "k", op, missed);
  settle(io);
  CHECK_FALSE(missed.got.has_value());
  CHECK(c.flights().stats().joined == 1);
  CHECK(op.open());
  settle(io);
  CHECK(origin(missed) == armor::cache_origin::live);
  CHECK(value(missed) == "v1");
  CHECK(op.calls == 1);
}

TEST_CASE("asio cache: max_refreshes bounds the background refreshes", "[asio][cache]") {
  asio::io_context io;
  clock_type clock;
  text_cache c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 4, .max_refreshes = 1},
               clock);
  gated op(io);
  c.insert("a", std::string("a0"));
  c.insert("b", std::string("b0"));
  clock.advance(601s);
  caller a;
  caller b;
  start(io, c, "a", op, a);
  settle(io);
  start(io, c, "b", op, b);
  settle(io);
  CHECK(origin(a) == armor::cache_origin::stale);
  CHECK(origin(b) == armor::cache_origin::stale);
  CHECK(op.calls == 1);
  CHECK(c.stats().refreshes == 1);
  CHECK(c.stats().refreshes_skipped == 1);
  CHECK(op.open());
  settle(io);
  // The slot is free again: the next stale caller of "b" refreshes it.
  caller b2;
  start(io, c, "b", op, b2);
  settle(io);
  CHECK(op.calls == 2);
  CHECK(op.open());
  settle(io);
  CHECK(c.lookup("a").state == armor::cache_state::fresh);
  CHECK(c.lookup("b").state == armor::cache_state::fresh);
  CHECK(*c.lookup("b").value == "v2");
}

TEST_CASE("asio cache: a refresh that never runs ends its flight and gives its claim back", "[asio][cache]") {
  clock_type clock;
  text_cache c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 4, .max_refreshes = 1},
               clock);
  c.insert("k", std::string("v0"));
  clock.advance(601s);
  {
    asio::io_context io;
    gated op(io);
    caller who;
    start(io, c, "k", op, who);
    settle(io);
    CHECK(origin(who) == armor::cache_origin::stale);
    CHECK(c.flights().in_flight("k"));
  }  // the io_context goes with the refresh suspended in it
  CHECK_FALSE(c.flights().in_flight("k"));
  asio::io_context io;
  gated op(io);
  caller next;
  start(io, c, "k", op, next);
  settle(io);
  CHECK(op.calls == 1);  // refreshed again: the claim and the one refresh slot were given back
  CHECK(op.open());
  settle(io);
  CHECK(c.lookup("k").state == armor::cache_state::fresh);
}

TEST_CASE("asio cache: two threads, many callers on few keys, stale and missing", "[asio][cache]") {
  // Run under ThreadSanitizer too. Keys 0 to 3 are stale (one background
  // refresh each), keys 4 to 7 absent (one call each, unless a caller comes
  // after the call stored: then it is a hit). The operations hop through a
  // post and never wait for an event, so the test ends whatever the
  // scheduling; its checks hold for every interleaving.
  asio::io_context io(2);
  clock_type clock;
  armor::cache<int, int, clock_type> c({.max_age = 600s, .stale_while_revalidate = 30s, .max_entries = 64, .shards = 2},
                                       clock);
  for (int k = 0; k < 4; ++k) c.insert(k, -1);
  clock.advance(601s);
  std::atomic<int> runs{0};
  std::atomic<int> wrong{0};
  constexpr int callers = 400;
  for (int i = 0; i < callers; ++i) {
    const int key = i % 8;
    asio::co_spawn(
        io,
        [&, key]() -> asio::awaitable<void> {
          auto op = [&, key]() -> asio::awaitable<int> {
            runs.fetch_add(1);
            co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
            co_return key * 10;
          };
          auto r = co_await c.async_try_execute(key, op);
          bool ok = r.ok();
          if (ok) {
            const armor::cache_answer<int>& a = *r;
            ok = *a.value == (a.origin == armor::cache_origin::stale ? -1 : key * 10);
          }
          if (!ok) wrong.fetch_add(1);
        },
        asio::detached);
  }
  std::thread second([&] { io.run(); });
  io.run();
  second.join();
  const auto st = c.stats();
  const auto fl = c.flights().stats();
  INFO("hits " << st.hits << ", stale " << st.stale_hits << ", misses " << st.misses << ", refreshes "
               << st.refreshes << ", executions " << fl.executions << ", joined " << fl.joined);
  CHECK(wrong == 0);
  CHECK(st.refreshes == 4);
  // A caller that missed just before a call stored may start a flight of
  // its own after that one ended: it finds the stored entry, calls nothing.
  CHECK(fl.executions >= 8);
  CHECK(runs == 8);
  CHECK(st.stores == 4 + 8);  // the inserts, then one store per key
  CHECK(st.hits + st.stale_hits + st.misses == callers);
  CHECK(fl.executions + fl.joined == st.misses + st.refreshes);
  CHECK(fl.in_flight == 0);
  for (int k = 0; k < 8; ++k) {
    const auto l = c.lookup(k);
    CHECK(l.state == armor::cache_state::fresh);
    CHECK(*l.value == k * 10);
  }
}
