// armor::async_health_checks: the Asio driver of a health checker, with
// fake probes (one passes at once, one fails, one never answers and times
// out), on one io_context thread; a watcher stops the loop by cancellation
// once every verdict is in. Bounded: a few hundred milliseconds (the safety
// cap of 20 s is only reached if the loop is broken).
#include <armor/asio.hpp>
#include <armor/health_check.hpp>
#include <armor/host_set.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <string_view>

using namespace std::chrono_literals;
using asio::awaitable;

using namespace armor_test;  // sleep_for

namespace {

const armor::health_check_status* find(const std::vector<armor::health_check_status>& all, std::string_view id) {
  for (const auto& s : all) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("async_health_checks: probes pass, fail and time out; the loop stops on cancellation") {
  armor::host_set<> hosts{{.balancer = armor::host_balancer::round_robin, .min_health_percent = 0}};
  hosts.update({{"good"}, {"bad"}, {"silent"}});
  armor::health_checker checker{
      hosts, {.interval = 20ms, .timeout = 100ms, .healthy_threshold = 1, .unhealthy_threshold = 1}};
  int probes_of_silent = 0;
  auto check = [&](std::string_view id) -> awaitable<armor::probe_result> {
    if (id == "bad") co_return armor::probe_result::failed;
    if (id == "silent") {
      ++probes_of_silent;
      co_await sleep_for(1h);  // cut short by the timeout
    }
    co_return armor::probe_result::passed;
  };
  asio::io_context io;
  asio::cancellation_signal stop;
  bool loop_ended = false;
  bool verdicts_in = false;
  asio::co_spawn(io, armor::async_health_checks(checker, check),
                 asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr e) {
                   CHECK_FALSE(e);
                   loop_ended = true;
                 }));
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        const auto cap = std::chrono::steady_clock::now() + 20s;
        while (std::chrono::steady_clock::now() < cap) {
          const auto all = checker.hosts();
          const auto s = checker.stats();
          const auto* good = find(all, "good");
          if (good != nullptr && good->healthy && s.failed >= 1 && s.timed_out >= 1 && s.passed >= 2) {
            verdicts_in = true;
            break;
          }
          co_await sleep_for(5ms);
        }
        CHECK(hosts.healthy_hosts() == 1);
        stop.emit(asio::cancellation_type::terminal);
      },
      asio::detached);
  io.run();
  CHECK(verdicts_in);
  CHECK(loop_ended);
  CHECK(probes_of_silent >= 1);
  const auto all = checker.hosts();
  REQUIRE(all.size() == 3);
  CHECK_FALSE(find(all, "bad")->healthy);
  CHECK_FALSE(find(all, "silent")->healthy);
  for (const auto& s : all) CHECK_FALSE(s.probing);  // a probe cut short was given back
  // Another pick never lands on the unhealthy hosts.
  for (int i = 0; i < 5; ++i) {
    auto d = hosts.pick();
    REQUIRE(d);
    CHECK(std::move(d).permit().id() == "good");
  }
}

TEST_CASE("async_health_checks: a check answering bool, and one that throws, which counts as failed") {
  armor::host_set<> hosts{{.min_health_percent = 0}};
  hosts.update({{"up"}, {"broken"}});
  armor::health_checker checker{hosts, {.interval = 10ms, .timeout = 1s, .unhealthy_threshold = 1}};
  auto check = [](std::string_view id) -> awaitable<bool> {
    if (id == "broken") throw std::runtime_error("connection refused");
    co_return true;
  };
  asio::io_context io;
  asio::cancellation_signal stop;
  asio::co_spawn(io, armor::async_health_checks(checker, check),
                 asio::bind_cancellation_slot(stop.slot(), asio::detached));
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        const auto cap = std::chrono::steady_clock::now() + 20s;
        while (std::chrono::steady_clock::now() < cap && checker.stats().probes < 4) co_await sleep_for(5ms);
        stop.emit(asio::cancellation_type::terminal);
      },
      asio::detached);
  io.run();
  const auto s = checker.stats();
  CHECK(s.probes >= 4);
  CHECK(s.failed >= 1);
  CHECK(s.passed >= 2);
  CHECK(hosts.healthy_hosts() == 1);
}
