// armor/prometheus.hpp: naming (prefixes, renames, constant labels, the
// key's label) and histograms (armor/histogram.hpp), checked line by line
// and by `promtool check metrics` (the cases tagged [.promtool]).
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/histogram.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/prometheus.hpp>
#include <armor/token_bucket.hpp>

#include "fmt/promtool.hpp"
#include "armor_catch.hpp"

#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

namespace {

struct transient : std::runtime_error {
  transient() : std::runtime_error("transient") {}
};

bool has(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return "(accepted)";
}

/// The seeds' three alerting metrics, from real policies, under the names
/// the seeds use.
struct seeds {
  armor::manual_clock clock;
  armor::backoff<> retries{{.max_attempts = 3, .initial = 10ms, .jitter = armor::jitter_mode::none}};
  armor::bulkhead<> uploads{{.max_concurrent = 1}};
  // The limit of one S3 bucket (a keyed map's per-key buckets count nothing
  // of their own; the map counts the refusals of all keys together).
  armor::token_bucket<armor::manual_clock> products{{.rate = {1, 1s}, .burst = 1, .count_calls = true}, clock};
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_bucket{
      {.rate = {1, 1s}, .burst = 1}, {.max_keys = 100, .rejected_keys = 8}, clock};
  armor::prometheus::registry metrics;

  seeds() {
    auto p = armor::pipeline{clock, std::ref(retries)};
    int calls = 0;
    p.execute([&] {
      if (++calls < 2) throw transient{};
    });
    auto held = uploads.try_acquire();
    REQUIRE(held);
    CHECK_FALSE(uploads.try_acquire());  // one refusal
    CHECK(products.try_acquire());
    CHECK_FALSE(products.try_acquire());  // one refusal
    auto keyed = armor::pipeline{clock, std::ref(per_bucket)};
    (void)keyed.try_execute([] { return 1; }, {.key = "products"});
    (void)keyed.try_execute([] { return 1; }, {.key = "products"});  // refused
    metrics.add(retries, {{"bucket", "products"}})
        .rename("armor_retry_attempts_total", "s3_retry_attempts_total")
        .only_renamed()
        .add(uploads)
        .rename("armor_bulkhead_rejected_total", "concurrency_limit_rejections_total")
        .only_renamed()
        .add(products, {{"bucket", "products"}})
        .rename("armor_rate_limit_rejected_total", "rate_limit_exceeded_total")
        .only_renamed();
  }
};

}  // namespace

TEST_CASE("prometheus naming: the seeds' metric names are rendered exactly", "[prometheus]") {
  seeds s;
  CHECK(s.metrics.text() ==
        "# HELP s3_retry_attempts_total Retries granted: attempts after a call's first one.\n"
        "# TYPE s3_retry_attempts_total counter\n"
        "s3_retry_attempts_total{bucket=\"products\"} 1\n"
        "# HELP concurrency_limit_rejections_total Calls the bulkhead refused: every slot taken and no room in its "
        "queue.\n"
        "# TYPE concurrency_limit_rejections_total counter\n"
        "concurrency_limit_rejections_total 1\n"
        "# HELP rate_limit_exceeded_total Calls the token bucket refused for too few tokens (count_calls only).\n"
        "# TYPE rate_limit_exceeded_total counter\n"
        "rate_limit_exceeded_total{bucket=\"products\"} 1\n");
}

TEST_CASE("prometheus: a keyed map writes its own families next to the keys' series", "[prometheus]") {
  seeds s;
  armor::prometheus::registry metrics;
  metrics.add(s.per_bucket, {{"route", "/upload"}}, "bucket");
  const std::string text = metrics.text();
  CHECK(has(text, "armor_rate_limit_available_tokens{route=\"/upload\",bucket=\"products\"} 0\n"));
  CHECK(has(text, "# TYPE armor_keyed_rejected_total counter\n"));
  CHECK(has(text, "armor_keyed_rejected_total{route=\"/upload\"} 1\n"));
  CHECK(has(text, "armor_keyed_keys{route=\"/upload\"} 1\n"));
}

TEST_CASE("prometheus naming: a keyed limiter's refusals per key, under the seeds' name", "[prometheus][keyed]") {
  seeds s;
  armor::prometheus::registry metrics;
  metrics.add(s.per_bucket, {}, "bucket")
      .rename("armor_keyed_key_rejected_total", "rate_limit_exceeded_total")
      .only_renamed();
  CHECK(metrics.text() ==
        "# HELP rate_limit_exceeded_total Calls refused by their key's policy, per key: the first rejected_keys keys "
        "refused, the rest as \"other\".\n"
        "# TYPE rate_limit_exceeded_total counter\n"
        "rate_limit_exceeded_total{bucket=\"products\"} 1\n"
        "rate_limit_exceeded_total{bucket=\"other\"} 0\n");

  SECTION("not written for a map that keeps no per-key count; renaming it then says why") {
    armor::keyed<armor::token_bucket<armor::manual_clock>> plain{{.rate = {1, 1s}, .burst = 1}, {}, s.clock};
    armor::prometheus::registry r;
    r.add(plain, {}, "bucket");
    CHECK_FALSE(has(r.text(), "armor_keyed_key_rejected_total"));
    CHECK(has(refusal([&] { r.rename("armor_keyed_key_rejected_total", "rate_limit_exceeded_total"); }),
              "rejected_keys"));
  }
}

