// The adaptive throttle allocates nothing per call: admitted and accepted,
// admitted and failed, refused locally (with a listener), taken back, and
// through keyed once the key exists. Its one allocation is the window, at
// construction.
#include <armor/adaptive_throttle.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {
struct refusals {
  long n = 0;
  void operator()(const armor::adaptive_throttle_event&) noexcept { ++n; }
};
}  // namespace

TEST_CASE("a pipeline with an adaptive throttle allocates nothing per call, admitted or refused",
          "[adaptive_throttle]") {
  armor::manual_clock clock;
  refusals heard;
  armor::adaptive_throttle throttle{armor::adaptive_throttle_options{}, clock, armor::seeded_rng{3}, std::ref(heard)};
  const auto p = armor::pipeline{clock, armor::classify{[](int status) {
                                   return status == 200 ? armor::verdict::success() : armor::verdict::throttled();
                                 }},
                                 std::ref(throttle)};
  (void)p.try_execute([] { return 200; });  // warm-up (the thread's first draw, the classifier)
  long ok = 0;
  long refused = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 200; })) ++ok;
    // Three 429s for each success: the throttle starts refusing.
    for (int j = 0; j < 3; ++j) {
      auto r = p.try_execute([] { return 429; });
      if (!r && r.code() == armor::errc::client_throttled) ++refused;
    }
    if (auto d = throttle.try_acquire()) {
      throttle.record(std::move(d).permit(), {armor::outcome::rejected, true, {}, armor::errc::circuit_open});
    }
    { auto dropped = throttle.try_acquire(); }  // dropped unsettled
    if (i % 10 == 0) clock.advance(1s);
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok > 0);
  CHECK(refused > 0);
  CHECK(heard.n > 0);
}

TEST_CASE("keyed adaptive throttles allocate nothing per call once the key exists", "[adaptive_throttle]") {
  armor::manual_clock clock;
  armor::keyed<armor::adaptive_throttle<armor::manual_clock>> per_host{{}, {.max_keys = 4}, clock};
  const auto p = armor::pipeline{clock, std::ref(per_host)};
  (void)p.try_execute([] { return 1; }, {.key = "api"});
  armor_test::allocation_scope scope;
  long ok = 0;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; }, {.key = "api"})) ++ok;
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 1000);
}
