// The bulkhead allocates nothing per call (admitted, refused, queued on a
// manual clock), and neither does a fallback (recovering or not).
#include <armor/bulkhead.hpp>
#include <armor/fallback.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <functional>
#include <system_error>

using namespace std::chrono_literals;

TEST_CASE("a pipeline with a bulkhead allocates nothing per call, admitted, refused or queued") {
  armor::manual_clock clock;
  armor::bulkhead fail_fast{{.max_concurrent = 1}};
  armor::bulkhead queueing{{.max_concurrent = 1, .max_queue = 4, .max_wait = 1ms}};
  auto p = armor::pipeline{clock, std::ref(fail_fast)};
  auto q = armor::pipeline{clock, std::ref(queueing)};
  (void)p.try_execute([] { return 0; });  // warm-up
  (void)q.try_execute([] { return 0; });
  long ok = 0;
  long full = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; })) ++ok;
    armor::bulkhead_permit held = fail_fast.try_acquire().permit();
    if (!p.try_execute([] { return 1; })) ++full;  // refused
    held.release();
    armor::bulkhead_permit busy = queueing.try_acquire().permit();
    if (!q.try_execute([] { return 1; })) ++full;  // queued, then gave up after max_wait
    busy.release();
    if (q.try_execute([] { return 1; })) ++ok;
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 2000);
  CHECK(full == 2000);
}

namespace {
// Counts what it hears; allocates nothing.
struct tally {
  long rejected = 0;
  long queued = 0;
  long abandoned = 0;
  void operator()(const armor::bulkhead_event& e) noexcept {
    switch (e.kind) {
      case armor::bulkhead_event_kind::rejected: ++rejected; break;
      case armor::bulkhead_event_kind::queued: ++queued; break;
      case armor::bulkhead_event_kind::abandoned: ++abandoned; break;
    }
  }
};
}  // namespace

TEST_CASE("a bulkhead's listener adds no allocation: refused, queued and abandoned calls") {
  armor::manual_clock clock;
  tally heard;
  armor::bulkhead fail_fast{{.max_concurrent = 1}, std::ref(heard)};
  armor::bulkhead queueing{{.max_concurrent = 1, .max_queue = 4, .max_wait = 1ms}, std::ref(heard)};
  auto p = armor::pipeline{clock, std::ref(fail_fast)};
  auto q = armor::pipeline{clock, std::ref(queueing)};
  (void)p.try_execute([] { return 0; });  // warm-up
  (void)q.try_execute([] { return 0; });
  long ok = 0;
  long full = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    if (p.try_execute([] { return 1; })) ++ok;
    armor::bulkhead_permit held = fail_fast.try_acquire().permit();
    if (!p.try_execute([] { return 1; })) ++full;  // refused: heard
    held.release();
    armor::bulkhead_permit busy = queueing.try_acquire().permit();
    if (!q.try_execute([] { return 1; })) ++full;  // queued, then abandoned after max_wait: heard twice
    busy.release();
    if (q.try_execute([] { return 1; })) ++ok;
  }
  CHECK(scope.allocations() == 0);
  CHECK(ok == 2000);
  CHECK(full == 2000);
  CHECK(heard.rejected == 1000);
  CHECK(heard.queued == 1000);
  CHECK(heard.abandoned == 1000);
}

TEST_CASE("a fallback allocates nothing per call, recovering or not") {
  int recovered = 0;
  auto p = armor::pipeline{armor::manual_clock{}, armor::fallback{[&](const armor::failure&) {
                             ++recovered;
                             return std::error_code{};
                           }}};
  const auto refused = std::make_error_code(std::errc::connection_refused);
  (void)p.try_execute([&] { return refused; });  // warm-up
  recovered = 0;
  long failed = 0;
  armor_test::allocation_scope scope;
  for (int i = 0; i < 1000; ++i) {
    // Every other call returns an error value, which the fallback replaces.
    if (p.execute([&] { return i % 2 == 0 ? refused : std::error_code{}; })) ++failed;
  }
  CHECK(scope.allocations() == 0);
  CHECK(recovered == 500);
  CHECK(failed == 0);
}
