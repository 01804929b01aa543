// The window limiters allocate nothing per call (granted, denied, too large,
// with response headers, in a pipeline), and keyed windows allocate nothing
// to look up a key they already hold.
#include <armor/fixed_window.hpp>
#include <armor/http/rate_limit.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/sliding_window.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <cstddef>
#include <functional>
#include <string_view>

using namespace std::chrono_literals;

namespace {

template <class L>
void hammer_directly(L& limiter, armor::manual_clock& clock) {
  long granted = 0;
  std::size_t header_bytes = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    const armor::window_decision d = limiter.try_acquire(1 + i % 3);
    if (d) ++granted;
    armor::http::rate_limit_headers(d, [&](std::string_view n, std::string_view v) { header_bytes += n.size() + v.size(); });
    header_bytes += armor::http::rate_limit_headers(limiter.try_acquire(100)).size();  // too large
    (void)limiter.stats();
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(granted > 0);
  CHECK(header_bytes > 0);
}

template <class L>
void hammer_pipeline(L limiter, armor::manual_clock& clock) {
  auto p = armor::pipeline{clock, std::move(limiter)};
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
    clock.advance(100us);
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 0);
  CHECK(limited > 0);
}

}  // namespace

TEST_CASE("fixed and sliding windows allocate nothing per call", "[alloc]") {
  armor::manual_clock clock;
  armor::fixed_window fixed{{.limit = 20, .window = 10ms}, clock};
  hammer_directly(fixed, clock);
  armor::sliding_window exact{{.limit = 20, .window = 10ms, .segments = 10}, clock};
  hammer_directly(exact, clock);
  armor::sliding_window approx{
      {.limit = 20, .window = 10ms, .algorithm = armor::sliding_window_algorithm::approximate}, clock};
  hammer_directly(approx, clock);
}

TEST_CASE("a pipeline with a window limiter allocates nothing per call, granted or rejected", "[alloc]") {
  armor::manual_clock clock;
  hammer_pipeline(armor::fixed_window{{.limit = 10, .window = 5ms}, clock}, clock);
  hammer_pipeline(armor::sliding_window{{.limit = 10, .window = 5ms, .segments = 5}, clock}, clock);
  hammer_pipeline(
      armor::sliding_window{{.limit = 10, .window = 5ms, .algorithm = armor::sliding_window_algorithm::approximate},
                            clock},
      clock);
}

TEST_CASE("keyed windows look up an existing key without allocating", "[alloc]") {
  armor::manual_clock clock;
  armor::keyed<armor::sliding_window<armor::manual_clock>> per_ip{{.limit = 5, .window = 1s, .segments = 10},
                                                                  {.max_keys = 16}, clock};
  auto p = armor::pipeline{clock, std::ref(per_ip)};
  (void)p.try_execute([] { return 0; }, {.key = "192.0.2.1"});  // creates the key
  armor_test::allocation_scope scope;
  long ok = 0;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; }, {.key = "192.0.2.1"}).has_value()) ++ok;
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 0);
}

TEST_CASE("a per-IP and a per-bucket keyed layer pick their keys without allocating", "[alloc]") {
  armor::manual_clock clock;
  armor::keyed<armor::fixed_window<armor::manual_clock>> per_ip{{.limit = 1000, .window = 1s}, {.max_keys = 16}, clock};
  armor::keyed<armor::sliding_window<armor::manual_clock>> per_bucket{
      {.limit = 1000, .window = 1s, .segments = 10}, {.max_keys = 16, .key = armor::key_source::slot(1)}, clock};
  auto p = armor::pipeline{clock, std::ref(per_ip), std::ref(per_bucket)};
  (void)p.try_execute([] { return 0; }, {.key = "192.0.2.1", .keys = {"", "photos"}});  // creates the keys
  armor_test::allocation_scope scope;
  long ok = 0;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; }, {.key = "192.0.2.1", .keys = {"", "photos"}}).has_value()) ++ok;
    clock.advance(1ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 0);
  CHECK(per_ip.size() == 1);
  CHECK(per_bucket.size() == 1);
  CHECK(per_bucket.find("photos"));
}
