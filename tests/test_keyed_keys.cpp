// Several keys per call (issue 21): call_options::keys and
// keyed_options::key let a per-IP and a per-bucket limit share one pipeline.
#include <armor/fixed_window.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

namespace {

constexpr auto by_bucket = armor::key_source::slot(0);
constexpr auto by_model = armor::key_source::slot(2);

using per_ip_type = armor::keyed<armor::token_bucket<armor::manual_clock>>;
using per_bucket_type = armor::keyed<armor::fixed_window<armor::manual_clock>>;

}  // namespace

TEST_CASE("keys: a call carries a main key and key_slots more; a key_source picks one", "[keyed_keys]") {
  armor::context ctx(armor::timestamp{}, {.key = "10.0.0.1", .keys = {"photos", "", "gpt"}});
  CHECK(ctx.key() == "10.0.0.1");
  CHECK(ctx.key(armor::key_source::main()) == "10.0.0.1");
  CHECK(ctx.key(by_bucket) == "photos");
  CHECK(ctx.key(armor::key_source::slot(1)).empty());
  CHECK(ctx.key(by_model) == "gpt");
  CHECK(ctx.key(armor::key_source::slot(armor::key_slots)).empty());
  CHECK(armor::key_source::slot(2).index() == 2);
  CHECK(armor::key_source::main().is_main());
  CHECK_FALSE(armor::key_source::slot(armor::key_slots).valid());
  CHECK(armor::key_source::slot(999).index() == 0xfd);  // 0xff is key_source::host()
}

TEST_CASE("keys: a per-IP bucket and a per-bucket window share one pipeline", "[keyed_keys]") {
  armor::manual_clock clock;
  // 3 requests per client IP (no refill within the test), 4 per storage bucket per minute.
  per_ip_type per_ip{{.rate = {1, 1h}, .burst = 3}, {.max_keys = 64}, clock};
  per_bucket_type per_bucket{{.limit = 4, .window = 1min}, {.max_keys = 64, .key = by_bucket}, clock};
  CHECK(per_bucket.key() == by_bucket);
  auto p = armor::pipeline{clock, std::ref(per_ip), std::ref(per_bucket)};
  const auto call = [&](std::string_view ip, std::string_view bucket) {
    return p.try_execute([] { return 1; }, {.key = ip, .keys = {bucket}});
  };
  CHECK(call("10.0.0.1", "photos").has_value());
  CHECK(call("10.0.0.1", "photos").has_value());
  CHECK(call("10.0.0.2", "photos").has_value());
  CHECK(call("10.0.0.2", "photos").has_value());  // photos: 4 of 4
  const auto full_bucket = call("10.0.0.3", "photos");
  REQUIRE_FALSE(full_bucket.has_value());
  CHECK(full_bucket.code() == armor::errc::rate_limited);
  CHECK(call("10.0.0.1", "videos").has_value());  // 10.0.0.1: 3 of 3
  const auto full_ip = call("10.0.0.1", "music");
  REQUIRE_FALSE(full_ip.has_value());
  CHECK(full_ip.code() == armor::errc::rate_limited);
  // Each map holds the keys of its own slot.
  CHECK(per_ip.find("10.0.0.3"));
  CHECK_FALSE(per_ip.find("photos"));
  CHECK(per_bucket.find("photos"));
  CHECK(per_bucket.find("videos"));
  CHECK_FALSE(per_bucket.find("10.0.0.1"));
  CHECK_FALSE(per_bucket.find("music"));  // refused by the outer layer: never reached
  // A new minute: the buckets' windows turn; the IPs' budgets do not.
  clock.advance(1min);
  CHECK(call("10.0.0.3", "photos").has_value());
  CHECK_FALSE(call("10.0.0.1", "photos").has_value());
}

TEST_CASE("keys: per user and per model quotas in one pipeline, with a cost slot each", "[keyed_keys]") {
  armor::manual_clock clock{24h};
  armor::keyed<armor::quota_tracker<armor::manual_clock>> per_user{
      {.windows = {armor::quota_window::per_day(10)}, .alerts = {}}, {.max_keys = 16}, clock};
  armor::keyed<armor::quota_tracker<armor::manual_clock>> per_model{
      {.windows = {armor::quota_window::per_day(15)}, .alerts = {}}, {.max_keys = 16, .key = by_model}, clock};
  auto p = armor::pipeline{clock, std::ref(per_user), std::ref(per_model)};
  const auto call = [&](std::string_view user, std::string_view model) {
    return p.try_execute([] { return 1; }, {.key = user, .keys = {"", "", model}, .cost = 5});
  };
  CHECK(call("ann", "gpt").has_value());
  CHECK(call("ann", "gpt").has_value());   // ann: 10 of 10
  CHECK(call("bob", "gpt").has_value());   // gpt: 15 of 15
  CHECK_FALSE(call("bob", "gpt").has_value());
  CHECK(per_user.find("bob")->usage(0).used == 5);  // the refused call's units were given back
  CHECK(call("bob", "claude").has_value());
  CHECK_FALSE(call("ann", "claude").has_value());
  CHECK(per_model.find("claude")->usage(0).used == 5);
}

TEST_CASE("keys: a key slot a call does not have is refused at construction, by name", "[keyed_keys]") {
  armor::manual_clock clock;
  try {
    per_bucket_type bad{{.limit = 4, .window = 1min}, {.key = armor::key_source::slot(armor::key_slots)}, clock};
    FAIL("constructed");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    CHECK(std::string(e.what()).find("key") != std::string::npos);
    CHECK(std::string(e.what()).find("call_options::keys") != std::string::npos);
  }
}
