// armor demo: a client calling a flaky upstream through a pipeline.
//
// The upstream lives a scripted life: healthy, then failing with 500s, then
// throttling with 429 + Retry-After, then slow, then healthy again. The client
// sends one request every 250 ms through
//
//     deadline{1s} -> backoff{4 attempts, exponential, full jitter}
//                  -> circuit_breaker{opens at 50 % failures of the last 10 calls}
//                  -> token_bucket{8 per second, burst 4: client-side pacing}
//
// and the demo prints what armor did in each phase. It runs in virtual time on
// a manual_clock, so two minutes of traffic take a few milliseconds and the
// output is the same on every machine (the jitter is seeded).
//
// Usage: armor_demo [--seconds N]   (length of each phase, default 20)
#include <armor/armor.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

namespace {

struct response {
  int status = 0;
  std::chrono::seconds retry_after{0};  // from a Retry-After header, 0 if none
};

// The upstream's life, phase by phase.
struct phase {
  const char* name;
  int status;                           // what it answers
  std::chrono::milliseconds latency;    // how long it takes
  std::chrono::seconds retry_after;     // Retry-After it sends, if any
};

constexpr phase script[] = {
    {"healthy", 200, 20ms, 0s},
    {"failing (500)", 500, 30ms, 0s},
    {"throttling (429 + Retry-After: 2)", 429, 5ms, 2s},
    {"slow (1.5 s per call)", 200, 1500ms, 0s},
    {"healthy again", 200, 20ms, 0s},
};
constexpr int phase_count = static_cast<int>(sizeof(script) / sizeof(script[0]));

// HTTP statuses judged the way armor/http.hpp will: 5xx, 408 and 429 are
// retryable failures (429 and 503 carry their Retry-After), other 4xx are the
// caller's problem and say nothing about the upstream's health.
armor::verdict judge(const response& r) {
  if (r.status == 429 || r.status == 503 || r.status >= 500 || r.status == 408) {
    if (r.retry_after > 0s) return armor::verdict::retry_later(r.retry_after);
    return armor::verdict::failure();
  }
  return armor::verdict::success();
}

// Counts of what happened in one phase.
struct tally {
  int calls = 0;
  int ok = 0;
  int failed = 0;
  int deadline = 0;
  int fast_failed = 0;  // refused at once by the open breaker
  int upstream_requests = 0;
};

// Prints every retry as it is scheduled, for the first few of each phase.
struct retry_printer {
  const armor::manual_clock* clock;
  int* printed;
  void on_retry(unsigned attempt, std::chrono::nanoseconds delay, const armor::verdict& v) const {
    if ((*printed)++ >= 3) return;
    const double t = std::chrono::duration<double>(clock->now().time_since_epoch()).count();
    const char* why = "";
    if (v.kind == armor::outcome::rejected && v.code == armor::errc::circuit_open) {
      why = "  (breaker open: waiting until it half-opens)";
    } else if (v.kind == armor::outcome::rejected && v.code == armor::errc::rate_limited) {
      why = "  (rate limited: waiting for a token)";
    } else if (v.retry_after) {
      why = "  (the server's Retry-After)";
    }
    std::printf("  %7.2fs  retry #%u in %4lld ms%s\n", t, attempt,
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()), why);
  }
};

// Prints every breaker transition as it happens.
struct transition_printer {
  const armor::manual_clock* clock;
  void operator()(const armor::circuit_breaker_event& e) const {
    const double t = std::chrono::duration<double>(clock->now().time_since_epoch()).count();
    std::printf("  %7.2fs  breaker %s -> %s (%s)", t, std::string(armor::to_string(e.from)).c_str(),
                std::string(armor::to_string(e.to)).c_str(), std::string(armor::to_string(e.reason)).c_str());
    if (e.open_for > std::chrono::nanoseconds::zero()) {
      std::printf(", open for %.1f s", std::chrono::duration<double>(e.open_for).count());
    }
    std::printf("\n");
  }
};

int parse_seconds(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      const int s = std::atoi(argv[i + 1]);
      if (s < 1 || s > 3600) {
        std::fprintf(stderr, "armor_demo: --seconds must be between 1 and 3600 (got '%s')\n", argv[i + 1]);
        std::exit(2);
      }
      return s;
    }
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf("usage: armor_demo [--seconds N]   (seconds per phase, default 20)\n");
      std::exit(0);
    }
    std::fprintf(stderr, "armor_demo: unknown argument '%s' (try --help)\n", argv[i]);
    std::exit(2);
  }
  return 20;
}

}  // namespace

