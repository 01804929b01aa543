// What the Asio driver allocates per call with operator new: nothing (the
// policies' permits, the deadline's timer wait, the cancellation handlers
// and the attempt's co_spawn all use Asio's recycling). Coroutine frames are
// not seen here: Asio allocates them with aligned_alloc, which the counting
// allocator does not replace, and a frame above Asio 1.22's recycling limit
// (1020 bytes; the driver's is about 1.2 KB with GCC 12) is allocated every
// call (docs/performance.md, Asio driver). Built only with Asio.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "alloc/counting_new.hpp"

#include <asio.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>

using namespace std::chrono_literals;

namespace {

asio::awaitable<int> operation(int x) { co_return x + 1; }

// An operation that suspends once (a post), so that the deadline's timer is
// armed while it runs.
asio::awaitable<int> suspending_operation(int x) {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  co_return x + 1;
}

// Runs `call` 10 times to warm Asio's caches, then 100 times counted; the
// count of allocations made by the counted calls.
template <class Call>
std::size_t allocations_of(Call call) {
  std::size_t counted = 1000;
  int sum = 0;
  asio::io_context io;
  std::exception_ptr failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 10; ++i) sum += co_await call(i);
        armor_test::allocation_scope scope;
        for (int i = 0; i < 100; ++i) sum += co_await call(i);
        counted = scope.allocations();
      },
      [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) std::rethrow_exception(failure);
  CHECK(sum == (45 + 4950) + 110);  // every call returned x + 1
  return counted;
}

}  // namespace

TEST_CASE("asio pipeline: a call makes no operator new allocation, with or without a deadline", "[alloc][asio][pipeline]") {
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::token_bucket bucket{{.rate = {1'000'000, 1s}, .burst = 100'000}};
  const auto empty = armor::pipeline{};
  const auto policies = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(breaker), std::ref(bucket)};
  const auto with_deadline = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}},
                                             std::ref(breaker), std::ref(bucket)};

  CHECK(allocations_of([&](int x) { return empty.async_execute([x] { return operation(x); }); }) == 0);
  CHECK(allocations_of([&](int x) { return policies.async_execute([x] { return operation(x); }); }) == 0);
  CHECK(allocations_of([&](int x) { return with_deadline.async_execute([x] { return operation(x); }); }) == 0);
  CHECK(allocations_of([&](int x) { return with_deadline.async_execute([x] { return suspending_operation(x); }); }) ==
        0);
}
