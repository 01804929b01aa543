// armor::coalescer under Asio: one io_context on this thread, operations
// gated on channels the test fills, waiters cancelled through their own
// cancellation signals. Everything advances by io.poll(); nothing sleeps.
#include <armor/asio.hpp>
#include <armor/coalesce.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/experimental/channel.hpp>
#include <asio/experimental/concurrent_channel.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

using gate_type = asio::experimental::channel<void(std::error_code, int)>;

// A shared operation: waits for the gate to open and returns what it was
// given (or throws boom when given a negative number); counts its runs and
// the runs that were cancelled.
struct gated {
  gate_type gate;
  int runs = 0;
  int cancelled = 0;

  explicit gated(asio::io_context& io) : gate(io, 1) {}

  asio::awaitable<int> operator()() {
    ++runs;
    auto [e, v] = co_await gate.async_receive(asio::experimental::as_tuple(asio::use_awaitable));
    if (e) {
      ++cancelled;
      throw std::system_error(e);
    }
    if (v < 0) throw armor_test::boom{};
    co_return v;
  }
};

// One caller of the coalescer: its own cancellation signal and its result.
struct caller {
  asio::cancellation_signal cancel;
  std::optional<armor::result<int>> got;
};

template <class C>
void start(asio::io_context& io, C& c, gated& op, caller& who, armor::coalescer_call_options o = {}) {
  // (co_spawn with a handler needs a default-constructible value, which
  // armor::result is not: store it from a coroutine of our own.)
  asio::co_spawn(
      io,
      [&c, &op, &who, o]() -> asio::awaitable<void> {
        auto r = co_await c.async_try_execute(1, [&op] { return op(); }, o);
        who.got.emplace(std::move(r));
      },
      asio::bind_cancellation_slot(who.cancel.slot(), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      }));
}

void settle(asio::io_context& io) {
  io.restart();
  io.poll();
}

}  // namespace

TEST_CASE("asio coalescer: three concurrent callers share one execution", "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  std::array<caller, 3> callers;
  for (auto& who : callers) start(io, c, op, who);
  settle(io);
  CHECK(op.runs == 1);
  CHECK(c.stats().executions == 1);
  CHECK(c.stats().joined == 2);
  CHECK(op.gate.try_send(std::error_code{}, 42));
  settle(io);
  for (auto& who : callers) {
    REQUIRE(who.got.has_value());
    CHECK(who.got->ok());
    CHECK(**who.got == 42);
  }
  CHECK(c.stats().in_flight == 0);
  CHECK_FALSE(c.in_flight(1));
}

TEST_CASE("asio coalescer: cancelling one of three leaves one execution; the others get the value",
          "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  std::array<caller, 3> callers;
  for (auto& who : callers) start(io, c, op, who);
  settle(io);
  callers[1].cancel.emit(asio::cancellation_type::terminal);
  settle(io);
  REQUIRE(callers[1].got.has_value());
  CHECK(callers[1].got->code() == armor::errc::cancelled);
  CHECK_FALSE(callers[0].got.has_value());
  CHECK(c.in_flight(1));
  // The leader (the first caller) can leave too: the operation goes on.
  callers[0].cancel.emit(asio::cancellation_type::terminal);
  settle(io);
  CHECK(callers[0].got->code() == armor::errc::cancelled);
  CHECK(op.cancelled == 0);
  CHECK(op.gate.try_send(std::error_code{}, 42));
  settle(io);
  REQUIRE(callers[2].got.has_value());
  CHECK(**callers[2].got == 42);
  CHECK(op.runs == 1);
  const auto st = c.stats();
  CHECK(st.executions == 1);
  CHECK(st.abandoned == 2);
  CHECK(st.cancelled == 0);
}

