// What the Asio driver allocates per call with operator new: nothing (the
// policies' permits, the deadline's timer wait, the cancellation handlers
// and the attempt's co_spawn all use Asio's recycling). Asio allocates
// coroutine frames with aligned_alloc, which the counting allocator does not
// replace: the last test counts those through an aligned_alloc of this
// executable's own (without sanitizers, which provide theirs). Asio 1.22
// recycles two frames per thread of at most 1020 bytes; the driver's frame
// is under that, so a call without a deadline allocates no frame at all
// (docs/performance.md, Asio driver). Built only with Asio.
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
#include <cstdlib>
#include <exception>
#include <functional>

using namespace std::chrono_literals;

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define ARMOR_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ARMOR_TEST_SANITIZED 1
#endif

#if !defined(ARMOR_TEST_SANITIZED)
namespace {
thread_local std::size_t aligned_allocations = 0;
}

// Replaces the C library's for this executable: counts, then allocates
// with posix_memalign (freed by free, as aligned_alloc's memory is).
extern "C" void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  ++aligned_allocations;
  void* p = nullptr;
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  if (posix_memalign(&p, alignment, size) != 0) return nullptr;
  return p;
}
#endif

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

TEST_CASE("asio pipeline: without a deadline, Asio recycles the call's frame", "[alloc][asio][pipeline]") {
#if defined(ARMOR_TEST_SANITIZED)
  SUCCEED("not counted under sanitizers (they replace aligned_alloc)");
#else
  armor::circuit_breaker breaker{{.failure_threshold = 5, .open_for = 30s}};
  armor::token_bucket bucket{{.rate = {1'000'000, 1s}, .burst = 100'000}};
  const auto empty = armor::pipeline{};
  const auto policies = armor::pipeline{armor::backoff{{.max_attempts = 3}}, std::ref(breaker), std::ref(bucket)};
  const auto frames_of = [](auto call) {
    const std::size_t before = aligned_allocations;
    (void)allocations_of(call);  // 110 calls, 10 of them warming Asio's caches
    return aligned_allocations - before;
  };
  // The counted loop's own coroutine and the first calls take a few; a
  // frame allocated every call would take more than 100.
  CHECK(frames_of([&](int x) { return empty.async_execute([x] { return operation(x); }); }) < 10);
  CHECK(frames_of([&](int x) { return policies.async_execute([x] { return operation(x); }); }) < 10);
#endif
}
