// armor::fault_injector: the draws against the rates, the switch, the
// concurrency cap, and real pipelines (backoff + breaker + injector) driven
// through injected failures and latency on a manual clock.
#include <armor/backoff.hpp>
#include <armor/circuit_breaker.hpp>
#include <armor/clock.hpp>
#include <armor/deadline.hpp>
#include <armor/fault_injector.hpp>
#include <armor/pipeline.hpp>

#include "armor_catch.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// The random word whose armor draw (top 53 bits / 2^53) is `u`.
constexpr std::uint64_t word_for(double u) { return static_cast<std::uint64_t>(u * 0x1.0p53) << 11; }

/// A random source that returns the scripted draws in turn (the last one
/// again once they run out), and counts how often it was consulted.
struct scripted_rng {
  std::vector<double>* draws;
  int* calls;
  std::uint64_t operator()() const noexcept {
    const auto i = static_cast<std::size_t>(*calls);
    ++*calls;
    if (draws->empty()) return 0;
    return word_for(i < draws->size() ? (*draws)[i] : draws->back());
  }
};

struct response {
  int status = 200;
};

struct rig {
  std::vector<double> draws;
  int calls = 0;
  [[nodiscard]] scripted_rng rng() { return scripted_rng{&draws, &calls}; }
};

std::string config_error(const armor::fault_injector_options& o) {
  try {
    armor::fault_injector<> f{o};
  } catch (const armor::error& e) {
    CHECK(e.code() == armor::errc::invalid_argument);
    return e.what();
  }
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("fault_injector: rate 0.001 injects on a draw of 0.0005 and not on 0.002", "[fault_injector]") {
  rig r;
  armor::fault_injector<void, scripted_rng> f{{.error_rate = 0.001}, r.rng()};
  armor::manual_clock clock;
  armor::context ctx(armor::to_timestamp(clock.now()));

  r.draws = {0.0005, 0.002};
  auto hit = f.admit(ctx);
  CHECK(hit.kind == armor::admission_kind::admitted);
  CHECK(hit.permit.injects());
  CHECK(hit.permit.fails());
  CHECK(hit.permit.failure() == armor::fault_kind::error);
  CHECK(hit.permit.latency() == 0ns);
  CHECK(f.stats().active == 1);

  auto miss = f.admit(ctx);
  CHECK_FALSE(miss.permit.injects());
  CHECK(r.calls == 2);  // one draw per call: the latency rate is zero, so no latency draw

  f.settle(ctx, std::move(hit.permit), armor::verdict::failure());
  const auto s = f.stats();
  CHECK(s.errors == 1);
  CHECK(s.active == 0);
  CHECK(s.exceptions + s.results + s.latencies + s.capped == 0);
}

TEST_CASE("fault_injector: one draw picks the failure by cumulative rates, a second draw the latency",
          "[fault_injector]") {
  rig r;
  armor::fault_injector<response, scripted_rng> f{
      {.exception_rate = 0.1, .error_rate = 0.2, .result_rate = 0.3, .latency_rate = 0.5, .latency = 40ms},
      response{503}, r.rng()};
  armor::context ctx(armor::timestamp{});

  struct want {
    double failure_draw, latency_draw;
    bool fails;
    armor::fault_kind kind;
    std::chrono::nanoseconds latency;
  };
  const want table[] = {
      {0.05, 0.9, true, armor::fault_kind::exception, 0ns},  // [0, 0.1)
      {0.15, 0.9, true, armor::fault_kind::error, 0ns},      // [0.1, 0.3)
      {0.29, 0.49, true, armor::fault_kind::error, 40ms},
      {0.45, 0.9, true, armor::fault_kind::result, 0ns},  // [0.3, 0.6)
      {0.65, 0.1, false, armor::fault_kind::latency, 40ms},
      {0.99, 0.5, false, armor::fault_kind::latency, 0ns},
  };
  for (const want& w : table) {
    r.draws = {w.failure_draw, w.latency_draw};
    r.calls = 0;
    auto a = f.admit(ctx);
    CHECK(r.calls == 2);
    CHECK(a.permit.fails() == w.fails);
    if (w.fails) CHECK(a.permit.failure() == w.kind);
    CHECK(a.permit.latency() == w.latency);
    CHECK(a.permit.injects() == (w.fails || w.latency > 0ns));
  }
  const auto s = f.stats();
  CHECK(s.exceptions == 1);
  CHECK(s.errors == 2);
  CHECK(s.results == 1);
  CHECK(s.latencies == 2);
  CHECK(s.active == 0);  // every permit above was dropped
  CHECK(f.injected_result().status == 503);
}

TEST_CASE("fault_injector: disabled, the random source is never consulted", "[fault_injector]") {
  rig r;
  r.draws = {0.0};  // would inject everything
  armor::fault_injector<void, scripted_rng> f{
      {.enabled = false, .exception_rate = 0.5, .error_rate = 0.5, .latency_rate = 1.0, .latency = 1s}, r.rng()};
  armor::context ctx(armor::timestamp{});
  for (int i = 0; i < 100; ++i) CHECK_FALSE(f.admit(ctx).permit.injects());
  CHECK(r.calls == 0);
  CHECK_FALSE(f.stats().enabled);

  f.set_enabled(true);
  CHECK(f.admit(ctx).permit.injects());
  CHECK(r.calls == 2);
  f.set_enabled(false);
  CHECK_FALSE(f.admit(ctx).permit.injects());
  CHECK(r.calls == 2);
}

TEST_CASE("fault_injector: zero rates draw nothing", "[fault_injector]") {
  rig r;
  armor::fault_injector<void, scripted_rng> f{{}, r.rng()};
  armor::context ctx(armor::timestamp{});
  CHECK_FALSE(f.admit(ctx).permit.injects());
  CHECK(r.calls == 0);
}

TEST_CASE("fault_injector: at most max_active calls carry a fault at once", "[fault_injector]") {
  rig r;
  r.draws = {0.0};
  armor::fault_injector<void, scripted_rng> f{{.error_rate = 1.0, .max_active = 2}, r.rng()};
  armor::context ctx(armor::timestamp{});
  auto a = f.admit(ctx);
  auto b = f.admit(ctx);
  auto c = f.admit(ctx);  // drawn, but two calls carry a fault: runs untouched
  CHECK(a.permit.injects());
  CHECK(b.permit.injects());
  CHECK_FALSE(c.permit.injects());
  CHECK(f.stats().active == 2);
  CHECK(f.stats().capped == 1);
  CHECK(f.stats().errors == 2);

  f.settle(ctx, std::move(a.permit), armor::verdict::failure());  // settling gives the place back
  auto d = f.admit(ctx);
  CHECK(d.permit.injects());
  { [[maybe_unused]] const auto dropped = std::move(b.permit); }  // so does dropping
  auto e = f.admit(ctx);
  CHECK(e.permit.injects());
  CHECK_FALSE(f.admit(ctx).permit.injects());
  CHECK(f.stats().active == 2);
  CHECK(f.stats().capped == 2);
}

TEST_CASE("fault_injector: bad options are refused at construction, naming the option", "[fault_injector]") {
  CHECK(contains(config_error({.error_rate = 1.5}), "error_rate"));
  CHECK(contains(config_error({.exception_rate = -0.1}), "exception_rate"));
  CHECK(contains(config_error({.latency_rate = 1.5, .latency = 1ms}), "latency_rate"));
  CHECK(contains(config_error({.exception_rate = 0.6, .error_rate = 0.6}), "exception_rate + error_rate + result_rate"));
  CHECK(contains(config_error({.result_rate = 0.1}), "result_rate"));
  CHECK(contains(config_error({.error_rate = 0.1, .error = std::error_code{}}), "error"));
  CHECK(contains(config_error({.latency_rate = 0.1}), "latency"));
  CHECK(contains(config_error({.latency = -1ms}), "latency"));
  CHECK(contains(config_error({.max_active = 0}), "max_active"));
  CHECK(config_error({.exception_rate = 0.5, .error_rate = 0.5}).empty());
  CHECK(config_error({.latency_rate = 1.0, .latency = 1ns}).empty());
  armor::fault_injector<response> ok{{.result_rate = 1.0}, response{503}};
  CHECK(ok.options().result_rate == 1.0);
}

TEST_CASE("fault_injector: the listener hears each fault", "[fault_injector]") {
  struct heard {
    std::vector<armor::fault_injector_event>* events;
    void operator()(const armor::fault_injector_event& e) const noexcept {
      try {
        events->push_back(e);
      } catch (...) {
      }
    }
  };
  std::vector<armor::fault_injector_event> events;
  events.reserve(4);
  rig r;
  r.draws = {0.0, 0.0};
  armor::fault_injector<void, scripted_rng, heard> f{
      {.exception_rate = 1.0, .latency_rate = 1.0, .latency = 5ms}, r.rng(), heard{&events}};
  armor::context ctx(armor::timestamp{});
  [[maybe_unused]] auto a = f.admit(ctx);
  REQUIRE(events.size() == 2);
  CHECK(events[0].kind == armor::fault_kind::latency);
  CHECK(events[0].latency == 5ms);
  CHECK(events[1].kind == armor::fault_kind::exception);
}

// --- End to end: the sync driver ------------------------------------------

TEST_CASE("fault_injector e2e: injected errors are retried by backoff and open the breaker", "[fault_injector]") {
  armor::manual_clock clock;
  rig r;
  armor::fault_injector<void, scripted_rng> chaos{{.error_rate = 0.5}, r.rng()};
  armor::circuit_breaker<armor::manual_clock> breaker{
      {.failure_threshold = 2, .open_for = 10s}, clock};
  auto p = armor::pipeline{clock,
                           armor::backoff{{.max_attempts = 3, .initial = 100ms, .jitter = armor::jitter_mode::none}},
                           std::ref(breaker), std::ref(chaos)};
  int real_calls = 0;
  auto op = [&] {
    ++real_calls;
    return 7;
  };

  // Draws: fail, pass. The injected failure is retried; the second attempt
  // reaches the operation.
  r.draws = {0.1, 0.9};
  const auto start = clock.now();
  auto ok = p.try_execute(op);
  REQUIRE(ok);
  CHECK(*ok == 7);
  CHECK(real_calls == 1);
  CHECK(clock.now() - start == 100ms);  // the backoff's one delay; no other time passed
  CHECK(breaker.stats().failures == 1);

  // Every draw fails now: two injected failures in a row open the breaker,
  // and the third attempt meets it open.
  r.draws = {0.0};
  r.calls = 0;
  auto failed = p.try_execute(op);
  REQUIRE_FALSE(failed);
  CHECK(real_calls == 1);
  CHECK(breaker.state() == armor::breaker_state::open);
  CHECK(r.calls == 2);  // the breaker refused the third attempt before the injector was asked
  CHECK(failed.code() == armor::errc::circuit_open);
  CHECK(chaos.stats().errors == 3);
  CHECK(chaos.stats().active == 0);

  // Injection off: the breaker recovers through real calls once it half-opens.
  chaos.set_enabled(false);
  clock.advance(10s);
  r.calls = 0;
  auto healed = p.try_execute(op);
  REQUIRE(healed);
  CHECK(r.calls == 0);
  CHECK(real_calls == 2);
}

TEST_CASE("fault_injector e2e: an injected exception is the operation's exception", "[fault_injector]") {
  armor::manual_clock clock;
  rig r;
  r.draws = {0.0};
  armor::fault_injector<void, scripted_rng> chaos{
      {.exception_rate = 1.0, .exception = std::make_exception_ptr(std::runtime_error("boom"))}, r.rng()};
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2, .jitter = armor::jitter_mode::none}}, std::ref(chaos)};
  int real_calls = 0;
  CHECK_THROWS_WITH(p.execute([&] { return ++real_calls; }), "boom");
  CHECK(real_calls == 0);
  CHECK(chaos.stats().exceptions == 2);
  auto r2 = p.try_execute([&] { return ++real_calls; });
  REQUIRE_FALSE(r2);
  CHECK(r2.code() == armor::errc::retries_exhausted);
}