int main(int argc, char** argv) {
  const std::chrono::seconds phase_length{parse_seconds(argc, argv)};
  armor::manual_clock clock;
  int printed = 0;

  auto client = armor::pipeline{
      clock,
      armor::classify{judge},
      armor::deadline{1s},
      armor::backoff<armor::seeded_rng, retry_printer>{
          {.max_attempts = 4, .initial = 100ms, .max_delay = 2s, .max_retry_after = 5s, .count_calls = true},
          armor::seeded_rng{2026},
          retry_printer{&clock, &printed}},
      armor::circuit_breaker<armor::manual_clock, transition_printer>{
          {.failure_threshold = 0, .failure_rate = 0.5, .window_size = 10, .minimum_calls = 6, .open_for = 3s,
           .count_calls = true},
          clock,
          transition_printer{&clock}},
      armor::token_bucket<armor::manual_clock>{{.rate = {8, 1s}, .burst = 4, .max_wait = 200ms}, clock},
  };

  std::printf("armor demo: one request every 250 ms, %lld s per phase, virtual time\n",
              static_cast<long long>(phase_length.count()));
  std::printf("pipeline: deadline 1 s -> backoff (4 attempts, 100 ms exponential, full jitter)\n");
  std::printf("          -> circuit breaker (50 %% of 10 calls, open 3 s) -> token bucket (8/s, burst 4)\n\n");

  tally total;
  for (int ph = 0; ph < phase_count; ++ph) {
    const phase& p = script[ph];
    const auto phase_end = clock.now() + phase_length;
    std::printf("[%s]\n", p.name);
    printed = 0;
    tally t;
    while (clock.now() < phase_end) {
      const auto next_send = clock.now() + 250ms;
      ++t.calls;
      auto r = client.try_execute([&](const armor::context& ctx) {
        ++t.upstream_requests;
        // The upstream answers after its latency, or the client's own I/O
        // timeout (ctx.remaining()) fires first.
        if (p.latency > ctx.remaining()) {
          clock.advance(ctx.remaining());
          return response{408};
        }
        clock.advance(p.latency);
        return response{p.status, p.retry_after};
      });
      if (!r) {
        if (r.code() == armor::errc::deadline_exceeded) {
          ++t.deadline;
        } else if (r.code() == armor::errc::circuit_open) {
          ++t.fast_failed;
        } else {
          ++t.failed;
        }
      } else if (judge(*r).ok()) {
        ++t.ok;
      } else {
        ++t.failed;
      }
      if (clock.now() < next_send) clock.sleep_until(next_send);
    }
    std::printf("  calls %d: %d ok, %d failed, %d failed fast (breaker open), %d out of time; "
                "%d requests reached the upstream\n\n",
                t.calls, t.ok, t.failed, t.fast_failed, t.deadline, t.upstream_requests);
    total.calls += t.calls;
    total.ok += t.ok;
    total.failed += t.failed;
    total.deadline += t.deadline;
    total.fast_failed += t.fast_failed;
    total.upstream_requests += t.upstream_requests;
  }

  const auto s = client.layer<1>().stats();
  std::printf("summary\n");
  std::printf("  %-28s %8d\n", "calls", total.calls);
  std::printf("  %-28s %8d\n", "succeeded", total.ok);
  std::printf("  %-28s %8d\n", "failed", total.failed + total.deadline + total.fast_failed);
  std::printf("  %-28s %8d\n", "  of which failed fast", total.fast_failed);
  std::printf("  %-28s %8d\n", "requests sent upstream", total.upstream_requests);
  std::printf("  %-28s %8llu\n", "retries", static_cast<unsigned long long>(s.retries));
  std::printf("  %-28s %8llu\n", "succeeded after a retry", static_cast<unsigned long long>(s.successes_after_retry));
  std::printf("  %-28s %8llu\n", "stopped by the deadline", static_cast<unsigned long long>(s.deadline_stops));
  const auto b = client.layer<2>().stats();
  std::printf("  %-28s %8llu\n", "breaker opened", static_cast<unsigned long long>(b.times_opened));
  std::printf("  %-28s %8llu\n", "calls the breaker refused", static_cast<unsigned long long>(b.rejections));
  return 0;
}
