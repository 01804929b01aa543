// armor/prometheus.hpp: the exposition is parsed back by a small parser
// written here (values, labels, escaping, one HELP/TYPE per family, samples
// of a family together, no series twice), and checked by the real tool,
// `promtool check metrics`, in the test tagged [promtool] (CTest runs it as
// armor_fmt_promtool and reports it skipped when promtool is not on PATH).
#include <armor/backoff.hpp>
#include <armor/bulkhead.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/keyed.hpp>
#include <armor/pipeline.hpp>
#include <armor/prometheus.hpp>
#include <armor/quota_tracker.hpp>
#include <armor/token_bucket.hpp>

#include "alloc/counting_new.hpp"
#include "fmt/promtool.hpp"
#include "armor_catch.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------- a small exposition parser

using label_set = std::map<std::string, std::string>;

struct sample {
  std::string name;
  label_set labels;
  double value = 0;
};

struct family_info {
  std::string help;
  std::string type;
  std::size_t samples = 0;
};

struct exposition {
  std::map<std::string, family_info> families;
  std::vector<sample> samples;
  std::vector<std::string> errors;  // every rule the text breaks

  /// The value of the one sample with exactly these labels; nothing if none.
  [[nodiscard]] std::optional<double> value(const std::string& name, const label_set& labels = {}) const {
    std::optional<double> found;
    for (const sample& s : samples) {
      if (s.name == name && s.labels == labels) found = s.value;
    }
    return found;
  }
  /// The samples of a family.
  [[nodiscard]] std::vector<sample> of(const std::string& name) const {
    std::vector<sample> out;
    for (const sample& s : samples) {
      if (s.name == name) out.push_back(s);
    }
    return out;
  }
};

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

double parse_value(const std::string& v, std::vector<std::string>& errors) {
  if (v == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (v == "+Inf") return std::numeric_limits<double>::infinity();
  if (v == "-Inf") return -std::numeric_limits<double>::infinity();
  std::size_t used = 0;
  double d = 0;
  try {
    d = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) errors.push_back("bad value \"" + v + "\"");
  return d;
}

// Parses `name{a="x",b="y"} value` (the subset armor writes: no timestamps).
std::optional<sample> parse_sample(const std::string& line, std::vector<std::string>& errors) {
  sample s;
  std::size_t i = 0;
  while (i < line.size() && name_char(line[i], i == 0)) s.name += line[i++];
  if (s.name.empty()) {
    errors.push_back("no metric name: " + line);
    return std::nullopt;
  }
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      std::string lname;
      while (i < line.size() && name_char(line[i], lname.empty()) && line[i] != ':') lname += line[i++];
      if (lname.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
        errors.push_back("bad label in: " + line);
        return std::nullopt;
      }
      i += 2;
      std::string lvalue;
      for (;;) {
        if (i >= line.size()) {
          errors.push_back("unterminated label value in: " + line);
          return std::nullopt;
        }
        const char c = line[i++];
        if (c == '"') break;
        if (c == '\n') errors.push_back("raw newline in a label value");
        if (c != '\\') {
          lvalue += c;
          continue;
        }
        if (i >= line.size()) {
          errors.push_back("dangling backslash in: " + line);
          return std::nullopt;
        }
        const char e = line[i++];
        if (e == '\\') {
          lvalue += '\\';
        } else if (e == '"') {
          lvalue += '"';
        } else if (e == 'n') {
          lvalue += '\n';
        } else {
          errors.push_back(std::string("unknown escape \\") + e + " in: " + line);
        }
      }
      if (s.labels.count(lname) != 0) errors.push_back("label " + lname + " twice in: " + line);
      s.labels[lname] = lvalue;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) {
      errors.push_back("unterminated label set: " + line);
      return std::nullopt;
    }
    ++i;  // '}'
  }
  if (i >= line.size() || line[i] != ' ') {
    errors.push_back("no space before the value: " + line);
    return std::nullopt;
  }
  s.value = parse_value(line.substr(i + 1), errors);
  return s;
}

