// Threads picking from one host set while another thread changes its host
// list: every pick gets a host (no call lost), every permit is recorded or
// dropped and the count of calls in flight returns to zero, and a host
// removed by an update that returned before a pick began is never picked.
// Permits held across updates keep removed hosts alive (ASan/TSan see any
// use after free). Ejections run concurrently (consecutive failures,
// failure percentage, evaluations driven by the calls); removed hosts'
// states drain and are freed. A second test has four threads fail calls at
// once against a cap of one ejected host. A third drives the host set as a
// pipeline layer (a backoff outside, a breaker per host inside) from three
// threads while the list changes: every call succeeds, a retry never goes
// back to the host that just failed, and no attempt goes to a host removed
// before the call began. Run under TSan.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/host_set.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
// Ejections that start and end within a few ms of manual time, so the
// stress runs see hosts ejected and returned many times.
armor::host_set_options churning_options() {
  armor::host_set_options o;
  o.outlier.consecutive_failures = 3;
  o.outlier.max_ejection_percent = 50;
  o.outlier.interval = 1ms;
  o.outlier.base_ejection_time = 2ms;
  o.outlier.max_ejection_time = 10ms;
  return o;
}
}  // namespace

TEST_CASE("host_set: lists changed under load lose no call and never hand out a removed host", "[host_set]") {
  constexpr int pickers = 3;
  constexpr int iterations = 20000;
  constexpr int updates = 200;
  armor::manual_clock clock;
  armor::host_set_options o = churning_options();
  o.outlier.enforcing_failure_percentage = 100;
  o.outlier.failure_percentage_request_volume = 5;
  o.outlier.failure_percentage_minimum_hosts = 2;
  armor::host_set hosts{o, clock};
  const std::vector<armor::host_spec> all{{"h0"}, {"h1"}, {"h2"}, {"h3"}, {"h4"}, {"h5"}, {"h6"}, {"h7"}};
  const std::vector<armor::host_spec> half{{"h0"}, {"h1", 2}, {"h2"}, {"h3", 3}};
  hosts.update(all);
  // Odd: the update to `half` has returned and the next update has not begun.
  std::atomic<std::uint64_t> version{0};
  std::atomic<bool> updated{false};  // the updater is done: every later pick is checked
  std::atomic<long> calls{0};
  std::atomic<long> picked{0};
  std::atomic<long> checked{0};
  std::atomic<long> violations{0};
  std::atomic<long> refused{0};

  auto in_half = [](std::string_view id) { return id == "h0" || id == "h1" || id == "h2" || id == "h3"; };
  auto one_call = [&](int id, int i, armor::host_set_permit& held) {
    calls.fetch_add(1, std::memory_order_relaxed);
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
      // At least `iterations` calls, and one more begun after the updater
      // was seen done (so checked, whatever the scheduling was).
      for (int i = 0;; ++i) {
        const bool done = updated.load(std::memory_order_acquire);
        one_call(id, i, held);
        if (i % 256 == 0) clock.advance(1ms);
        if (done && i >= iterations) break;
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
    updated.store(true, std::memory_order_release);
  });
  updater.join();
  for (auto& t : pool) t.join();
  const long checked_concurrently = checked.load();
  // After the last update every pick is checked: a certain check, whatever
  // the scheduling was.
  armor::host_set_permit held;
  for (int i = 0; i < 1000; ++i) one_call(0, i, held);
  if (held) hosts.record(std::move(held), armor::host_outcome::success);
  hosts.update(all);  // fresh states for h4-h7; the removed ones must have drained

  CHECK(violations.load() == 0);
  CHECK(checked_concurrently >= pickers);
  CHECK(checked.load() >= checked_concurrently + 1000);
  CHECK(refused.load() == 0);
  CHECK(picked.load() == calls.load());
  CHECK(picked.load() >= pickers * iterations + 1000);
  const armor::host_set_stats s = hosts.stats();
  CHECK(s.pending == 0);
  // Every removed state was freed by the last update: a permit that never
  // gave its host back would keep one (a lost decrement).
  CHECK(armor::detail::host_set_peek::core(hosts).states() == all.size());
  CHECK(s.picks == static_cast<std::uint64_t>(picked.load()));
  CHECK(s.updates == 2 * updates + 3);
}

