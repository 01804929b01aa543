// armor::load_shedder: every level transition on injected readings,
// hysteresis (a reading hovering at a threshold does not flap), priorities
// per level, forced modes, ignored readings, validation, the listener, and
// the shedder in a pipeline. Single-threaded; threads are in tests/stress/.
#include <armor/deadline.hpp>
#include <armor/error.hpp>
#include <armor/load_shedder.hpp>
#include <armor/pipeline.hpp>
#include <armor/http/answer.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using armor::load_level;
using armor::load_mode;
using armor::load_refusal;
using armor::priority;

namespace {

armor::load_shedder_options one_resource() { return {.resources = {{.name = "memory"}}}; }

std::string config_error(const armor::load_shedder_options& o) {
  try {
    armor::load_shedder<> s{o};
  } catch (const armor::error& e) {
    if (e.code() == armor::errc::invalid_argument) return e.what();
    return "wrong code";
  }
  return "";
}

template <class S>
bool admits(S& s, priority p) {
  return static_cast<bool>(s.try_acquire(p));
}

struct recorder {
  std::vector<armor::load_shedder_event>* events;
  std::vector<std::string>* resources;
  void operator()(const armor::load_shedder_event& e) const noexcept {
    events->push_back(e);
    resources->emplace_back(e.resource);
  }
};

}  // namespace

TEST_CASE("load_shedder: the default ladder, every transition up and down") {
  armor::load_shedder<> s{one_resource()};
  CHECK(s.level() == load_level::normal);
  const struct {
    double reading;
    load_level level;
  } steps[] = {
      {0.50, load_level::normal},   {0.7999, load_level::normal}, {0.80, load_level::warning},
      {0.85, load_level::warning},  {0.90, load_level::degraded}, {0.94, load_level::degraded},
      {0.95, load_level::shedding}, {1.00, load_level::shedding}, {0.85, load_level::shedding},  // leaves below 0.80
      {0.80, load_level::shedding}, {0.7999, load_level::warning},                              // warning ends below 0.75
      {0.76, load_level::warning},  {0.7499, load_level::normal}, {0.92, load_level::degraded},  // skips warning going up
      {0.81, load_level::degraded}, {0.7999, load_level::warning}, {0.10, load_level::normal},
      {0.97, load_level::shedding}, {0.10, load_level::normal},                                  // and everything going down
  };
  for (const auto& step : steps) {
    INFO("reading " << step.reading);
    CHECK(s.update(0, step.reading));
    CHECK(s.level() == step.level);
    CHECK(s.resource_level(0) == step.level);
    CHECK(s.reading(0) == step.reading);
  }
  CHECK(s.stats().level_changes == 10);
}

TEST_CASE("load_shedder: a reading hovering at a threshold does not flap") {
  std::vector<armor::load_shedder_event> events;
  std::vector<std::string> names;
  armor::load_shedder s{one_resource(), armor::steady_clock{}, recorder{&events, &names}};
  // Around the shedding threshold: one crossing, one event.
  for (int i = 0; i < 100; ++i) s.update(0, i % 2 == 0 ? 0.9501 : 0.9499);
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == armor::load_shedder_event_kind::level_changed);
  CHECK(events[0].from == load_level::normal);
  CHECK(events[0].to == load_level::shedding);
  CHECK(events[0].reading == 0.9501);
  CHECK(names[0] == "memory");
  CHECK(s.level() == load_level::shedding);
  // Around 80 % on the way down: the refusals end once, the warning stays.
  events.clear();
  for (int i = 0; i < 100; ++i) s.update(0, i % 2 == 0 ? 0.7999 : 0.8001);
  REQUIRE(events.size() == 1);
  CHECK(events[0].to == load_level::warning);
  // Around 80 % from below: the warning is heard exactly once per crossing.
  s.update(0, 0.5);
  events.clear();
  for (int i = 0; i < 100; ++i) s.update(0, i % 2 == 0 ? 0.8001 : 0.7999);
  REQUIRE(events.size() == 1);
  CHECK(events[0].from == load_level::normal);
  CHECK(events[0].to == load_level::warning);
  // Around 90 % and 95 % on the way up from warning: one event each.
  events.clear();
  for (int i = 0; i < 10; ++i) s.update(0, i % 2 == 0 ? 0.9001 : 0.8999);
  for (int i = 0; i < 10; ++i) s.update(0, i % 2 == 0 ? 0.9501 : 0.9499);
  REQUIRE(events.size() == 2);
  CHECK(events[0].to == load_level::degraded);
  CHECK(events[1].to == load_level::shedding);
}

