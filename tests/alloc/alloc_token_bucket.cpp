// The token bucket allocates nothing per call (granted, denied, waiting, in a
// pipeline, with response headers), and armor::keyed allocates nothing to
// look up a key it already holds.
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("try_acquire, reserve and the header helpers allocate nothing") {
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1000, 1s}, .burst = 10}, clock};
  long granted = 0;
  std::size_t header_bytes = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    const auto d = b.try_acquire(1 + i % 3);
    if (d) ++granted;
    armor::http::rate_limit_headers(d, [&](std::string_view n, std::string_view v) { header_bytes += n.size() + v.size(); });
    const auto list = armor::http::rate_limit_headers(d);
    header_bytes += list.size();
    auto r = b.reserve(1, 5ms);
    header_bytes += armor::http::rate_limit_headers(r).size();
    if (i % 2 == 0) r.permit().commit();
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted > 0);
  CHECK(header_bytes > 0);
}

TEST_CASE("a pipeline with a token bucket allocates nothing per call, granted, waiting or rejected") {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::token_bucket{{.rate = {1, 1ms}, .burst = 2, .max_wait = 1ms}, clock}};
  long ok = 0;
  long limited = 0;
  (void)p.try_execute([] { return 0; });  // warm-up
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    auto r = p.try_execute([] { return 1; }, {.cost = 1 + i % 2});
    if (r.has_value()) {
      ++ok;
    } else {
      ++limited;
    }
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 0);
}

TEST_CASE("keyed lookup of an existing key allocates nothing, in a pipeline too") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_ip{{.rate = {100, 1s}, .burst = 5}, {.max_keys = 1000},
                                                                 clock};
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i) keys.push_back("203.0.113." + std::to_string(i) + "-with-a-long-suffix");
  for (const auto& k : keys) (void)per_ip.get(k);  // created: this allocates
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  long ok = 0;
  armor_test::allocation_scope scope;
  for (int round = 0; round < 10; ++round) {
    for (const auto& k : keys) {
      if (per_ip.get(k)->try_acquire()) ++ok;
      if (per_ip.find(k)) ++ok;
      if (p.try_execute([] { return 0; }, {.key = k}).has_value()) ++ok;
    }
    clock.advance(10ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 0);
}

TEST_CASE("changing the rate and the burst allocates nothing") {
  armor::manual_clock clock;
  armor::token_bucket b{{.rate = {1000, 1s}, .burst = 10}, clock};
  armor_test::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    b.set_rate({100 + i, 1s}, 5 + i % 7);
    b.set_rate({50 + i, 1s});
    b.set_burst(3 + i % 5);
    b.set_rate({7, 1min}, 2, armor::to_timestamp(clock.now()));
    clock.advance(1ms);
    (void)b.try_acquire();
  }
  CHECK(scope.allocations() == 0);
  CHECK(b.rate() == armor::rate{7, 1min});
}
