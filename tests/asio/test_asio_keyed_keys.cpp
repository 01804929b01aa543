// Several keys per call on the Asio driver (issue 21): a per-IP and a
// per-bucket keyed layer in one pipeline, each picking its key from the
// call's options, exactly as on the synchronous driver.
#include <armor/asio.hpp>
#include <armor/fixed_window.hpp>
#include <armor/keyed.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "asio/asio_support.hpp"

#include <chrono>
#include <functional>
#include <string_view>

using namespace std::chrono_literals;
using asio::awaitable;

using namespace armor_test;  // run_coroutine (asio_support.hpp)

TEST_CASE("asio: a per-IP bucket and a per-bucket window share one pipeline", "[keyed_keys]") {
  armor::keyed<armor::token_bucket<>> per_ip{{.rate = {1, 1h}, .burst = 3}, {.max_keys = 64}};
  armor::keyed<armor::fixed_window<>> per_bucket{{.limit = 4, .window = 1h},
                                                 {.max_keys = 64, .key = armor::key_source::slot(0)}};
  const auto p = armor::pipeline{std::ref(per_ip), std::ref(per_bucket)};
  int ok = 0;
  int refused = 0;
  run_coroutine([&]() -> awaitable<void> {
    const auto call = [&](std::string_view ip, std::string_view bucket) {
      return p.async_try_execute([]() -> awaitable<int> { co_return 1; }, {.key = ip, .keys = {bucket}});
    };
    for (const auto& [ip, bucket] : {std::pair{"10.0.0.1", "photos"}, {"10.0.0.1", "photos"}, {"10.0.0.2", "photos"},
                                     {"10.0.0.2", "photos"}, {"10.0.0.3", "photos"}, {"10.0.0.1", "videos"},
                                     {"10.0.0.1", "music"}}) {
      auto r = co_await call(ip, bucket);
      if (r.ok()) {
        ++ok;
      } else {
        CHECK(r.code() == armor::errc::rate_limited);
        ++refused;
      }
    }
  });
  CHECK(ok == 5);
  CHECK(refused == 2);  // photos full (4 of 4), then 10.0.0.1 out of tokens (3 of 3)
  CHECK(per_bucket.find("photos"));
  CHECK(per_bucket.find("videos"));
  CHECK_FALSE(per_bucket.find("music"));
  CHECK_FALSE(per_bucket.find("10.0.0.1"));
  CHECK(per_ip.find("10.0.0.3"));
  CHECK_FALSE(per_ip.find("photos"));
}