TEST_CASE("prometheus naming: a prefix replaces armor_, constant labels go first", "[prometheus]") {
  armor::bulkhead<> b{{.max_concurrent = 2}};
  armor::prometheus::registry metrics({.prefix = "ducke_", .labels = {{"service", "ducke"}, {"instance", "a1"}}});
  metrics.add(b, {{"pool", "uploads"}});
  const std::string text = metrics.text();
  CHECK(has(text, "# TYPE ducke_bulkhead_in_use gauge\n"));
  CHECK(has(text, "ducke_bulkhead_in_use{service=\"ducke\",instance=\"a1\",pool=\"uploads\"} 0\n"));
  CHECK(has(text, "ducke_bulkhead_rejected_total{service=\"ducke\",instance=\"a1\",pool=\"uploads\"} 0\n"));
  CHECK_FALSE(has(text, "armor_"));

  SECTION("a policy's own prefix overrides the registry's; renamed families keep their names") {
    armor::bulkhead<> c{{.max_concurrent = 1}};
    metrics.add(c, {{"pool", "s3"}}).rename("armor_bulkhead_in_use", "s3_in_flight").prefix("s3_");
    const std::string t = metrics.text();
    CHECK(has(t, "s3_in_flight{service=\"ducke\",instance=\"a1\",pool=\"s3\"} 0\n"));
    CHECK(has(t, "s3_bulkhead_queued{service=\"ducke\",instance=\"a1\",pool=\"s3\"} 0\n"));
    CHECK(has(t, "ducke_bulkhead_queued{service=\"ducke\",instance=\"a1\",pool=\"uploads\"} 0\n"));
  }
}

TEST_CASE("prometheus naming: two policies renamed to one name are one family", "[prometheus]") {
  armor::bulkhead<> a{{.max_concurrent = 1}};
  armor::bulkhead<> b{{.max_concurrent = 1}};
  armor::prometheus::registry metrics;
  metrics.add(a, {{"pool", "a"}})
      .rename("armor_bulkhead_rejected_total", "pool_rejections_total")
      .only_renamed()
      .add(b, {{"pool", "b"}})
      .rename("armor_bulkhead_rejected_total", "pool_rejections_total")
      .only_renamed();
  CHECK(metrics.text() ==
        "# HELP pool_rejections_total Calls the bulkhead refused: every slot taken and no room in its queue.\n"
        "# TYPE pool_rejections_total counter\n"
        "pool_rejections_total{pool=\"a\"} 0\n"
        "pool_rejections_total{pool=\"b\"} 0\n");
}

TEST_CASE("prometheus naming: bad names are refused when given, saying what is wrong", "[prometheus]") {
  armor::bulkhead<> b{{.max_concurrent = 1}};
  armor::latency_recorder rec{};
  armor::prometheus::registry metrics;
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_in_use", "x"); }), "add a policy first"));
  metrics.add(b);
  CHECK(has(refusal([&] { metrics.rename("armor_nope", "x"); }),
            "feeds no family \"armor_nope\" (it feeds armor_bulkhead_in_use"));
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_in_use", "9lives"); }),
            "\"9lives\" is not a valid Prometheus metric name"));
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_in_use", "a-b"); }), "not a valid Prometheus metric name"));
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_in_use", "__x"); }), "not a valid Prometheus metric name"));
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_rejected_total", "rejections"); }),
            "names a counter and must end in _total"));
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_in_use", "in_use_total"); }),
            "is not a counter and must not end in _total"));
  CHECK(has(refusal([&] { metrics.rename("armor_bulkhead_in_use", "armor_bulkhead_queued"); }),
            "already a family of this policy"));
  CHECK(has(refusal([&] { metrics.prefix("9x_"); }), "does not start a valid Prometheus metric name"));
  CHECK(has(refusal([&] { metrics.prefix("a b"); }), "does not start a valid Prometheus metric name"));
  metrics.add(rec);
  CHECK(has(refusal([&] { metrics.rename("armor_call_duration_seconds", "armor_bulkhead_in_use"); }),
            "would be both a gauge and a histogram"));
  CHECK(has(refusal([] { armor::prometheus::registry r({.prefix = "-"}); }), "registry_options::prefix"));
  CHECK(has(refusal([] { armor::prometheus::registry r({.labels = {{"le", "x"}}}); }), "\"le\" is one armor adds"));
  CHECK(has(refusal([] { armor::prometheus::registry r({.labels = {{"a", "x"}, {"a", "y"}}}); }),
            "\"a\" is given twice"));
  armor::prometheus::registry with_service({.labels = {{"service", "x"}}});
  CHECK(has(refusal([&] { with_service.add(b, {{"service", "y"}}); }), "already a constant label"));
  armor::keyed<armor::bulkhead<>> per_key{{.max_concurrent = 1}};
  CHECK(has(refusal([&] { with_service.add(per_key, {}, "service"); }), "both a constant label and the key's label"));
  CHECK(has(refusal([&] { with_service.add(per_key, {}, "b-ucket"); }), "\"b-ucket\" is not a valid"));
  CHECK(refusal([&] { with_service.add(per_key, {}, "bucket"); }) == "(accepted)");
}

