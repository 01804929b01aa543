// A policy in shadow mode allocates nothing per call: admitted, would
// refuse, would wait, would queue, with a listener, over a keyed map whose
// keys exist, and in standalone use.
#include <armor/bulkhead.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/shadow.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <cstdint>
#include <functional>

using namespace std::chrono_literals;

namespace {
struct counting_listener {
  std::uint64_t* heard;
  void operator()(const armor::shadow_event& e) const noexcept { *heard += e.key.size() + 1; }
};
}  // namespace

TEST_CASE("shadow<token_bucket> in a pipeline allocates nothing per call, listener included", "[alloc][shadow]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  std::uint64_t heard = 0;
  armor::shadow<bucket, counting_listener> trial{bucket{{.rate = {100, 1s}, .burst = 5, .max_wait = 20ms}, clock},
                                                 {.count_calls = true}, counting_listener{&heard}};
  auto p = armor::pipeline{clock, std::ref(trial)};
  (void)p.try_execute([] { return 0; });  // warm-up
  long ok = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 2000; ++i) {
    if (p.try_execute([] { return 1; }, {.key = "10.0.0.1", .cost = 1 + i % 3}).ok()) ++ok;
    clock.advance(5ms);
  }
  auto d = trial.try_acquire();
  (void)trial.stats();
  CHECK(scope.allocations() == 0);
  CHECK(ok == 2000);
  CHECK(d);
  const armor::shadow_stats s = trial.stats();
  CHECK(s.would_refuse() > 0);
  CHECK(s.would_wait > 0);
  CHECK(heard > 0);
}

TEST_CASE("shadow over a keyed map allocates nothing for keys it holds", "[alloc][shadow]") {
  armor::manual_clock clock;
  using bucket = armor::token_bucket<armor::manual_clock>;
  armor::keyed<bucket> per_ip{{.rate = {10, 1s}, .burst = 2}, {.max_keys = 16}, clock};
  armor::shadow trial{std::ref(per_ip)};
  auto p = armor::pipeline{clock, std::ref(trial)};
  (void)p.try_execute([] {}, {.key = "a"});
  (void)p.try_execute([] {}, {.key = "b"});
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    (void)p.try_execute([] {}, {.key = i % 2 == 0 ? "a" : "b"});
    clock.advance(10ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(trial.stats().rate_limited > 0);
}

TEST_CASE("shadow<bulkhead> and shadow<quota_tracker> allocate nothing per call", "[alloc][shadow]") {
  armor::manual_clock clock;
  armor::shadow full{armor::bulkhead<>{{.max_concurrent = 1, .max_queue = 2}}};
  armor::quota_tracker<armor::manual_clock> quota{{.windows = {armor::quota_window::per_minute(50)}}, clock};
  armor::shadow over{std::ref(quota)};
  auto p = armor::pipeline{clock, std::ref(full), std::ref(over)};
  (void)p.try_execute([] {});
  armor_test::allocation_scope scope;
  for (int i = 0; i < 500; ++i) {
    auto r = p.try_execute([&] { return p.try_execute([] { return 1; }).ok(); });  // the inner call would queue
    CHECK(r.ok());
    clock.advance(10ms);
  }
  CHECK(scope.allocations() == 0);
  CHECK(full.stats().would_queue == 500);
  CHECK(over.stats().quota_exhausted > 0);
}
