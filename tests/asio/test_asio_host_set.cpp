// A host set layer on the Asio driver: the operation reads its host from
// the context, a retry (the backoff layer outside) goes to another host,
// and a breaker per host (keyed by key_source::host()) inside the host set
// sends calls elsewhere once open, as on the synchronous driver.
#include <armor/asio.hpp>
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/host_set.hpp>
#include <armor/keyed.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <system_error>

using namespace std::chrono_literals;
using asio::awaitable;

using namespace armor_test;  // run_coroutine (asio_support.hpp)

TEST_CASE("asio: a host set layer retries elsewhere and composes with per-host breakers", "[host_set]") {
  armor::host_set_options o;
  o.balancer = armor::host_balancer::round_robin;
  o.outlier.consecutive_failures = 0;
  o.outlier.enforcing_success_rate = 0;
  armor::host_set hosts{o};
  hosts.update({{"a"}, {"bad"}, {"c"}});
  armor::keyed<armor::circuit_breaker<>> per_host{{.failure_threshold = 2, .open_for = 1min},
                                                  {.key = armor::key_source::host()}};
  const auto p = armor::pipeline{armor::backoff{{.max_attempts = 2, .initial = 1ms, .jitter = armor::jitter_mode::none}},
                                 std::ref(hosts), std::ref(per_host)};
  std::map<std::string, int> ran;
  int ok = 0;
  int same_host_retries = 0;
  run_coroutine([&]() -> awaitable<void> {
    for (int i = 0; i < 30; ++i) {
      std::string last;
      auto r = co_await p.async_try_execute([&](const armor::context& ctx) -> awaitable<std::error_code> {
        const std::string host(ctx.host());
        if (ctx.attempt() > 1 && host == last) ++same_host_retries;
        last = host;
        ran[host] += 1;
        co_return host == "bad" ? std::make_error_code(std::errc::connection_reset) : std::error_code{};
      });
      if (r.ok()) ++ok;
    }
  });
  CHECK(ok == 30);
  CHECK(same_host_retries == 0);
  CHECK(ran["bad"] == 2);  // then its breaker is open: picks of it are refused and picked again
  CHECK(ran["a"] + ran["c"] == 30);
  CHECK(hosts.stats().pending == 0);
}