TEST_CASE("asio coalescer: when every caller has left, the operation is cancelled", "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  std::array<caller, 3> callers;
  for (auto& who : callers) start(io, c, op, who);
  settle(io);
  for (auto& who : callers) who.cancel.emit(asio::cancellation_type::terminal);
  settle(io);
  for (auto& who : callers) CHECK(who.got->code() == armor::errc::cancelled);
  CHECK(op.runs == 1);
  CHECK(op.cancelled == 1);
  CHECK(c.stats().cancelled == 1);
  CHECK(c.stats().in_flight == 0);
  // The next caller starts afresh.
  caller next;
  start(io, c, op, next);
  settle(io);
  CHECK(op.runs == 2);
  CHECK(op.gate.try_send(std::error_code{}, 7));
  settle(io);
  CHECK(**next.got == 7);
}

TEST_CASE("asio coalescer: the operation's exception reaches every waiter", "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  std::array<std::exception_ptr, 3> thrown;
  for (auto& e : thrown) {
    asio::co_spawn(io, c.async_execute(1, [&op] { return op(); }), [&e](std::exception_ptr x, int) { e = x; });
  }
  settle(io);
  CHECK(op.gate.try_send(std::error_code{}, -1));
  settle(io);
  for (auto& e : thrown) CHECK_THROWS_AS(std::rethrow_exception(e), armor_test::boom);
  CHECK(op.runs == 1);
}

TEST_CASE("asio coalescer: an armor error reaches every waiter", "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gate_type gate(io, 1);
  int runs = 0;
  auto op = [&]() -> asio::awaitable<armor::result<int>> {
    ++runs;
    co_await gate.async_receive(asio::use_awaitable);
    co_return armor::failure{armor::errc::rate_limited, 2s, nullptr};
  };
  std::array<std::optional<armor::result<int>>, 3> got;
  for (auto& g : got) {
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { g.emplace(co_await c.async_try_execute(1, op)); }, asio::detached);
  }
  settle(io);
  CHECK(gate.try_send(std::error_code{}, 0));
  settle(io);
  for (auto& g : got) {
    REQUIRE(g.has_value());
    CHECK(g->code() == armor::errc::rate_limited);
    CHECK(g->retry_after() == std::optional<std::chrono::nanoseconds>{2s});
  }
  CHECK(runs == 1);
}

TEST_CASE("asio coalescer: a caller during the flight joins it; after it, a new flight starts",
          "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  caller first;
  caller late;
  start(io, c, op, first);
  settle(io);
  start(io, c, op, late);
  settle(io);
  CHECK(op.runs == 1);
  CHECK(c.stats().joined == 1);
  CHECK(op.gate.try_send(std::error_code{}, 5));
  settle(io);
  CHECK(**first.got == 5);
  CHECK(**late.got == 5);
  caller after;
  start(io, c, op, after);
  settle(io);
  CHECK(op.runs == 2);
  CHECK(op.gate.try_send(std::error_code{}, 6));
  settle(io);
  CHECK(**after.got == 6);
  CHECK(c.stats().executions == 2);
}

TEST_CASE("asio coalescer: a waiter's timeout ends its wait only", "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  caller patient;
  caller hasty;
  start(io, c, op, patient);
  start(io, c, op, hasty, {.timeout = 1ms});
  while (!hasty.got) io.run_one();  // its 1 ms timer
  CHECK(hasty.got->code() == armor::errc::deadline_exceeded);
  CHECK_FALSE(patient.got.has_value());
  CHECK(op.gate.try_send(std::error_code{}, 9));
  settle(io);
  CHECK(**patient.got == 9);
  CHECK(op.cancelled == 0);
  CHECK(c.stats().abandoned == 1);
}

TEST_CASE("asio coalescer: a sync caller may join an Asio flight", "[asio][coalesce]") {
  asio::io_context io;
  armor::coalescer<int, int> c;
  gated op(io);
  caller async_caller;
  start(io, c, op, async_caller);
  settle(io);
  // Its operation never runs: it joins. (Run here after the value is in,
  // on the same thread, it would block: the flight ends first.)
  CHECK(op.gate.try_send(std::error_code{}, 3));
  settle(io);
  CHECK(**async_caller.got == 3);
  CHECK(c.execute(1, [] { return 4; }) == 4);  // the flight ended: a new one
}