namespace {

// Hears ejections and returns, which the judge makes one at a time: the
// count of hosts ejected at each event, and the most seen.
struct ejected_tally {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  std::atomic<long> events{0};
  void operator()(const armor::host_set_event& e) noexcept {
    events.fetch_add(1, std::memory_order_relaxed);
    if (e.kind == armor::host_set_event_kind::returned) {
      now.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    const int n = now.fetch_add(1, std::memory_order_relaxed) + 1;
    int m = most.load(std::memory_order_relaxed);
    while (m < n && !most.compare_exchange_weak(m, n, std::memory_order_relaxed)) {
    }
  }
};

}  // namespace

TEST_CASE("host_set: failures from four threads at once never pass the ejection cap", "[host_set]") {
  constexpr int threads = 4;
  constexpr int iterations = 4000;
  armor::manual_clock clock;
  ejected_tally tally;
  armor::host_set_options o;
  o.min_health_percent = 0;
  o.outlier.consecutive_failures = 1;
  o.outlier.max_ejection_percent = 25;  // 4 hosts: one at a time
  o.outlier.interval = 1ms;
  o.outlier.base_ejection_time = 1ms;
  o.outlier.max_ejection_time = 3ms;
  armor::host_set hosts{o, clock, armor::thread_rng{}, std::ref(tally)};
  hosts.update({{"h0"}, {"h1"}, {"h2"}, {"h3"}});
  std::barrier start{threads};
  std::vector<std::thread> pool;
  for (int id = 0; id < threads; ++id) {
    pool.emplace_back([&, id] {
      start.arrive_and_wait();
      for (int i = 0; i < iterations; ++i) {
        auto d = hosts.pick();
        if (!d) continue;
        // Mostly failures: every one completes a streak (ejections, capped
        // ones), while the clock moving on brings evaluations and returns.
        hosts.record(std::move(d).permit(), (i + id) % 8 == 0 ? armor::host_outcome::success
                                                             : armor::host_outcome::failure);
        if (i % 64 == id) clock.advance(1ms);
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(tally.most.load() <= 1);
  const armor::host_set_stats s = hosts.stats();
  CHECK(s.ejected <= 1);
  CHECK(s.ejections > 0);
  CHECK(s.ejections_capped > 0);
  CHECK(s.pending == 0);
  CHECK(static_cast<long>(s.ejected) == tally.now.load());
  // An evaluation after every ejection is over returns the host, whatever
  // evaluations the threads owed each other.
  clock.advance(1s);
  (void)hosts.pick();
  CHECK(hosts.stats().ejected == 0);
  CHECK(tally.now.load() == 0);
}

TEST_CASE("host_set layer: calls through a pipeline while the list changes lose nothing", "[host_set]") {
  constexpr int callers = 3;
  constexpr int iterations = 4000;
  constexpr int updates = 100;
  armor::manual_clock clock;
  armor::host_set_options o = churning_options();
  armor::host_set hosts{o, clock};
  armor::keyed<armor::circuit_breaker<armor::manual_clock>> per_host{
      {.failure_threshold = 2, .open_for = 5ms}, {.key = armor::key_source::host()}, clock};
  const auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 3, .initial = 1ms}}, std::ref(hosts),
                                 std::ref(per_host)};
  const std::vector<armor::host_spec> all{{"h0"}, {"h1"}, {"h2"}, {"h3"}, {"h4"}, {"h5"}, {"h6"}, {"h7"}};
  const std::vector<armor::host_spec> half{{"h0"}, {"h1", 2}, {"h2"}, {"h3", 3}};
  hosts.update(all);
  std::atomic<std::uint64_t> version{0};  // odd: `half` is published and no update is under way
  std::atomic<bool> updated{false};
  std::atomic<long> calls{0};
  std::atomic<long> failed{0};
  std::atomic<long> checked{0};
  std::atomic<long> violations{0};
  std::atomic<long> same_host_retries{0};
  std::atomic<long> retries{0};
  auto in_half = [](std::string_view id) { return id == "h0" || id == "h1" || id == "h2" || id == "h3"; };
  auto one_call = [&] {
    calls.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t v1 = version.load(std::memory_order_acquire);
    std::string last;  // the host of the previous attempt
    const auto r = p.try_execute([&](const armor::context& ctx) {
      const std::string_view host = ctx.host();
      const std::uint64_t v2 = version.load(std::memory_order_acquire);
      if (v1 == v2 && (v1 & 1) == 1) {
        checked.fetch_add(1, std::memory_order_relaxed);
        if (!in_half(host)) violations.fetch_add(1, std::memory_order_relaxed);
      }
      if (ctx.attempt() > 1) {
        retries.fetch_add(1, std::memory_order_relaxed);
        if (host == last) same_host_retries.fetch_add(1, std::memory_order_relaxed);
      }
      last.assign(host);
      if (host == "h2") return std::make_error_code(std::errc::connection_reset);
      return std::error_code{};
    });
    if (!r.has_value()) failed.fetch_add(1, std::memory_order_relaxed);
  };
  std::vector<std::thread> pool;
  for (int id = 0; id < callers; ++id) {
    pool.emplace_back([&, id] {
      for (int i = 0;; ++i) {
        const bool done = updated.load(std::memory_order_acquire);
        one_call();
        if (i % 128 == id) clock.advance(1ms);
        if (done && i >= iterations) break;
      }
    });
  }
  std::thread updater([&] {
    for (int u = 0; u < updates; ++u) {
      hosts.update(half);
      version.fetch_add(1, std::memory_order_acq_rel);  // odd
      std::this_thread::yield();
      version.fetch_add(1, std::memory_order_acq_rel);  // even
      hosts.update(all);
      std::this_thread::yield();
    }
    hosts.update(half);
    version.fetch_add(1, std::memory_order_acq_rel);  // odd, for good
    updated.store(true, std::memory_order_release);
  });
  updater.join();
  for (auto& t : pool) t.join();
  CHECK(violations.load() == 0);
  CHECK(checked.load() >= callers);  // each caller's last call began after the last update
  CHECK(failed.load() == 0);  // h2 fails; its calls' next attempt goes elsewhere
  CHECK(same_host_retries.load() == 0);
  CHECK(retries.load() > 0);
  CHECK(calls.load() >= callers * iterations);
  CHECK(hosts.stats().pending == 0);
}
