// Threads picking from one host set while another thread changes its host
// list: every pick gets a host (no call lost), every permit is recorded or
// dropped and the count of calls in flight returns to zero, and a host
// removed by an update that returned before a pick began is never picked.
// Permits held across updates keep removed hosts alive (ASan/TSan see any
// use after free). Ejections run concurrently (consecutive failures,
// failure percentage, evaluations driven by the calls). Run under TSan.
#include <armor/host_set.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("host_set: lists changed under load lose no call and never hand out a removed host", "[host_set]") {
  constexpr int pickers = 3;
  constexpr int iterations = 20000;
  constexpr int updates = 200;
  armor::manual_clock clock;
  armor::host_set_options o;
  o.outlier.consecutive_failures = 3;
  o.outlier.max_ejection_percent = 50;
  o.outlier.interval = 1ms;
  o.outlier.base_ejection_time = 2ms;
  o.outlier.max_ejection_time = 10ms;
  o.outlier.enforcing_failure_percentage = 100;
  o.outlier.failure_percentage_request_volume = 5;
  o.outlier.failure_percentage_minimum_hosts = 2;
  armor::host_set hosts{o, clock};
  const std::vector<armor::host_spec> all{{"h0"}, {"h1"}, {"h2"}, {"h3"}, {"h4"}, {"h5"}, {"h6"}, {"h7"}};
  const std::vector<armor::host_spec> half{{"h0"}, {"h1", 2}, {"h2"}, {"h3", 3}};
  hosts.update(all);
  // Odd: the update to `half` has returned and the next update has not begun.
  std::atomic<std::uint64_t> version{0};
  std::atomic<long> picked{0};
  std::atomic<long> checked{0};
  std::atomic<long> violations{0};
  std::atomic<long> refused{0};

  auto in_half = [](std::string_view id) { return id == "h0" || id == "h1" || id == "h2" || id == "h3"; };
  auto one_call = [&](int id, int i, armor::host_set_permit& held) {
    const std::uint64_t v1 = version.load(std::memory_order_acquire);
    auto d = hosts.pick();
    const std::uint64_t v2 = version.load(std::memory_order_acquire);
    if (!d) {
      refused.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    picked.fetch_add(1, std::memory_order_relaxed);
    auto p = std::move(d).permit();
    if (v1 == v2 && (v1 & 1) == 1) {
      checked.fetch_add(1, std::memory_order_relaxed);
      if (!in_half(p.id())) violations.fetch_add(1, std::memory_order_relaxed);
    }
    if ((i + id) % 97 == 0) {
      held = std::move(p);  // kept across the next updates (the old one is dropped: cancelled)
      return;
    }
    const bool fail = p.id() == "h2" || (i % 5 == 0);
    hosts.record(std::move(p), fail ? armor::host_outcome::failure : armor::host_outcome::success);
  };

  std::vector<std::thread> pool;
  for (int id = 0; id < pickers; ++id) {
    pool.emplace_back([&, id] {
      armor::host_set_permit held;
      for (int i = 0; i < iterations; ++i) {
        one_call(id, i, held);
        if (i % 256 == 0) clock.advance(1ms);
      }
      if (held) hosts.record(std::move(held), armor::host_outcome::success);
    });
  }
  std::thread updater([&] {
    for (int u = 0; u < updates; ++u) {
      hosts.update(half);
      version.fetch_add(1, std::memory_order_acq_rel);  // odd
      std::this_thread::yield();
      version.fetch_add(1, std::memory_order_acq_rel);  // even: the next update may add hosts back
      hosts.update(all);
      std::this_thread::yield();
    }
    hosts.update(half);
    version.fetch_add(1, std::memory_order_acq_rel);  // odd, for good
  });
  updater.join();
  for (auto& t : pool) t.join();
  // After the last update every pick is checked: a certain check, whatever
  // the scheduling was.
  armor::host_set_permit held;
  for (int i = 0; i < 1000; ++i) one_call(0, i, held);
  if (held) hosts.record(std::move(held), armor::host_outcome::success);
  hosts.update(all);  // every host listed again: pending covers them all

  CHECK(violations.load() == 0);
  CHECK(checked.load() >= 1000);
  CHECK(refused.load() == 0);
  CHECK(picked.load() == pickers * iterations + 1000);
  const armor::host_set_stats s = hosts.stats();
  CHECK(s.pending == 0);
  CHECK(s.picks == static_cast<std::uint64_t>(picked.load()));
  CHECK(s.updates == 2 * updates + 3);
}
