// The driver allocates nothing per call on the success path.
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <atomic>
#include <functional>
#include <string>

using namespace std::chrono_literals;

namespace {

struct counting_policy {
  using permit_type = armor::no_permit;
  std::atomic<long> admitted{0};
  armor::admission<> admit(armor::context&) noexcept {
    admitted.fetch_add(1, std::memory_order_relaxed);
    return armor::admission<>::admit();
  }
  void settle(armor::context&, armor::no_permit, const armor::verdict&) noexcept {}
};

}  // namespace

TEST_CASE("execute allocates nothing on the success path") {
  armor::manual_clock clock;
  counting_policy counter;
  auto p = armor::pipeline{clock, armor::deadline{2s}, std::ref(counter), armor::deadline{500ms}};
  long sum = 0;
  (void)p.execute([&] { return 1; });  // warm-up: nothing lazy should be left
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    sum += p.execute([&](const armor::context& ctx) { return static_cast<long>(ctx.attempt()); });
  }
  CHECK(scope.allocations() == 0);
  CHECK(sum == 1000);
  CHECK(counter.admitted.load() == 1001);
}

TEST_CASE("try_execute and void operations allocate nothing on the success path") {
  auto p = armor::pipeline{armor::steady_clock{}, armor::deadline{1s}};
  int calls = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    auto r = p.try_execute([&] { ++calls; });
    if (!r.has_value()) FAIL("unexpected failure");
  }
  CHECK(scope.allocations() == 0);
  CHECK(calls == 1000);
}

TEST_CASE("the five-policy pipeline of bench_pipeline allocates nothing per call") {
  // deadline + backoff + breaker + bucket + bulkhead over steady_clock, the
  // policies shared as a service holds them (issue #23's pipeline).
  armor::circuit_breaker breaker{};
  armor::token_bucket bucket{{.rate = {1'000'000'000, 1s}, .burst = 1'000'000}};
  armor::bulkhead slots{{.max_concurrent = 64}};
  const auto p = armor::pipeline{armor::deadline{2s}, armor::backoff{{.max_attempts = 3}}, std::ref(breaker),
                                 std::ref(bucket), std::ref(slots)};
  long sum = 0;
  sum += p.execute([] { return 1L; });  // warm-up
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) sum += p.execute([] { return 1L; });
  CHECK(scope.allocations() == 0);
  CHECK(sum == 1001);
  CHECK(slots.in_use() == 0);
}

TEST_CASE("the counting allocator sees allocations (the test can fail)") {
  armor_test::allocation_scope scope;
  auto* s = new std::string(200, 'x');
  delete s;
  CHECK(scope.allocations() >= 1);
}