TEST_CASE("prometheus: a latency histogram is written as _bucket, _sum and _count", "[prometheus][histogram]") {
  armor::latency_recorder rec{{.histogram = {.bounds = {100ms, 250ms, 1s}}}};
  rec.histogram().record(50ms);
  rec.histogram().record(200ms);
  rec.histogram().record(200ms);
  rec.histogram().record(3s);
  armor::prometheus::registry metrics;
  metrics.add(rec, {{"upstream", "s3"}});
  CHECK(metrics.text() ==
        "# HELP armor_call_duration_seconds Duration of whole calls through the pipeline, retries and waits "
        "included.\n"
        "# TYPE armor_call_duration_seconds histogram\n"
        "armor_call_duration_seconds_bucket{upstream=\"s3\",le=\"0.1\"} 1\n"
        "armor_call_duration_seconds_bucket{upstream=\"s3\",le=\"0.25\"} 3\n"
        "armor_call_duration_seconds_bucket{upstream=\"s3\",le=\"1\"} 3\n"
        "armor_call_duration_seconds_bucket{upstream=\"s3\",le=\"+Inf\"} 4\n"
        "armor_call_duration_seconds_sum{upstream=\"s3\"} 3.45\n"
        "armor_call_duration_seconds_count{upstream=\"s3\"} 4\n"
        // The other scope's family, with no samples (as for a keyed map with no keys).
        "# HELP armor_attempt_duration_seconds Duration of single attempts of the operation.\n"
        "# TYPE armor_attempt_duration_seconds histogram\n");
  CHECK(fmt::format("{}", rec.stats()) == "scope=call duration={count=4 sum=3.45s p50=175ms p95=1s p99=1s}");
}

TEST_CASE("prometheus: a keyed latency recorder writes a histogram per key", "[prometheus][histogram][keyed]") {
  armor::keyed<armor::latency_recorder> per_upstream{{.histogram = {.bounds = {100ms, 1s}, .shards = 1}},
                                                     {.max_keys = 8}};
  per_upstream.get("s3")->histogram().record(50ms);
  per_upstream.get("s3")->histogram().record(2s);
  armor::prometheus::registry metrics;
  metrics.add(per_upstream, {{"route", "/upload"}}, "upstream").rename("armor_call_duration_seconds", "s3_call_seconds")
      .only_renamed();
  CHECK(metrics.text() ==
        "# HELP s3_call_seconds Duration of whole calls through the pipeline, retries and waits included.\n"
        "# TYPE s3_call_seconds histogram\n"
        "s3_call_seconds_bucket{route=\"/upload\",upstream=\"s3\",le=\"0.1\"} 1\n"
        "s3_call_seconds_bucket{route=\"/upload\",upstream=\"s3\",le=\"1\"} 1\n"
        "s3_call_seconds_bucket{route=\"/upload\",upstream=\"s3\",le=\"+Inf\"} 2\n"
        "s3_call_seconds_sum{route=\"/upload\",upstream=\"s3\"} 2.05\n"
        "s3_call_seconds_count{route=\"/upload\",upstream=\"s3\"} 2\n");
}

TEST_CASE("prometheus: promtool accepts renamed families and histograms", "[.promtool]") {
  seeds s;
  armor::latency_recorder call{};
  armor::latency_recorder attempt{{.scope = armor::latency_scope::attempt}};
  call.histogram().record(120ms);
  attempt.histogram().record(40ms);
  s.metrics.add(call, {{"upstream", "s3"}}).add(attempt, {{"upstream", "s3"}}).prefix("s3_");
  armor::prometheus::registry named({.prefix = "ducke_", .labels = {{"service", "ducke"}, {"instance", "a1"}}});
  named.add(s.uploads).add(s.per_bucket, {}, "bucket").add(call);
  armor::keyed<armor::latency_recorder> per_upstream{{.scope = armor::latency_scope::attempt}, {.max_keys = 8}};
  per_upstream.get("s3")->histogram().record(80ms);
  per_upstream.get("gemini")->histogram().record(1200ms);
  named.add(per_upstream, {{"map", "latency"}}, "upstream");  // its armor_keyed_* series apart from per_bucket's
  armor_test::promtool_check(s.metrics.text() + named.text());
}
