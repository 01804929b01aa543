// The one policy shape for the Redis backend's public enumerations and stats
// (see tests/fmt/shape_checks.hpp). Needs fmt; without it there is nothing
// to check. No Redis server is needed: only the types are checked.
#include <armor/redis.hpp>

#include "armor_catch.hpp"

#if __has_include(<fmt/format.h>)
#include "fmt/shape_checks.hpp"

TEST_CASE("shape: the Redis backend's enumerations have names and format with fmt", "[shape]") {
  armor_test::check_enum<armor::redis_failure_mode>("redis_failure_mode");
  armor_test::check_enum<armor::redis_time_source>("redis_time_source");
}

TEST_CASE("shape: the Redis backend's stats print their fields and export their families", "[shape]") {
  armor_test::check_stats<armor::redis_connection_stats>("redis_connection_stats");
  armor_test::check_stats<armor::redis_quota_storage_stats>("redis_quota_storage_stats");
  armor_test::check_stats<armor::redis_token_bucket_stats>("redis_token_bucket_stats");
  armor_test::check_stats<armor::redis_circuit_breaker_stats>("redis_circuit_breaker_stats");
  armor_test::check_stats<armor::redis_window_stats>("redis_window_stats");
}
#endif
