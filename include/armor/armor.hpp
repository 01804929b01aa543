// armor/armor.hpp: all of armor's core in one include.
//
//     #include <armor/armor.hpp>
//     using namespace std::chrono_literals;
//
//     auto p = armor::pipeline{armor::deadline{2s}};
//     auto v = p.execute([](const armor::context& ctx) { return fetch(ctx.remaining()); });
//
// Integrations that need a dependency are separate, each pulling in only its
// own: armor/asio.hpp (Asio), armor/fmt.hpp and armor/prometheus.hpp (fmt),
// armor/storage/sqlite.hpp (SQLite), armor/redis.hpp (hiredis). See
// docs/architecture.md for the layout and the shape every policy follows.
#pragma once

#include <armor/adaptive_limit.hpp>
#include <armor/adaptive_throttle.hpp>
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/cache.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/coalesce.hpp>
#include <armor/context.hpp>
#include <armor/decision.hpp>
#include <armor/deadline.hpp>
#include <armor/drain.hpp>
#include <armor/error.hpp>
#include <armor/fault_injector.hpp>
#include <armor/fallback.hpp>
#include <armor/fixed_window.hpp>
#include <armor/health_check.hpp>
#include <armor/hedge.hpp>
#include <armor/histogram.hpp>
#include <armor/host_set.hpp>
#include <armor/http.hpp>
#include <armor/keyed.hpp>
#include <armor/listener.hpp>
#include <armor/load_shedder.hpp>
#include <armor/pipeline.hpp>
#include <armor/policy.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/readiness.hpp>
#include <armor/result.hpp>
#include <armor/shadow.hpp>
#include <armor/sliding_window.hpp>
#include <armor/stats.hpp>
#include <armor/token_bucket.hpp>
#include <armor/verdict.hpp>
#include <armor/version.hpp>