exposition parse(const std::string& text) {
  exposition e;
  if (!text.empty() && text.back() != '\n') e.errors.push_back("the text does not end with a newline");
  std::istringstream in(text);
  std::string line;
  std::string current;  // the family whose samples may follow
  std::set<std::string> closed;
  std::set<std::pair<std::string, label_set>> series;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const bool help = line[2] == 'H';
      const std::string rest = line.substr(7);
      const std::size_t space = rest.find(' ');
      const std::string name = rest.substr(0, space);
      const std::string what = space == std::string::npos ? "" : rest.substr(space + 1);
      family_info& f = e.families[name];
      if (help) {
        if (!f.help.empty()) e.errors.push_back("second HELP for " + name);
        if (!f.type.empty()) e.errors.push_back("HELP after TYPE for " + name);
        f.help = what;
      } else {
        if (!f.type.empty()) e.errors.push_back("second TYPE for " + name);
        if (what != "counter" && what != "gauge") e.errors.push_back("unexpected type " + what + " for " + name);
        f.type = what;
      }
      if (current != name) {
        if (!current.empty()) closed.insert(current);
        if (closed.count(name) != 0) e.errors.push_back("family " + name + " written in two places");
        current = name;
      }
      continue;
    }
    if (line.empty() || line[0] == '#') {
      e.errors.push_back("unexpected line: " + line);
      continue;
    }
    std::optional<sample> s = parse_sample(line, e.errors);
    if (!s) continue;
    if (s->name != current) e.errors.push_back("sample of " + s->name + " outside its family's block");
    const auto f = e.families.find(s->name);
    if (f == e.families.end() || f->second.help.empty() || f->second.type.empty()) {
      e.errors.push_back("sample of " + s->name + " without HELP and TYPE before it");
    } else {
      ++f->second.samples;
      const bool counter = f->second.type == "counter";
      if (counter != (s->name.size() > 6 && s->name.substr(s->name.size() - 6) == "_total")) {
        e.errors.push_back(s->name + ": counters, and only counters, end in _total");
      }
      if (counter && !(s->value >= 0)) e.errors.push_back(s->name + ": a counter below zero");
    }
    if (!series.insert({s->name, s->labels}).second) e.errors.push_back("series written twice: " + line);
    e.samples.push_back(std::move(*s));
  }
  return e;
}

std::string render(const armor::prometheus::registry& r) {
  fmt::memory_buffer out;
  r.write(out);
  return fmt::to_string(out);
}

// ---------------------------------------------------------------- a scene with every kind of policy

armor::manual_clock::time_point noon_2024_06_15() {
  return armor::manual_clock::time_point{
      (std::chrono::sys_days{std::chrono::year{2024} / 6 / 15} + std::chrono::hours{12}).time_since_epoch()};
}

constexpr std::string_view awkward = "a\\b \"quoted\"\nline two";

struct scene {
  armor::manual_clock clock{noon_2024_06_15()};
  armor::circuit_breaker<armor::manual_clock> s3{{.failure_threshold = 3, .open_for = 30s, .count_calls = true}, clock};
  armor::circuit_breaker<armor::manual_clock> gh{{.failure_threshold = 5, .open_for = 10s}, clock};
  armor::backoff<armor::seeded_rng> retries{{.max_attempts = 3,
                                             .initial = 10ms,
                                             .jitter = armor::jitter_mode::none,
                                             .budget = armor::retry_budget{.max_tokens = 10},
                                             .count_calls = true},
                                            armor::seeded_rng{1}};
  armor::token_bucket<armor::manual_clock> bucket{{.rate = {50, 1s}, .burst = 10, .count_calls = true}, clock};
  armor::quota_tracker<armor::manual_clock> quota{
      {.windows = {armor::quota_window::per_day(100), armor::quota_window::per_minute(10),
                   armor::quota_window::rolling(1000, 1h, 60), armor::quota_window::per_day(500)}},
      clock};
  armor::keyed<armor::token_bucket<armor::manual_clock>> per_ip{{.rate = {1, 1s}, .burst = 3}, {.max_keys = 100}, clock};
  armor::keyed<armor::circuit_breaker<armor::manual_clock>> per_host{{.failure_threshold = 1, .open_for = 5s},
                                                                      {.max_keys = 100}, clock};
  armor::bulkhead<> pool{{.max_concurrent = 4, .max_queue = 8, .max_wait = 1s}};
  std::vector<armor::bulkhead_permit> inside;  // three calls in flight while the metrics are written
  armor::prometheus::registry metrics;