TEST_CASE("load_shedder: each level refuses its priorities; critical passes every level by default") {
  armor::load_shedder<> s{one_resource()};
  const struct {
    double reading;
    bool critical, normal, sheddable;
  } rows[] = {
      {0.10, true, true, true},    // normal
      {0.80, true, true, true},    // warning: a log line, nothing refused
      {0.90, true, true, false},   // degraded: sheddable refused
      {0.95, true, false, false},  // shedding: only critical passes
  };
  for (const auto& row : rows) {
    INFO("reading " << row.reading);
    s.update(0, row.reading);
    CHECK(admits(s, priority::critical) == row.critical);
    CHECK(admits(s, priority::normal) == row.normal);
    CHECK(admits(s, priority::sheddable) == row.sheddable);
    CHECK(s.admits(priority::normal) == row.normal);
  }
  const auto d = s.try_acquire(priority::normal);
  CHECK(d.code() == armor::errc::overloaded);
  CHECK(d.retry_after() == 1s);
}

TEST_CASE("load_shedder: refusals per level are configurable") {
  armor::load_shedder<> s{{.resources = {{.name = "memory"}},
                           .refuses = {.warning = load_refusal::sheddable,
                                       .degraded = load_refusal::normal,
                                       .shedding = load_refusal::all},
                           .retry_after_hint = 0s}};
  s.update(0, 0.8);
  CHECK_FALSE(admits(s, priority::sheddable));
  CHECK(admits(s, priority::normal));
  s.update(0, 0.9);
  CHECK_FALSE(admits(s, priority::normal));
  CHECK(admits(s, priority::critical));
  s.update(0, 0.95);
  CHECK_FALSE(admits(s, priority::critical));
  CHECK(s.try_acquire(priority::critical).retry_after() == std::chrono::nanoseconds::max());  // no hint
}

TEST_CASE("load_shedder: the overall level is the highest resource's; each keeps its own hysteresis") {
  std::vector<armor::load_shedder_event> events;
  std::vector<std::string> names;
  armor::load_shedder s{{.resources = {{.name = "memory"},
                                       {.name = "cpu", .ladder = {.warning = {0.85, 0.80},
                                                                  .degraded = {0.95, 0.85},
                                                                  .shedding = {0.99, 0.90}}}}},
                        armor::steady_clock{}, recorder{&events, &names}};
  CHECK(s.resources() == 2);
  CHECK(s.resource_name(1) == "cpu");
  CHECK(s.index_of("cpu") == 1u);
  CHECK_FALSE(s.index_of("disk").has_value());
  CHECK(s.update("cpu", 0.96));  // cpu degraded (its own ladder)
  CHECK(s.level() == load_level::degraded);
  CHECK(s.update("memory", 0.82));  // memory warning: the overall level stays degraded, no event
  CHECK(events.size() == 1);
  CHECK(s.update("memory", 0.96));  // memory shedding
  CHECK(s.level() == load_level::shedding);
  CHECK(names.back() == "memory");
  CHECK(s.update("memory", 0.5));  // memory normal; cpu still degraded
  CHECK(s.level() == load_level::degraded);
  CHECK(events.back().from == load_level::shedding);
  CHECK(events.back().to == load_level::degraded);
  CHECK(s.update("cpu", 0.86));  // cpu stays degraded: its exit is 0.85
  CHECK(s.level() == load_level::degraded);
  CHECK(s.update("cpu", 0.84));  // cpu warning (0.84 >= its warning exit 0.80)
  CHECK(s.level() == load_level::warning);
  CHECK(s.resource_level(0) == load_level::normal);
  CHECK(s.resource_level(1) == load_level::warning);
  CHECK(events.size() == 4);
}