TEST_CASE("asio coalescer: two threads, many callers, some leaving at once", "[asio][coalesce]") {
  // Run under ThreadSanitizer too: waiters and operations on two threads,
  // results published from the operations' strands, cancellations posted.
  // The operations of keys 0 to 2 wait for a gate (one value each),
  // opened once every caller has started or joined its flight, every
  // impatient caller has left (a result that is already there is taken
  // even by a caller whose timeout passed, so they must leave first), and
  // every cancelled operation has seen its cancellation (else a gate's one
  // value could go to a cancelled operation still waiting on it). Opened
  // earlier, a caller that a busy machine kept from running until its key's
  // flight had ended would start a second flight whose gate never opens.
  asio::io_context io(2);
  armor::coalescer<int, int> c({.shards = 2});
  using gate = asio::experimental::concurrent_channel<void(std::error_code, int)>;
  std::array<gate, 4> gates{gate(io, 1), gate(io, 1), gate(io, 1), gate(io, 1)};
  std::atomic<int> runs{0};
  std::atomic<int> aborted{0};
  std::atomic<int> values{0};
  std::atomic<int> gave_up{0};
  std::atomic<int> other{0};
  constexpr int callers = 400;
  int impatient_count = 0;
  for (int i = 0; i < callers; ++i) {
    const int key = i % 4;
    // Key 3 has only impatient callers (timeout 0): each leaves at once,
    // and the last one to leave cancels the operation. On keys 0 to 2
    // every 5th caller is impatient and the rest get the value.
    const bool impatient = key == 3 || i % 5 == 0;
    impatient_count += impatient ? 1 : 0;
    const auto timeout = impatient ? std::chrono::nanoseconds(0) : std::chrono::nanoseconds::max();
    asio::co_spawn(
        io,
        [&, key, timeout]() -> asio::awaitable<void> {
          auto op = [&, key]() -> asio::awaitable<int> {
            runs.fetch_add(1);
            auto [e, v] = co_await gates[static_cast<std::size_t>(key)].async_receive(
                asio::experimental::as_tuple(asio::use_awaitable));
            if (e) aborted.fetch_add(1);
            co_return v;
          };
          auto r = co_await c.async_try_execute(key, op, {.timeout = timeout});
          if (r && *r == key) {
            values.fetch_add(1);
          } else if (r.code() == armor::errc::deadline_exceeded) {
            gave_up.fetch_add(1);
          } else {
            other.fetch_add(1);
          }
        },
        asio::detached);
  }
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer tick(co_await asio::this_coro::executor);
        const auto all_settled = [&] {
          const auto st = c.stats();
          return st.executions + st.joined == static_cast<std::uint64_t>(callers) &&
                 st.abandoned == static_cast<std::uint64_t>(impatient_count) &&
                 static_cast<std::uint64_t>(aborted.load()) == st.cancelled;
        };
        while (!all_settled()) {
          tick.expires_after(100us);
          co_await tick.async_wait(asio::use_awaitable);
        }
        for (int k = 0; k < 3; ++k) (void)gates[static_cast<std::size_t>(k)].try_send(std::error_code{}, k);
      },
      asio::detached);
  std::thread second([&] { io.run(); });
  io.run();
  second.join();
  const auto st = c.stats();
  INFO("executions " << st.executions << ", joined " << st.joined << ", abandoned " << st.abandoned
                     << ", cancelled " << st.cancelled << ", operations aborted " << aborted.load());
  CHECK(other == 0);
  CHECK(gave_up == impatient_count);
  CHECK(values == callers - impatient_count);
  CHECK(st.executions + st.joined == callers);
  CHECK(st.executions == static_cast<std::uint64_t>(runs.load()));
  CHECK(st.executions == 3 + st.cancelled);  // keys 0 to 2 once each; key 3 each time its callers all left
  CHECK(st.abandoned == static_cast<std::uint64_t>(gave_up.load()));
  CHECK(st.cancelled >= 1);
  CHECK(st.cancelled == static_cast<std::uint64_t>(aborted.load()));
  CHECK(st.in_flight == 0);
  for (int k = 0; k < 4; ++k) CHECK_FALSE(c.in_flight(k));
}