  scene() {
    for (int i = 0; i < 3; ++i) inside.push_back(pool.try_acquire().permit());
    // s3: three failures open it; two calls are refused.
    auto p = armor::pipeline{clock, std::ref(s3)};
    for (int i = 0; i < 4; ++i) (void)p.try_execute([] { return 1; });
    for (int i = 0; i < 3; ++i) (void)p.try_execute([] { return std::make_error_code(std::errc::io_error); });
    for (int i = 0; i < 2; ++i) (void)p.try_execute([] { return 1; });
    // retries: one call fails twice then succeeds; one fails three times.
    auto r = armor::pipeline{clock, std::ref(retries)};
    int n = 0;
    (void)r.try_execute([&] { return ++n < 3 ? std::make_error_code(std::errc::io_error) : std::error_code{}; });
    (void)r.try_execute([] { return std::make_error_code(std::errc::io_error); });
    clock.set(noon_2024_06_15());  // back from the retry delays, so that what follows starts at noon
    // bucket: 7 of 10 tokens taken, 5 refused, 11 too many.
    (void)bucket.try_acquire(7);
    (void)bucket.try_acquire(5);
    (void)bucket.try_acquire(11);
    // quota: 42 units, one refusal by the minute window.
    (void)quota.try_consume(9);
    (void)quota.try_consume(2);
    clock.advance(1min);
    (void)quota.try_consume(10);
    clock.advance(1min);
    (void)quota.try_consume(10);
    clock.advance(1min);
    (void)quota.try_consume(10);
    clock.advance(1min);
    (void)quota.try_consume(3);
    // keyed: keys that need escaping, and an ordinary one.
    (void)per_ip.get(awkward)->try_acquire(2);
    (void)per_ip.get("10.0.0.1")->try_acquire(1);
    {
      auto h = per_host.get("api.github.com");
      auto a = h->try_acquire();
      h->record(std::move(a).permit(), armor::verdict::failure());
    }
    (void)per_host.get("s3.amazonaws.com");

    metrics.add(s3, {{"upstream", "s3-products"}, {"zone", "eu-west-1"}})
        .add(retries, {{"upstream", "s3-products"}})
        .add(bucket, {{"route", "/search"}})
        .add(quota, {{"api", "gemini"}})
        .add(gh, {{"upstream", std::string_view{awkward}}})
        .add(per_ip, {{"route", "/login"}}, "client")
        .add(per_host, {})
        .add(pool, {{"upstream", "s3-products"}});
  }
};

}  // namespace