TEST_CASE("load_shedder: NaN, out-of-range readings and unknown resources are ignored and counted") {
  armor::load_shedder<> s{one_resource()};
  CHECK(std::isnan(s.reading(0)));
  s.update(0, 0.96);
  CHECK_FALSE(s.update(0, std::numeric_limits<double>::quiet_NaN()));
  CHECK_FALSE(s.update(0, -0.01));
  CHECK_FALSE(s.update(0, 1.01));
  CHECK_FALSE(s.update(0, std::numeric_limits<double>::infinity()));
  CHECK_FALSE(s.update(1, 0.1));       // no resource 1
  CHECK_FALSE(s.update("disk", 0.1));  // no resource "disk"
  CHECK(s.level() == load_level::shedding);  // none of them moved anything
  CHECK(s.reading(0) == 0.96);
  CHECK(s.stats().ignored_readings == 6);
  // And a NaN never sheds everything: from normal it stays normal.
  armor::load_shedder<> fresh{one_resource()};
  CHECK_FALSE(fresh.update(0, std::numeric_limits<double>::quiet_NaN()));
  CHECK(fresh.level() == load_level::normal);
  CHECK(admits(fresh, priority::sheddable));
}

TEST_CASE("load_shedder: forced modes share the word with the level") {
  std::vector<armor::load_shedder_event> events;
  std::vector<std::string> names;
  armor::load_shedder s{one_resource(), armor::steady_clock{}, recorder{&events, &names}};
  s.set_mode(load_mode::maintenance);
  CHECK(s.mode() == load_mode::maintenance);
  CHECK(s.level() == load_level::normal);
  CHECK(admits(s, priority::critical));
  CHECK_FALSE(admits(s, priority::normal));
  REQUIRE(events.size() == 2);  // the mode, then the refusal of the normal call
  CHECK(events[0].kind == armor::load_shedder_event_kind::mode_changed);
  CHECK(events[0].mode == load_mode::maintenance);
  CHECK(events[1].kind == armor::load_shedder_event_kind::refused);
  CHECK(events[1].mode == load_mode::maintenance);
  s.set_mode(load_mode::maintenance);  // no change, no event
  CHECK(events.size() == 2);
  // A level change keeps the mode; the stricter of the two refuses.
  s.update(0, 0.91);
  CHECK(s.mode() == load_mode::maintenance);
  CHECK(s.level() == load_level::degraded);
  CHECK_FALSE(admits(s, priority::normal));
  s.set_mode(load_mode::read_only);  // refuses nothing itself: the level does
  CHECK(admits(s, priority::normal));
  CHECK_FALSE(admits(s, priority::sheddable));
  s.set_mode(load_mode::automatic);
  s.update(0, 0.1);
  CHECK(admits(s, priority::sheddable));
  const auto st = s.stats();
  CHECK(st.mode == load_mode::automatic);
  CHECK(st.level == load_level::normal);
  // read_only may refuse too: writes marked sheddable, say.
  armor::load_shedder<> ro{{.refuses = {.read_only = load_refusal::sheddable}}};
  ro.set_mode(load_mode::read_only);
  CHECK_FALSE(admits(ro, priority::sheddable));
  CHECK(admits(ro, priority::normal));
}

TEST_CASE("load_shedder: refusals reach the listener; counted with count_calls only") {
  std::vector<armor::load_shedder_event> events;
  std::vector<std::string> names;
  armor::load_shedder s{{.resources = {{.name = "memory"}}, .count_calls = true}, armor::steady_clock{},
                        recorder{&events, &names}};
  s.update(0, 0.99);
  events.clear();
  CHECK_FALSE(s.try_acquire(priority::sheddable));
  CHECK(s.try_acquire(priority::critical));
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == armor::load_shedder_event_kind::refused);
  CHECK(events[0].priority == priority::sheddable);
  CHECK(events[0].to == load_level::shedding);
  CHECK(s.stats().counting);
  CHECK(s.stats().refused == 1);
  armor::load_shedder<> quiet{one_resource()};
  quiet.update(0, 0.99);
  CHECK_FALSE(quiet.try_acquire());
  CHECK_FALSE(quiet.stats().counting);
  CHECK(quiet.stats().refused == 0);
}

