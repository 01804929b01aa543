// backoff allocates nothing per call, on success and on retries of error values.
#include <armor/backoff.hpp>
#include <armor/deadline.hpp>
#include <armor/pipeline.hpp>
#include "armor_catch.hpp"
#include "counting_new.hpp"
#include <system_error>
using namespace std::chrono_literals;

TEST_CASE("backoff allocates nothing per call") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{1h},
                           armor::backoff{{.max_attempts = 3, .budget = armor::retry_budget{}, .count_calls = true}}};
  (void)p.execute([] { return 1; });
  (void)p.execute([] { return std::make_error_code(std::errc::timed_out); });
  armor_test::allocation_scope scope;
  long sum = 0;
  for (int i = 0; i < 1000; ++i) sum += p.execute([] { return 1; });
  int calls = 0;
  for (int i = 0; i < 100; ++i) {
    auto ec = p.execute([&] { return ++calls % 3 ? std::make_error_code(std::errc::timed_out) : std::error_code{}; });
    (void)ec;
  }
  CHECK(scope.allocations() == 0);
  CHECK(sum == 1000);
  CHECK(calls > 100);
}