TEST_CASE("prometheus: the exposition parses back, each family once, with the policies' values") {
  scene s;
  const std::string text = render(s.metrics);
  const exposition e = parse(text);
  INFO(text);
  for (const std::string& err : e.errors) FAIL_CHECK(err);
  CHECK(e.errors.empty());

  const label_set s3{{"upstream", "s3-products"}, {"zone", "eu-west-1"}};
  const auto with = [](label_set l, const std::string& name, const std::string& value) {
    l[name] = value;
    return l;
  };
  // The breaker: open after 3 failures, 4 successes, 2 refusals.
  CHECK(e.value("armor_circuit_breaker_state", s3) == 1.0);
  CHECK(e.value("armor_circuit_breaker_opened_total", s3) == 1.0);
  CHECK(e.value("armor_circuit_breaker_calls_total", with(s3, "outcome", "success")) == 4.0);
  CHECK(e.value("armor_circuit_breaker_calls_total", with(s3, "outcome", "failure")) == 3.0);
  CHECK(e.value("armor_circuit_breaker_calls_total", with(s3, "outcome", "ignored")) == 0.0);
  CHECK(e.value("armor_circuit_breaker_rejected_total", s3) == 2.0);
  // Without count_calls, the counters that would mislead are not written.
  const label_set gh{{"upstream", std::string(awkward)}};
  CHECK(e.value("armor_circuit_breaker_state", gh) == 0.0);
  CHECK_FALSE(e.value("armor_circuit_breaker_calls_total", with(gh, "outcome", "success")));
  CHECK(e.value("armor_circuit_breaker_calls_total", with(gh, "outcome", "failure")) == 0.0);
  CHECK_FALSE(e.value("armor_circuit_breaker_rejected_total", gh));

  // The backoff: 2 retries in the first call (then a success), 2 in the second (then exhausted).
  const label_set up{{"upstream", "s3-products"}};
  CHECK(e.value("armor_retry_attempts_total", up) == 4.0);
  CHECK(e.value("armor_retry_calls_total", up) == 2.0);
  CHECK(e.value("armor_retry_successes_after_retry_total", up) == 1.0);
  CHECK(e.value("armor_retry_exhausted_total", up) == 1.0);
  CHECK(e.value("armor_retry_budget_refused_total", up) == 0.0);
  CHECK(e.value("armor_retry_deadline_stopped_total", up) == 0.0);
  CHECK(e.value("armor_retry_non_retryable_total", up) == 0.0);
  CHECK(e.value("armor_retry_refusal_stopped_total", up) == 0.0);
  REQUIRE(s.retries.stats().has_budget);
  CHECK(e.value("armor_retry_budget_tokens", up) == s.retries.stats().budget_tokens);

  // The bucket (time has moved 4 minutes since: full again).
  const label_set search{{"route", "/search"}};
  CHECK(e.value("armor_rate_limit_tokens_per_second", search) == 50.0);
  CHECK(e.value("armor_rate_limit_burst", search) == 10.0);
  CHECK(e.value("armor_rate_limit_available_tokens", search) == 10.0);
  CHECK(e.value("armor_rate_limit_full_in_seconds", search) == 0.0);
  CHECK(e.value("armor_rate_limit_granted_total", search) == 1.0);
  CHECK(e.value("armor_rate_limit_rejected_total", search) == 1.0);
  CHECK(e.value("armor_rate_limit_too_large_total", search) == 1.0);

  // The quota: per window, named; two daily windows are told apart.
  const auto q = [](const std::string& window) { return label_set{{"api", "gemini"}, {"window", window}}; };
  CHECK(e.value("armor_quota_used", q("day")) == 42.0);
  CHECK(e.value("armor_quota_limit", q("day")) == 100.0);
  CHECK(e.value("armor_quota_used", q("minute")) == 3.0);
  CHECK(e.value("armor_quota_limit", q("minute")) == 10.0);
  CHECK(e.value("armor_quota_used", q("rolling_1h")) == 42.0);
  CHECK(e.value("armor_quota_limit", q("day_3")) == 500.0);
  CHECK(e.value("armor_quota_reset_seconds", q("day")) == 12.0 * 3600 - 4 * 60);  // 12:04 now
  CHECK(e.value("armor_quota_reset_seconds", q("minute")) == 60.0);
  CHECK(e.value("armor_quota_rejected_total", {{"api", "gemini"}, {"reason", "exhausted"}}) == 1.0);
  CHECK(e.value("armor_quota_rejected_total", {{"api", "gemini"}, {"reason", "too_large"}}) == 0.0);
  CHECK(e.value("armor_quota_alerts_total", {{"api", "gemini"}}) == static_cast<double>(s.quota.stats().alerts));
  CHECK(s.quota.stats().alerts > 0);
  // The projection at the day's end: 42 units in the 12 h 4 min since midnight, 42 x 1440 / 724.
  CHECK(e.value("armor_quota_projected", q("day")) == 83.0);
  CHECK_FALSE(e.value("armor_quota_projected", q("rolling_1h")));  // a rolling window has no period end
  CHECK(e.value("armor_quota_forecast_alerts_total", {{"api", "gemini"}}) == 0.0);

  // The bulkhead: gauges only (it keeps no counters).
  REQUIRE(s.inside.size() == 3);
  CHECK(e.value("armor_bulkhead_in_use", up) == 3.0);
  CHECK(e.value("armor_bulkhead_queued", up) == 0.0);
  CHECK(e.value("armor_bulkhead_max_concurrent", up) == 4.0);
  CHECK(e.value("armor_bulkhead_max_queue", up) == 8.0);
  CHECK(fmt::format("{}", s.pool.stats()) == "in_use=3 queued=0 max_concurrent=4 max_queue=8 rejected=0 abandoned=0");

  // Keyed maps: one series per key, the key in its label, escaped.
  CHECK(e.value("armor_rate_limit_available_tokens", {{"route", "/login"}, {"client", std::string(awkward)}}) == 1.0);
  CHECK(e.value("armor_rate_limit_available_tokens", {{"route", "/login"}, {"client", "10.0.0.1"}}) == 2.0);
  CHECK(e.value("armor_rate_limit_full_in_seconds", {{"route", "/login"}, {"client", "10.0.0.1"}}) == 1.0);
  // Buckets in a keyed map do not count calls: no counter series for them.
  CHECK(e.of("armor_rate_limit_granted_total").size() == 1);
  CHECK(e.value("armor_circuit_breaker_state", {{"key", "api.github.com"}}) == 1.0);
  CHECK(e.value("armor_circuit_breaker_state", {{"key", "s3.amazonaws.com"}}) == 0.0);
  // Both breakers' states are in one block with the keyed ones.
  CHECK(e.of("armor_circuit_breaker_state").size() == 4);
  CHECK(e.families.at("armor_circuit_breaker_state").type == "gauge");
  CHECK(e.families.at("armor_quota_rejected_total").type == "counter");
}

