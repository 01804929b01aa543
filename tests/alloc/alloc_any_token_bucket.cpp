// armor::any_token_bucket built from memory: allocates nothing per call:
// try_acquire with and without a key (once the key has its bucket), and as
// a pipeline layer keyed by call_options::key. The backend, and each key's
// bucket, were allocated once, when first needed.
#include <armor/any_token_bucket.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>
#include <string_view>

using namespace std::chrono_literals;

TEST_CASE("any_token_bucket (memory:) allocates nothing per call, keyed or not") {
  armor::manual_clock clock;
  armor::any_token_bucket<armor::manual_clock> b =
      armor::make_token_bucket("memory:", {.rate = {1000, 1s}, .burst = 10}, {.name = "alloc"}, clock);
  auto p = armor::pipeline{clock, std::ref(b)};
  // A key longer than a std::string keeps inline: its lookup must not copy it.
  constexpr std::string_view keys[] = {"10.0.0.1", "2001:db8:85a3:8d3:1319:8a2e:370:7348"};
  for (const std::string_view k : keys) (void)b.try_acquire(k, 1);  // each key's bucket, made once
  long granted = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    granted += b.try_acquire(1 + i % 3) ? 1 : 0;
    granted += b.try_acquire(keys[i % 2], 1) ? 1 : 0;
    granted += p.try_execute([] { return 1; }, {.key = keys[(i + 1) % 2]}).has_value() ? 1 : 0;
    granted += p.try_execute([] { return 1; }).has_value() ? 1 : 0;
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted > 1000);
}
