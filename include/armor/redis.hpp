// armor/redis.hpp: limits shared by every instance of a service through
// one Redis server (link armor::redis; needs hiredis). An umbrella over the
// headers that show the examples: armor/redis/connection.hpp (the
// connection), armor/redis/quota_storage.hpp (quota counts in Redis) and
// armor/redis/token_bucket.hpp (a token bucket in Redis); also
// armor/redis/circuit_breaker.hpp (a breaker shared in Redis),
// armor/redis/fixed_window.hpp and armor/redis/sliding_window.hpp (window
// rate limits in Redis). See docs/redis.md.
#pragma once

#include <armor/redis/circuit_breaker.hpp>
#include <armor/redis/connection.hpp>
#include <armor/redis/fixed_window.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/sliding_window.hpp>
#include <armor/redis/token_bucket.hpp>