TEST_CASE("prometheus: label values are escaped: backslash, double quote, newline") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> b{{}, clock};
  armor::prometheus::registry metrics;
  metrics.add(b, {{"upstream", "C:\\dir \"x\"\nnext"}});
  const std::string text = render(metrics);
  CHECK(text.find(R"(armor_circuit_breaker_state{upstream="C:\\dir \"x\"\nnext"} 0)") != std::string::npos);
  const exposition e = parse(text);
  CHECK(e.errors.empty());
  CHECK(e.value("armor_circuit_breaker_state", {{"upstream", "C:\\dir \"x\"\nnext"}}) == 0.0);
}

TEST_CASE("prometheus: a policy without labels writes bare samples") {
  armor::manual_clock clock;
  armor::token_bucket<armor::manual_clock> b{{.rate = {1, 1min}, .burst = 2}, clock};
  armor::prometheus::registry metrics;
  metrics.add(b);
  const std::string text = render(metrics);
  CHECK(text ==
        "# HELP armor_rate_limit_tokens_per_second The token bucket's refill rate.\n"
        "# TYPE armor_rate_limit_tokens_per_second gauge\n"
        "armor_rate_limit_tokens_per_second 0.016666666666666666\n"
        "# HELP armor_rate_limit_burst The token bucket's size: tokens available at once.\n"
        "# TYPE armor_rate_limit_burst gauge\n"
        "armor_rate_limit_burst 2\n"
        "# HELP armor_rate_limit_available_tokens Whole tokens in the bucket now (below zero: owed to reservations).\n"
        "# TYPE armor_rate_limit_available_tokens gauge\n"
        "armor_rate_limit_available_tokens 2\n"
        "# HELP armor_rate_limit_full_in_seconds Seconds until the token bucket is full again.\n"
        "# TYPE armor_rate_limit_full_in_seconds gauge\n"
        "armor_rate_limit_full_in_seconds 0\n"
        "# HELP armor_rate_limit_granted_total Calls the token bucket granted, waits included (count_calls only).\n"
        "# TYPE armor_rate_limit_granted_total counter\n"
        "# HELP armor_rate_limit_rejected_total Calls the token bucket refused for too few tokens (count_calls only).\n"
        "# TYPE armor_rate_limit_rejected_total counter\n"
        "# HELP armor_rate_limit_too_large_total Calls the token bucket refused for asking more than the burst "
        "(count_calls only).\n"
        "# TYPE armor_rate_limit_too_large_total counter\n");
  CHECK(metrics.text() == text);
}