TEST_CASE("load_shedder: in a pipeline, call_options::priority decides; the refusal answers 503") {
  armor::manual_clock clock;
  armor::load_shedder<armor::manual_clock> s{{.resources = {{.name = "memory"}}, .retry_after_hint = 2s}, clock};
  auto p = armor::pipeline{clock, std::ref(s), armor::deadline{1s}};
  int calls = 0;
  const auto op = [&] { return ++calls; };
  CHECK(p.try_execute(op, {.priority = priority::sheddable}).ok());
  s.update(0, 0.96);
  auto r = p.try_execute(op);  // normal by default
  REQUIRE_FALSE(r);
  CHECK(r.code() == armor::errc::overloaded);
  CHECK(r.retry_after() == 2s);
  CHECK(calls == 1);
  const auto a = armor::http::answer_for(r.error());
  CHECK(a.status == 503);
  CHECK(a.retry_after == 2s);
  CHECK(p.try_execute(op, {.priority = priority::critical}).ok());
  CHECK(calls == 2);
  try {
    (void)p.execute(op);
    FAIL("no throw");
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::overloaded);
  }
  s.update(0, 0.5);
  CHECK(p.try_execute(op, {.priority = priority::sheddable}).ok());
}

TEST_CASE("load_shedder: a moved shedder keeps its state") {
  armor::load_shedder<> a{one_resource()};
  a.update(0, 0.96);
  armor::load_shedder<> b{std::move(a)};
  CHECK(b.level() == load_level::shedding);
  CHECK(b.update(0, 0.1));
  CHECK(b.level() == load_level::normal);
}

TEST_CASE("load_shedder: bad options are refused at construction, naming the option") {
  using armor::load_threshold;
  CHECK(config_error({}).empty());
  CHECK(config_error(one_resource()).empty());
  CHECK(config_error({.resources = {{.name = ""}}}).find("resources[0].name must not be empty") != std::string::npos);
  CHECK(config_error({.resources = {{.name = "m"}, {.name = "m"}}}).find("resources[1].name 'm' is a duplicate") !=
        std::string::npos);
  const auto ladder_error = [](armor::load_ladder l) { return config_error({.resources = {{.name = "m", .ladder = l}}}); };
  CHECK(ladder_error({.warning = {1.5, 0.5}}).find("resources[0].ladder.warning.enter must be within [0, 1]") !=
        std::string::npos);
  CHECK(ladder_error({.degraded = {0.9, -0.1}}).find("resources[0].ladder.degraded.exit must be within [0, 1]") !=
        std::string::npos);
  CHECK(ladder_error({.shedding = {std::numeric_limits<double>::quiet_NaN(), 0.8}})
            .find("ladder.shedding.enter must be within [0, 1]") != std::string::npos);
  CHECK(ladder_error({.degraded = {0.9, 0.92}}).find("ladder.degraded.exit must not be above its enter") !=
        std::string::npos);
  CHECK(ladder_error({.warning = {0.9, 0.75}, .degraded = {0.85, 0.8}})
            .find("ladder.degraded.enter must be above resources[0].ladder.warning.enter") != std::string::npos);
  CHECK(ladder_error({.warning = {0.9, 0.75}, .degraded = {0.9, 0.8}}).find("ladder.degraded.enter must be above") !=
        std::string::npos);
  CHECK(ladder_error({.warning = {0.8, 0.78}, .degraded = {0.9, 0.7}})
            .find("ladder.degraded.exit must not be below resources[0].ladder.warning.exit") != std::string::npos);
  CHECK(config_error({.refuses = {.degraded = load_refusal::normal, .shedding = load_refusal::sheddable}})
            .find("refuses.shedding must refuse at least") != std::string::npos);
  CHECK(config_error({.refuses = {.warning = static_cast<load_refusal>(9)}}).find("refuses.warning") !=
        std::string::npos);
  CHECK(config_error({.retry_after_hint = -1s}).find("retry_after_hint") != std::string::npos);
  // The bounds themselves are fine.
  CHECK(ladder_error({.warning = {0.0, 0.0}, .degraded = {0.5, 0.0}, .shedding = {1.0, 1.0}}).empty());
}

TEST_CASE("load_shedder: the level transition is a pure function of the ladder, the level and the reading") {
  const armor::load_ladder l{};
  CHECK(armor::detail::shed_next(l, load_level::normal, 0.95) == load_level::shedding);
  CHECK(armor::detail::shed_next(l, load_level::shedding, 0.80) == load_level::shedding);
  CHECK(armor::detail::shed_next(l, load_level::shedding, 0.79) == load_level::warning);
  CHECK(armor::detail::shed_next(l, load_level::degraded, 0.94) == load_level::degraded);
  CHECK(armor::detail::shed_next(l, load_level::warning, 0.75) == load_level::warning);
  CHECK(armor::detail::shed_next(l, load_level::warning, 0.74) == load_level::normal);
}