TEST_CASE("fault_injector e2e: an injected 503 is judged by the pipeline's classifier", "[fault_injector]") {
  armor::manual_clock clock;
  rig r;
  armor::fault_injector<response, scripted_rng> chaos{{.result_rate = 0.25}, response{503}, r.rng()};
  auto judge = armor::classify{[](const response& rs) {
    return rs.status >= 500 ? armor::verdict::failure() : armor::verdict::success();
  }};
  auto p = armor::pipeline{clock, judge, armor::backoff{{.max_attempts = 4, .jitter = armor::jitter_mode::none}},
                           std::ref(chaos)};
  r.draws = {0.1, 0.2, 0.3};  // 503, 503, then the real answer
  auto got = p.try_execute([] { return response{200}; });
  REQUIRE(got);
  CHECK(got->status == 200);
  CHECK(chaos.stats().results == 2);

  r.draws = {0.0};
  r.calls = 0;
  auto last = p.try_execute([] { return response{200}; });
  REQUIRE(last.has_value());
  CHECK_FALSE(last.ok());
  CHECK(last.value().status == 503);  // the last (injected) answer, judged a failure
  CHECK(r.calls == 4);
}

TEST_CASE("fault_injector e2e: injected latency is slept on the clock; past the deadline it is a timeout",
          "[fault_injector]") {
  armor::manual_clock clock;
  rig r;
  armor::fault_injector<void, scripted_rng> chaos{{.latency_rate = 0.5, .latency = 300ms}, r.rng()};
  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 2, .open_for = 10s}, clock};
  auto p = armor::pipeline{clock, armor::backoff{{.max_attempts = 2, .initial = 50ms, .jitter = armor::jitter_mode::none}},
                           std::ref(breaker), armor::deadline{1s}, std::ref(chaos)};
  int real_calls = 0;
  armor::timestamp seen{};
  auto op = [&](const armor::context& ctx) {
    ++real_calls;
    seen = ctx.now();
    return 1;
  };

  // Slow but in time: 300 ms later the operation runs.
  r.draws = {0.4};
  const auto t0 = armor::to_timestamp(clock.now());
  REQUIRE(p.try_execute(op));
  CHECK(real_calls == 1);
  CHECK(seen - t0 == 300ms);
  CHECK(armor::to_timestamp(clock.now()) - t0 == 300ms);

  // A per-attempt deadline of 1 s and 300 ms of latency, with a caller
  // budget of 200 ms: the wait runs to the deadline, then the attempt is a
  // timeout the breaker counts.
  const auto t1 = armor::to_timestamp(clock.now());
  auto late = p.try_execute(op, {.timeout = 200ms});
  REQUIRE_FALSE(late);
  CHECK(late.code() == armor::errc::deadline_exceeded);
  CHECK(real_calls == 1);
  CHECK(armor::to_timestamp(clock.now()) - t1 == 200ms);
  CHECK(breaker.stats().failures == 1);
  CHECK(chaos.stats().latencies == 2);
  CHECK(chaos.stats().active == 0);
}