TEST_CASE("prometheus: bad label names are refused when added, naming the label") {
  armor::manual_clock clock;
  armor::circuit_breaker<armor::manual_clock> b{{}, clock};
  armor::keyed<armor::token_bucket<armor::manual_clock>> k{{.rate = {1, 1s}}, {}, clock};
  armor::prometheus::registry metrics;
  const auto refusal = [&](auto&& add) -> std::string {
    try {
      add();
    } catch (const armor::error& e) {
      CHECK(e.code() == armor::errc::invalid_argument);
      return e.what();
    }
    return "(accepted)";
  };
  const auto has = [](const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; };
  CHECK(has(refusal([&] { metrics.add(b, {{"9lives", "x"}}); }), "\"9lives\" is not a valid"));
  CHECK(has(refusal([&] { metrics.add(b, {{"up-stream", "x"}}); }), "\"up-stream\" is not a valid"));
  CHECK(has(refusal([&] { metrics.add(b, {{"__name__", "x"}}); }), "\"__name__\""));
  CHECK(has(refusal([&] { metrics.add(b, {{"", "x"}}); }), "not a valid"));
  CHECK(has(refusal([&] { metrics.add(b, {{"outcome", "x"}}); }), "\"outcome\" is one armor adds"));
  CHECK(has(refusal([&] { metrics.add(b, {{"a", "x"}, {"a", "y"}}); }), "\"a\" is given twice"));
  CHECK(has(refusal([&] { metrics.add(k, {{"key", "x"}}); }), "\"key\" is also the key's label"));
  CHECK(has(refusal([&] { metrics.add(k, {}, "window"); }), "\"window\" is one armor adds"));
  CHECK(metrics.size() == 0);
  CHECK(refusal([&] { metrics.add(b, {{"_ok9", ""}}); }) == "(accepted)");
  CHECK(metrics.size() == 1);
}

TEST_CASE("prometheus: writing allocates nothing once the output buffer has room") {
  scene s;
  for (int i = 0; i < 20; ++i) (void)s.per_ip.get("client-" + std::to_string(i));
  fmt::memory_buffer out;
  s.metrics.write(out);  // grows the buffer
  const std::size_t size = out.size();
  out.clear();
  armor_test::allocation_scope scope;
  s.metrics.write(out);
  CHECK(scope.allocations() == 0);
  CHECK(out.size() == size);
}

// Hidden from the default run: CTest runs it as armor_fmt_promtool, where an
// exit status of 77 (promtool not found) is reported as skipped.
TEST_CASE("prometheus: promtool check metrics accepts the exposition", "[.promtool]") {
  scene s;
  const std::string text = render(s.metrics);
  REQUIRE(parse(text).errors.empty());
  armor_test::promtool_check(text);
}
