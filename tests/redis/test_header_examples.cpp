// The examples at the top of armor/redis/connection.hpp,
// armor/redis/quota_storage.hpp and armor/redis/token_bucket.hpp, compiled
// (not run: they name a Redis server at 10.0.0.5; the other tests here run
// the same calls against a redis-server of their own).
//
// Each example is copied verbatim under a `// header example: <armor/...>`
// line; tests/shape/check_examples.py (CTest armor_header_examples_check)
// fails when a header's example and its copy here differ. Change both
// together.
#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/redis/circuit_breaker.hpp>
#include <armor/redis/connection.hpp>
#include <armor/redis/fixed_window.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/sliding_window.hpp>
#include <armor/redis/token_bucket.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <system_error>
#include <utility>

using namespace std::chrono_literals;

namespace header_examples {

// ---------------------------------------------------------------------------
// header example: <armor/redis/connection.hpp>
namespace connection_ex {
std::uint64_t logged = 0;
template <class T>
void log(const T& failures) {
  logged = static_cast<std::uint64_t>(failures);
}

void example() {
  armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379, .connections = 4}};
  // Give `redis` (copies share the pool) to every limit kept in this Redis:
  // armor::redis_quota_storage, armor::redis_token_bucket.
  if (redis.breaker() == armor::breaker_state::open) log(redis.stats().failures);
}
}  // namespace connection_ex

// ---------------------------------------------------------------------------
// header example: <armor/redis/quota_storage.hpp>
namespace quota_storage_ex {
bool example() {
  armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
  armor::quota_tracker gemini{
      {.windows = {armor::quota_window::per_day(50)}},
      armor::system_clock{},
      armor::redis_quota_storage{redis, {.tracker = "gemini"}},
  };
  return static_cast<bool>(gemini.try_consume());
}
}  // namespace quota_storage_ex

// ---------------------------------------------------------------------------
// header example: <armor/redis/token_bucket.hpp>
namespace token_bucket_ex {
int rejected = 0;
void reject(std::error_code, std::chrono::nanoseconds) { ++rejected; }

void example() {
  armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
  armor::redis_token_bucket<> api{{.rate = {100, 1s}, .burst = 20}, redis, {.name = "upstream-api"}};
  if (armor::token_bucket_decision<> d = api.try_acquire(); !d) {
      reject(d.code(), d.retry_after());  // rate_limited, or storage_unavailable (fail_closed)
  }
}
}  // namespace token_bucket_ex

// ---------------------------------------------------------------------------
// header example: <armor/redis/circuit_breaker.hpp>
namespace circuit_breaker_ex {
armor::verdict call_upstream() { return armor::verdict::success(); }
int replied = 0;
void reply_503(std::chrono::nanoseconds) { ++replied; }

void example() {
  armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
  armor::redis_circuit_breaker<> upstream{{.failure_threshold = 5}, redis,
                                          {.name = "payments", .min_reporting_instances = 2}};
  if (auto d = upstream.try_acquire()) {
      upstream.record(std::move(d).permit(), call_upstream());  // the call's armor::verdict
  } else {
      reply_503(d.retry_after());  // errc::circuit_open: shared or local breaker open
  }
}
}  // namespace circuit_breaker_ex

// ---------------------------------------------------------------------------
// header example: <armor/redis/fixed_window.hpp>
namespace fixed_window_ex {
int rejected = 0;
void reject(std::error_code, std::chrono::nanoseconds) { ++rejected; }

void example() {
  armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
  armor::redis_fixed_window<> per_ip{{.limit = 60, .window = 1min}, redis, {.name = "per-ip"}};
  if (armor::window_decision d = per_ip.try_acquire("203.0.113.9"); !d) {
      reject(d.code(), d.retry_after());  // rate_limited, or storage_unavailable
  }
}
}  // namespace fixed_window_ex

// ---------------------------------------------------------------------------
// header example: <armor/redis/sliding_window.hpp>
namespace sliding_window_ex {
int rejected = 0;
void reject(std::error_code, std::chrono::nanoseconds) { ++rejected; }

void example() {
  armor::redis_connection redis{{.host = "10.0.0.5", .port = 6379}};
  armor::redis_sliding_window<> recent{{.limit = 100, .window = 10s, .segments = 10}, redis,
                                       {.name = "recent"}};
  if (armor::window_decision d = recent.try_acquire("user-7"); !d) {
      reject(d.code(), d.retry_after());  // rate_limited, or storage_unavailable
  }
}
}  // namespace sliding_window_ex

}  // namespace header_examples

TEST_CASE("header examples: redis/connection.hpp, redis/quota_storage.hpp, redis/token_bucket.hpp compile") {
  namespace hx = header_examples;
  void (*connection)() = &hx::connection_ex::example;
  bool (*quota)() = &hx::quota_storage_ex::example;
  void (*bucket)() = &hx::token_bucket_ex::example;
  CHECK(connection != nullptr);
  CHECK(quota != nullptr);
  CHECK(bucket != nullptr);
  void (*breaker)() = &hx::circuit_breaker_ex::example;
  CHECK(breaker != nullptr);
  void (*fixed)() = &hx::fixed_window_ex::example;
  void (*sliding)() = &hx::sliding_window_ex::example;
  CHECK(fixed != nullptr);
  CHECK(sliding != nullptr);
}
