// armor/redis.hpp: limits shared by every instance of a service through
// one Redis server (link armor::redis; needs hiredis). Includes the
// connection, the quota storage and the token bucket; see docs/redis.md.
#pragma once

#include <armor/redis/connection.hpp>
#include <armor/redis/quota_storage.hpp>
#include <armor/redis/token_bucket.hpp>
