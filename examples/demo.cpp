// armor demo: a client calling a flaky HTTP upstream through a full pipeline,
// over real sockets on 127.0.0.1.
//
// The upstream (examples/demo/upstream.hpp) lives a scripted life: healthy,
// then failing with 500s, then throttling with 429 + Retry-After, then slow,
// then healthy again. It limits each client to 10 requests a second (2 in
// the throttling phase) and says so in RateLimit headers, as public APIs do.
//
// Calls arrive at random (Poisson, 8 a second by default, seeded), each for
// one of 16 items (GET /api/items/N, whose 200s carry Cache-Control:
// max-age, stale-if-error), and each one goes out twice, at the same moment:
//
//   - through armor:  an armor::cache (fresh answers without a request;
//     stale ones, marked, when the pipeline fails or refuses) in front of
//     deadline 1.5 s -> backoff (3 attempts, honours
//     Retry-After) -> circuit breaker (50 % failures over the last 10; a
//     429, a timeout or a slow answer is no failure) -> adaptive limit
//     (gradient) -> token bucket (10/s, burst 1, waits up to 100 ms) ->
//     quota (requests per hour, alerts at 80 % and 90 %) -> HTTP GET;
//   - through a plain client with the same 1.5 s timeout and nothing else
//     (no cache either).
//
// While it runs it prints a timeline (phases, breaker transitions, retries
// with their delays, waits for tokens, rejections, quota alerts, one line a
// second); at the end a summary that compares the two clients, with every
// number measured in this run (the upstream counts what it answered each
// client), and an SVG timeline.
//
// Usage: armor_demo [--phase-seconds S | --quick] [--rate N] [--svg PATH]
//                   [--no-color] [--seed N]
#include <armor/armor.hpp>
#include <armor/http.hpp>

#include "demo/svg.hpp"
#include "demo/upstream.hpp"

#include <fmt/color.h>
#include <fmt/format.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::duration;
using std::chrono::nanoseconds;
using steady = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------
// Options

struct options {
  std::chrono::milliseconds phase{5000};  // length of each phase
  double rate = 8;                        // calls per second
  std::string svg = "armor-demo.svg";
  bool color = isatty(STDOUT_FILENO) != 0;
  std::uint64_t seed = 2026;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "armor_demo: %s (try --help)\n", message.c_str());
  std::exit(2);
}

double parse_number(std::string_view flag, const char* text, double lo, double hi) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(v >= lo && v <= hi)) {
    usage_error(fmt::format("{} must be a number from {:g} to {:g} (got '{}')", flag, lo, hi, text));
  }
  return v;
}

options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(fmt::format("{} needs a value", a));
      return argv[++i];
    };
    if (a == "--phase-seconds") {
      o.phase = std::chrono::milliseconds{std::lround(1000 * parse_number(a, value(), 0.5, 600))};
    } else if (a == "--quick") {
      o.phase = 1s;
    } else if (a == "--rate") {
      o.rate = parse_number(a, value(), 1, 40);
    } else if (a == "--svg") {
      o.svg = value();
    } else if (a == "--no-color") {
      o.color = false;
    } else if (a == "--color") {
      o.color = true;
    } else if (a == "--seed") {
      o.seed = static_cast<std::uint64_t>(parse_number(a, value(), 0, 1e15));
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: armor_demo [options]\n\n"
          "  --phase-seconds S  length of each of the 5 phases, 0.5 to 600 (default 5: about 27 s in all)\n"
          "  --quick            1-second phases (about 7 s in all)\n"
          "  --rate N           calls per second, 1 to 40 (default 8)\n"
          "  --svg PATH         where to write the SVG timeline (default ./armor-demo.svg)\n"
          "  --no-color         no ANSI colours (the default when stdout is not a terminal)\n"
          "  --seed N           seed of the call schedule and the upstream's randomness (default 2026)\n");
      std::exit(0);
    } else {
      usage_error(fmt::format("unknown argument '{}'", a));
    }
  }
  return o;
}

// ---------------------------------------------------------------------------
// What the recorder keeps

// How a call ended.
enum class ending : std::uint8_t {
  ok,            // 2xx
  failed,        // requests went out, and the last answer (or timeout) was a failure
  fast_failed,   // the open breaker refused it before anything was sent
  not_sent,      // the adaptive limit, the token bucket or the deadline refused it before anything was sent
  quota,         // the quota refused it before anything was sent
  fresh,         // the cache answered fresh: the pipeline was not called
  joined,        // the cache had it answered by a call already in flight for the same item
};

// What the caller got.
enum class answer : std::uint8_t {
  none,   // nothing: the call failed
  live,   // the upstream's 200, for this call (or one in flight it joined)
  fresh,  // from the cache, fresh (max-age)
  stale,  // from the cache, stale (stale-if-error), instead of a failure
};

struct call_record {
  double start = 0, end = 0;  // seconds since the scenario began
  nanoseconds took{};         // steady_clock, from just before try_execute to its return
  int phase = 0;
  std::size_t index = 0;  // the call's number in the schedule
  int sent = 0;         // requests sent upstream
  int throttled = 0;    // 429s received
  double waited = 0;    // seconds spent waiting for tokens
  bool breaker_refused = false;  // the breaker refused it before it sent anything
  ending how = ending::ok;
  answer got = answer::none;
};

// Per-call scratch, filled on the calling thread by the operation and the
// listeners of the call that thread is running (listeners run on the
// calling thread).
struct call_scratch {
  int sent = 0;
  int throttled = 0;
  int last_status = 0;   // of the last attempt; 0 when it got no answer
  double waited = 0;
  bool breaker_refused = false;
  bool ran = false;      // the cache called the pipeline on this thread
  bool live_ok = false;  // and it answered 2xx
  std::error_code code;  // its failure's code, if it failed without a value
  nanoseconds took{};    // from just before the pipeline's try_execute to its return
};
thread_local call_scratch scratch;

// The kinds of detail line, each printed a few times per phase.
enum class detail : std::uint8_t { retry, wait, reject, give_up, stale };
constexpr std::size_t detail_kinds = 5;
constexpr int detail_per_phase = 3;

// The event log and the live timeline. Listeners call it from every calling
// thread; one mutex keeps lines whole and the records consistent (the demo
// is not a hot path).
class recorder {
 public:
  recorder(steady::time_point t0, bool color) : t0_(t0), color_(color) {}

  // Moves time zero (before anything is recorded).
  void restart(steady::time_point t0) { t0_ = t0; }

  [[nodiscard]] double seconds(steady::time_point t) const { return duration<double>(t - t0_).count(); }
  [[nodiscard]] double now() const { return seconds(steady::now()); }
  [[nodiscard]] double seconds(armor::timestamp t) const {
    return duration<double>(t - armor::to_timestamp(t0_)).count();
  }

  // One timeline line: "  12.34s  tag      text".
  template <class... A>
  void line(double t, fmt::text_style style, std::string_view tag, fmt::format_string<A...> f, A&&... args) {
    const std::lock_guard lock(mutex_);
    emit(t, style, tag, fmt::format(f, std::forward<A>(args)...));
  }

  void phase_started(int k, double t, std::string_view what) {
    const std::lock_guard lock(mutex_);
    phase_ = k;
    printed_.fill(0);
    std::fputc('\n', stdout);
    fmt::print(style(fmt::emphasis::bold | fg(fmt::terminal_color::cyan)), "phase {}/{} {}", k + 1, demo::phase_count,
               demo::phase_names[static_cast<std::size_t>(k)]);
    fmt::print(style(fmt::emphasis::faint), "  (from {:.2f}s: the upstream {})\n", t, what);
    std::fflush(stdout);
  }

  // A detail line, unless this phase has printed enough of its kind.
  template <class... A>
  void detail_line(detail kind, double t, fmt::text_style st, std::string_view tag, fmt::format_string<A...> f,
                   A&&... args) {
    const std::lock_guard lock(mutex_);
    int& n = printed_[static_cast<std::size_t>(kind)];
    ++n;
    if (n <= detail_per_phase) {
      emit(t, st, tag, fmt::format(f, std::forward<A>(args)...));
    } else if (n == detail_per_phase + 1) {
      static constexpr std::array<std::string_view, detail_kinds> plural = {"retries", "waits", "rejections",
                                                                            "give-ups", "stale answers"};
      emit(t, style(fmt::emphasis::faint), "",
           fmt::format("(further {} in this phase are counted in the per-second lines)",
                       plural[static_cast<std::size_t>(kind)]));
    }
  }

  // Runs on the thread whose call made the change (listeners run on the
  // calling thread). With the breaker inside the retry layer it sees every
  // attempt, so a change to open comes from settling the attempt that thread
  // just made: scratch.last_status is that attempt's HTTP status (0 when it
  // got no answer). A 429 there means a 429 opened the breaker.
  void breaker_changed(const armor::circuit_breaker_event& e) {
    const double t = seconds(e.at);
    const std::lock_guard lock(mutex_);
    transitions_.push_back({t, e.to});
    if (e.to == armor::breaker_state::open) {
      auto& o = opens_[static_cast<std::size_t>(phase_)];
      ++o.opened;
      if (scratch.last_status == 429) ++o.by_429;
    }
    const auto colour = e.to == armor::breaker_state::open        ? fmt::terminal_color::red
                        : e.to == armor::breaker_state::half_open ? fmt::terminal_color::yellow
                                                                  : fmt::terminal_color::green;
    std::string text = fmt::format("{} -> {} ({})", armor::to_string(e.from), armor::to_string(e.to),
                                   armor::to_string(e.reason));
    if (e.to == armor::breaker_state::open) {
      text += fmt::format(": calls fail fast for {:.1f} s", duration<double>(e.open_for).count());
    }
    emit(t, style(fmt::emphasis::bold | fg(colour)), "breaker", text);
  }

  void quota_alert(const armor::quota_tracker_event& a) {
    const double t = now();
    const std::lock_guard lock(mutex_);
    alerts_.push_back({t, 100 * a.threshold});
    emit(t, style(fmt::emphasis::bold | fg(fmt::terminal_color::magenta)), "quota",
         fmt::format("alert: {:.0f} % of the hourly quota used ({} of {} requests)", 100 * a.threshold, a.used,
                     a.limit));
  }

  void retried() {
    const std::lock_guard lock(mutex_);
    ++retries_[static_cast<std::size_t>(phase_)];
  }

  void waited_for_breaker() {
    const std::lock_guard lock(mutex_);
    ++breaker_waits_;
  }
  [[nodiscard]] std::uint64_t breaker_waits() const {
    const std::lock_guard lock(mutex_);
    return breaker_waits_;
  }

  void waited(nanoseconds d) {
    const std::lock_guard lock(mutex_);
    ++waits_;
    wait_total_ += duration<double>(d).count();
  }

  void call_ended(const call_record& r) {
    const std::lock_guard lock(mutex_);
    calls_.push_back(r);
  }

  void plain_call_ended(const call_record& r) {
    const std::lock_guard lock(mutex_);
    plain_.push_back(r);
  }

  void quota_sample(double t, double percent, double limit) {
    const std::lock_guard lock(mutex_);
    quota_.push_back({t, percent});
    limit_.push_back({t, limit});
  }
  [[nodiscard]] std::vector<demo::svg_input::limit_sample> limit_samples() const {
    const std::lock_guard lock(mutex_);
    return limit_;
  }

  // Copies of the records, for the tick lines and the summary.
  [[nodiscard]] std::vector<call_record> calls() const {
    const std::lock_guard lock(mutex_);
    return calls_;
  }
  [[nodiscard]] std::vector<call_record> plain_calls() const {
    const std::lock_guard lock(mutex_);
    return plain_;
  }
  [[nodiscard]] std::vector<std::pair<double, armor::breaker_state>> transitions() const {
    const std::lock_guard lock(mutex_);
    return transitions_;
  }
  [[nodiscard]] std::vector<demo::svg_input::sample> quota_samples() const {
    const std::lock_guard lock(mutex_);
    return quota_;
  }
  [[nodiscard]] std::vector<demo::svg_input::alert> alerts() const {
    const std::lock_guard lock(mutex_);
    return alerts_;
  }
  struct opens {
    int opened = 0;  // transitions to open
    int by_429 = 0;  // of them, made by settling an attempt the upstream answered 429
  };
  // Per phase: the phase running when the breaker opened (the last one also
  // takes the calls still ending after it).
  [[nodiscard]] std::array<opens, demo::phase_count> opens_per_phase() const {
    const std::lock_guard lock(mutex_);
    return opens_;
  }
  [[nodiscard]] std::array<std::uint64_t, demo::phase_count> retries_per_phase() const {
    const std::lock_guard lock(mutex_);
    return retries_;
  }
  [[nodiscard]] std::pair<std::uint64_t, double> waits() const {
    const std::lock_guard lock(mutex_);
    return {waits_, wait_total_};
  }

  [[nodiscard]] fmt::text_style style(fmt::text_style s) const { return color_ ? s : fmt::text_style{}; }

 private:
  void emit(double t, fmt::text_style st, std::string_view tag, const std::string& text) {
    fmt::print("{:8.2f}s  ", t);
    fmt::print(style(st), "{:<8} {}", tag, text);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  steady::time_point t0_;
  bool color_;
  mutable std::mutex mutex_;
  int phase_ = 0;
  std::array<int, detail_kinds> printed_{};
  std::vector<call_record> calls_, plain_;
  std::vector<std::pair<double, armor::breaker_state>> transitions_;
  std::vector<demo::svg_input::sample> quota_;
  std::vector<demo::svg_input::limit_sample> limit_;
  std::vector<demo::svg_input::alert> alerts_;
  std::array<std::uint64_t, demo::phase_count> retries_{};
  std::array<opens, demo::phase_count> opens_{};
  std::uint64_t breaker_waits_ = 0;  // retries after a breaker's refusal
  std::uint64_t waits_ = 0;
  double wait_total_ = 0;
};

// ---------------------------------------------------------------------------
// HTTP judgement: armor::http::status_classifier. 2xx/3xx succeed; 408,
// 500, 502, 503 and 504 are retryable failures carrying the server's
// Retry-After; 429 is throttled: retried after its Retry-After too, but no
// failure for the breaker (the upstream is up, it limits us); any other 4xx
// is the caller's mistake (not retried, and no sign of the upstream's
// health). It reads httplib::Response as it is (an `int status` member and a
// `headers` range).
using http_judge = armor::http::status_classifier;

// What the breaker counts: errors, not slowness. A success is healthy however
// long it took (a slow answer is still an answer for the user), a failure
// (500, no connection) is unhealthy; a timeout, like a 429, is neutral: the
// upstream was up and working, only slowly, and slowness is the adaptive
// limit's business (a timeout is a drop for it). The deadline still ends
// every call at 1.5 s.
constexpr armor::health breaker_health(const armor::verdict& v) noexcept {
  switch (v.kind) {
    case armor::outcome::success: return armor::health::healthy;
    case armor::outcome::failure: return armor::health::unhealthy;
    default: return armor::health::neutral;
  }
}

// What a failed attempt was, in words, from its verdict and the status the
// operation saw.
std::string describe(const armor::verdict& v, int status) {
  if (v.kind == armor::outcome::rejected) {
    if (v.code == armor::errc::circuit_open) return "refused by the open breaker";
    if (v.code == armor::errc::rate_limited) return "no token in time";
    if (v.code == armor::errc::quota_exhausted) return "quota spent";
    return fmt::format("refused ({})", v.code.message());
  }
  if (v.kind == armor::outcome::timeout) return "timed out";
  if (status > 0) {
    std::string text = fmt::format("HTTP {}", status);
    if (v.retry_after) text += fmt::format(", Retry-After {:g} s", duration<double>(*v.retry_after).count());
    return text;
  }
  return "no answer";
}

// ---------------------------------------------------------------------------
// Listeners

// backoff's listener: prints retries and give-ups. Listeners are noexcept:
// if printing ever threw (out of memory), the demo would end.
struct retry_log {
  recorder* rec;

  void operator()(const armor::backoff_event& e) const noexcept {
    // The breaker refused an attempt before the call sent anything: whether
    // the retry layer then waits (retry) or not (give-up), the call counts as
    // one the breaker refused. A retry after a breaker's refusal is a wait for
    // the breaker (the demo's settings should make none).
    if (e.last.kind == armor::outcome::rejected && e.last.code == armor::errc::circuit_open) {
      if (scratch.sent == 0) scratch.breaker_refused = true;
      if (e.kind == armor::backoff_event_kind::retry) rec->waited_for_breaker();
    }
    if (e.kind == armor::backoff_event_kind::retry) {
      retried(e.attempt, e.delay, e.last);
    } else {
      gave_up(e.attempt, e.stop, e.last);
    }
  }

  void retried(unsigned attempt, nanoseconds delay, const armor::verdict& v) const {
    rec->retried();
    const double ms = duration<double, std::milli>(delay).count();
    const bool server_said = v.retry_after.has_value() && v.kind != armor::outcome::rejected;
    rec->detail_line(detail::retry, rec->now(), rec->style(fg(fmt::terminal_color::yellow)), "retry",
                     "attempt {} {}: retrying in {:.0f} ms{}", attempt, describe(v, scratch.last_status), ms,
                     server_said ? " (the server's Retry-After)" : "");
  }

  void gave_up(unsigned attempts, armor::backoff_stop why, const armor::verdict& last) const {
    if (why == armor::backoff_stop::non_retryable) return;  // reported as the call's own ending
    // So is a refusal before anything was sent (a "reject" line, printed
    // after the call returns, so that its time does not include printing).
    if (why == armor::backoff_stop::refused && scratch.sent == 0) return;
    const char* reason = why == armor::backoff_stop::deadline  ? "the next try would miss the deadline"
                         : why == armor::backoff_stop::budget  ? "the retry budget is spent"
                         : why == armor::backoff_stop::refused ? "a refusal not worth waiting for"
                                                               : "no attempts left";
    rec->detail_line(detail::give_up, rec->now(), rec->style(fg(fmt::terminal_color::bright_black)), "give up",
                     "after {} attempt{} ({}): {}", attempts, attempts == 1 ? "" : "s",
                     describe(last, scratch.last_status), reason);
  }
};

// circuit_breaker's listener: one line per transition.
struct breaker_log {
  recorder* rec;
  void operator()(const armor::circuit_breaker_event& e) const noexcept { rec->breaker_changed(e); }
};

// quota_tracker's listener: the 80 %, 90 % and 100 % alerts.
struct quota_log {
  recorder* rec;
  void operator()(const armor::quota_tracker_event& a) const noexcept { rec->quota_alert(a); }
};

// A layer that forwards to a token bucket and reports its waits: armor has
// no wait listener, and any type with admit/settle is a policy.
template <class Bucket>
class observed_bucket {
 public:
  using permit_type = typename Bucket::permit_type;
  using clock_type = typename Bucket::clock_type;

  observed_bucket(Bucket& bucket, recorder& rec) : bucket_(&bucket), rec_(&rec) {}

  armor::admission<permit_type> admit(armor::context& ctx) {
    auto a = bucket_->admit(ctx);
    if (a.kind == armor::admission_kind::wait) {
      scratch.waited += duration<double>(a.delay).count();
      rec_->waited(a.delay);
      rec_->detail_line(detail::wait, rec_->now(), rec_->style(fg(fmt::terminal_color::blue)), "wait",
                        "token bucket: {:.0f} ms for a token (keeps us under the upstream's limit)",
                        duration<double, std::milli>(a.delay).count());
    }
    return a;
  }
  void settle(armor::context& ctx, permit_type p, const armor::verdict& v) { bucket_->settle(ctx, std::move(p), v); }

 private:
  Bucket* bucket_;
  recorder* rec_;
};

// ---------------------------------------------------------------------------
// The run

constexpr auto call_deadline = 1500ms;
// The client's own bucket is the upstream's published limit (10/s) with a
// burst of 1 where the upstream allows 2: the spare token absorbs the time a
// request takes to reach it, so a call the bucket lets through is not
// answered 429. It waits at most 100 ms, about one token: longer waits would
// queue calls behind each other and spend their deadline (in the slow phase,
// answers the plain client still gets); a call that would wait longer is not
// sent, where the plain client would have got a 429.
constexpr auto client_bucket_rate = armor::rate{10, 1s};
constexpr std::int64_t client_bucket_burst = 1;
constexpr auto client_bucket_wait = 100ms;

// The resources the calls ask for: GET /api/items/0 .. 15. Each call asks for
// one, drawn from the seed and the call's number, so both clients ask for the
// same item at the same moment.
constexpr int item_count = 16;

// What the upstream says in Cache-Control: its answers are fresh for 2 s
// (1 s with --quick: 0.4 of a phase, at least 1 s) and may be used for a
// minute past that when it fails, as many APIs say (max-age=60,
// stale-if-error=86400 and the like, scaled down to the demo's phases).
std::chrono::seconds item_max_age(const options& o) {
  return std::chrono::seconds{std::max<long long>(1, std::llround(0.4 * duration<double>(o.phase).count()))};
}
constexpr std::chrono::seconds item_stale_if_error{60};

demo::upstream_limits upstream_settings(const options& o) {
  demo::upstream_limits l;
  l.max_age = item_max_age(o);
  l.stale_if_error = item_stale_if_error;
  return l;
}

class demo_run {
 public:
  explicit demo_run(const options& o)
      : opt_(o),
        arrivals_(schedule(o)),
        items_(pick_items(o, arrivals_.size())),
        t0_(steady::now()),
        rec_(t0_, o.color),
        upstream_(upstream_settings(o), o.seed),
        // Freshness comes from each answer's Cache-Control; these options
        // are only for an answer without one (none here: stale on no error).
        cache_({.max_age = item_max_age(o), .max_entries = 4 * item_count, .shards = 4}),
        breaker_({.failure_threshold = 0,
                  .failure_rate = 0.5,
                  .window_size = 10,
                  .minimum_calls = 5,
                  .open_for = std::max<nanoseconds>(500ms, o.phase / 10),
                  .health = breaker_health,
                  .count_calls = true},
                 armor::steady_clock{}, breaker_log{&rec_}),
        limit_({.initial_limit = 2 * limit_floor(o),
                .min_limit = limit_floor(o),
                .max_limit = 8 * limit_floor(o),
                .window = std::max<nanoseconds>(250ms, o.phase / 10),
                .min_samples = 5,
                .count_calls = true}),
        bucket_({.rate = client_bucket_rate, .burst = client_bucket_burst, .max_wait = client_bucket_wait}),
        quota_limit_(std::max<std::int64_t>(10, std::llround(0.6 * static_cast<double>(arrivals_.size())))),
        quota_({.windows = {armor::quota_window::rolling(quota_limit_, 1h)}, .alerts = {0.8, 0.9, 1.0}},
               armor::system_clock{}, armor::memory_quota_storage{}, quota_log{&rec_}),
        client_(armor::classify<http_judge>{},
                armor::deadline{call_deadline},
                armor::backoff<armor::thread_rng, retry_log>{
                    {.max_attempts = 3, .initial = 100ms, .max_delay = 1s, .max_retry_after = 1500ms,
                     .max_refusal_wait = 0s,
                     .budget = armor::retry_budget{.max_tokens = 10, .token_ratio = 0.5}, .count_calls = true},
                    {},
                    retry_log{&rec_}},
                std::ref(breaker_), std::ref(limit_), observed_bucket<armor::token_bucket<>>{bucket_, rec_},
                std::ref(quota_)) {}

  int run();

 private:
  // When the calls arrive, in seconds from the start: a Poisson process at
  // the chosen rate, seeded, so every run makes the same calls.
  static std::vector<double> schedule(const options& o) {
    std::mt19937_64 rng(o.seed);
    std::exponential_distribution<double> gap(o.rate);
    const double end = demo::phase_count * duration<double>(o.phase).count();
    std::vector<double> at;
    for (double t = gap(rng); t < end; t += gap(rng)) at.push_back(t);
    return at;
  }

  // The item each call asks for: splitmix64 of the seed and the call's number.
  static std::vector<int> pick_items(const options& o, std::size_t calls) {
    std::vector<int> items;
    for (std::size_t i = 0; i < calls; ++i) {
      std::uint64_t z = o.seed + 0x9e3779b97f4a7c15ULL * (i + 1);
      z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
      items.push_back(static_cast<int>((z ^ (z >> 31U)) % item_count));
    }
    return items;
  }

  void armor_call(int phase, std::size_t index);
  void plain_call(int phase, std::size_t index);
  void tick(double t, bool final = false);
  void summary();
  void write_svg(double total);

  // A fixed set of threads running calls as they arrive.
  struct task {
    bool plain = false;
    int phase = 0;
    std::size_t index = 0;  // the call's number in the schedule
  };
  void start_workers(int n);
  void submit(task t);
  void drain_and_stop_workers();

  options opt_;
  // The quota is an hourly plan sized for this run, 0.6 requests per call:
  // with the default settings armor sends about 0.5 (the cache answers the
  // rest without a request), so the run ends near or above 80 % of the plan
  // (other settings may stop short of it, or reach 90 %).
  std::vector<double> arrivals_;
  std::vector<int> items_;  // the item each call asks for
  steady::time_point t0_;
  recorder rec_;
  demo::upstream upstream_;
  using breaker_type = armor::circuit_breaker<armor::steady_clock, breaker_log>;
  using quota_type = armor::quota_tracker<armor::system_clock, armor::memory_quota_storage, quota_log>;
  // In front of the pipeline: a fresh answer is served without calling it,
  // and a stale one (within the answer's stale-if-error) when it fails or
  // refuses. The plain client has no cache.
  armor::cache<int, std::string> cache_;
  breaker_type breaker_;
  // The adaptive concurrency limit (gradient): it follows the latency, and
  // its floor is what this client may honestly have in flight, twice the
  // call rate times the deadline (24 at 8 calls/s): this upstream's slow
  // phase is slow whatever the load, so cutting below that would only give
  // up answers the plain client still gets.
  static std::uint32_t limit_floor(const options& o) {
    return static_cast<std::uint32_t>(std::ceil(2 * o.rate * duration<double>(call_deadline).count()));
  }
  armor::adaptive_limit<> limit_;
  armor::token_bucket<> bucket_;
  std::int64_t quota_limit_;
  quota_type quota_;
  // Outermost first, in the order docs/policies_order.md recommends: the
  // retry layer outside the breaker, so the breaker judges every attempt and
  // a retry meets an open breaker too. Its max_refusal_wait is 0: the demo's
  // breaker opens for only 0.5 s (scaled down to its short phases, where
  // a service would use 30 s), within the 1 s default, which would have every
  // refused call sleep out the open time; and the bucket already waits up to
  // 100 ms for a token itself, so a refusal by it is one the call should not
  // wait for either.
  armor::pipeline<armor::steady_clock, armor::classify<http_judge>, armor::deadline,
                  armor::backoff<armor::thread_rng, retry_log>, std::reference_wrapper<breaker_type>,
                  std::reference_wrapper<armor::adaptive_limit<>>, observed_bucket<armor::token_bucket<>>,
                  std::reference_wrapper<quota_type>>
      client_;

  std::mutex tasks_mutex_;
  std::condition_variable tasks_cv_;
  std::deque<task> tasks_;
  bool closing_ = false;
  std::vector<std::thread> workers_;

  // The breaker's stats().throttled as each phase began, and at the end.
  std::array<std::uint64_t, demo::phase_count + 1> breaker_throttled_at_{};
  std::size_t ticked_calls_ = 0;  // calls already counted by tick lines
  demo::answer_counts ticked_answers_{};
};

void demo_run::armor_call(int phase, std::size_t index) {
  scratch = {};
  call_record r;
  r.phase = phase;
  r.index = index;
  r.start = rec_.now();
  const int port = upstream_.port();
  const int item = items_[index];
  const std::string path = fmt::format("/api/items/{}", item);
  // The cache calls this on a miss, or when its entry is past max-age: one
  // call through the pipeline. A 2xx is stored with the freshness its
  // Cache-Control gives; anything else is a failure, which a stale entry
  // (within stale-if-error) answers instead of.
  const auto fetch = [&]() -> armor::result<armor::cache_item<std::string>> {
    scratch.ran = true;
    const steady::time_point began = steady::now();
    auto res = client_.try_execute([&](const armor::context& ctx) {
      const std::string attempt = std::to_string(scratch.sent++);
      scratch.last_status = 0;
      httplib::Client http("127.0.0.1", port);
      http.set_connection_timeout(std::min<nanoseconds>(ctx.remaining(), 1s));
      http.set_read_timeout(ctx.remaining());  // never outlive the deadline
      auto got = http.Get(path, {{"X-Client", "armor"}, {"X-Call", std::to_string(index)}, {"X-Attempt", attempt}});
      if (!got) {
        const bool timed_out = got.error() == httplib::Error::Read || got.error() == httplib::Error::ConnectionTimeout;
        throw std::system_error(std::make_error_code(timed_out ? std::errc::timed_out : std::errc::connection_refused),
                                httplib::to_string(got.error()));
      }
      scratch.last_status = got->status;
      if (got->status == 429) ++scratch.throttled;
      return std::move(got.value());
    });
    scratch.took = steady::now() - began;
    if (res.ok() && res->status >= 200 && res->status < 300) {
      scratch.live_ok = true;
      const auto cc = armor::http::parse_cache_control(armor::http::header(*res, "Cache-Control").value_or(""));
      return armor::http::cache_item_from(cc, std::make_shared<const std::string>(std::move(res->body)));
    }
    if (!res.has_value()) {
      scratch.code = res.code();
      return res.error();
    }
    return armor::failure{armor::errc::operation_failed, res.retry_after(), nullptr};  // a 500 or a 429, judged
  };
  auto got = cache_.try_execute(item, fetch);
  r.end = rec_.now();
  r.took = scratch.took;
  r.sent = scratch.sent;
  r.throttled = scratch.throttled;
  r.waited = scratch.waited;
  r.breaker_refused = scratch.breaker_refused;
  if (got) {
    r.got = got->origin == armor::cache_origin::fresh   ? answer::fresh
            : got->origin == armor::cache_origin::stale ? answer::stale
                                                        : answer::live;
  }
  const double ms = (r.end - r.start) * 1000;
  if (!scratch.ran) {
    // The cache answered without calling the pipeline on this thread: from
    // a fresh entry, or with the result of a call for the same item already
    // in flight (or just stored by one).
    r.how = r.got == answer::fresh ? ending::fresh : ending::joined;
  } else if (scratch.live_ok) {
    r.how = ending::ok;
  } else if (r.sent > 0) {
    r.how = ending::failed;
  } else if (scratch.code == armor::errc::circuit_open) {
    r.how = ending::fast_failed;
    rec_.detail_line(detail::reject, r.end, rec_.style(fg(fmt::terminal_color::red)), "reject",
                     "breaker open: failed fast in {:.0f} µs, no request sent",
                     duration<double, std::micro>(r.took).count());
  } else if (scratch.code == armor::errc::quota_exhausted) {
    r.how = ending::quota;
    rec_.detail_line(detail::reject, r.end, rec_.style(fg(fmt::terminal_color::magenta)), "reject",
                     "quota spent: not sent");
  } else {
    r.how = ending::not_sent;
    rec_.detail_line(detail::reject, r.end, rec_.style(fg(fmt::terminal_color::red)), "reject",
                     "{}: not sent, after {:.0f} ms", scratch.code.message(), ms);
  }
  if (r.got == answer::stale) {
    // Why the pipeline gave no answer: this call's own attempt, or the call
    // in flight for the same item that it joined.
    const std::string why = !scratch.ran     ? fmt::format("the call it joined failed ({})", got->error.message())
                            : r.sent == 0    ? fmt::format("not sent ({})", scratch.code.message())
                            : scratch.last_status > 0 ? fmt::format("HTTP {}", scratch.last_status)
                                                      : std::string("no answer in time");
    rec_.detail_line(detail::stale, r.end, rec_.style(fg(fmt::terminal_color::cyan)), "stale",
                     "item {} answered STALE from the cache (stale-if-error), instead of: {}", item, why);
  }
  rec_.call_ended(r);
}

void demo_run::plain_call(int phase, std::size_t index) {
  call_record r;
  r.phase = phase;
  r.index = index;
  r.start = rec_.now();
  httplib::Client http("127.0.0.1", upstream_.port());
  http.set_connection_timeout(1s);
  http.set_read_timeout(call_deadline);
  auto res = http.Get(fmt::format("/api/items/{}", items_[index]),
                      {{"X-Client", "plain"}, {"X-Call", std::to_string(index)}, {"X-Attempt", "0"}});
  r.end = rec_.now();
  r.sent = 1;
  r.throttled = res && res->status == 429 ? 1 : 0;
  r.how = res && res->status >= 200 && res->status < 300 ? ending::ok : ending::failed;
  r.got = r.how == ending::ok ? answer::live : answer::none;
  rec_.plain_call_ended(r);
}

void demo_run::start_workers(int n) {
  for (int i = 0; i < n; ++i) {
    workers_.emplace_back([this] {
      for (;;) {
        task t;
        {
          std::unique_lock lock(tasks_mutex_);
          tasks_cv_.wait(lock, [this] { return closing_ || !tasks_.empty(); });
          if (tasks_.empty()) return;
          t = tasks_.front();
          tasks_.pop_front();
        }
        if (t.plain) {
          plain_call(t.phase, t.index);
        } else {
          armor_call(t.phase, t.index);
        }
      }
    });
  }
}

void demo_run::submit(task t) {
  {
    const std::lock_guard lock(tasks_mutex_);
    tasks_.push_back(t);
  }
  tasks_cv_.notify_one();
}

void demo_run::drain_and_stop_workers() {
  {
    const std::lock_guard lock(tasks_mutex_);
    closing_ = true;
  }
  tasks_cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

// One line a second: how the calls that ended in that second went.
void demo_run::tick(double t, bool final) {
  const std::vector<call_record> calls = rec_.calls();
  std::array<int, 7> n{};    // by ending
  std::array<int, 4> got{};  // by answer
  for (std::size_t i = ticked_calls_; i < calls.size(); ++i) {
    ++n[static_cast<std::size_t>(calls[i].how)];
    ++got[static_cast<std::size_t>(calls[i].got)];
  }
  ticked_calls_ = calls.size();
  const demo::answer_counts a = upstream_.counts(demo::client::armor);
  const auto d200 = a.ok - ticked_answers_.ok;
  const auto d500 = a.server_errors - ticked_answers_.server_errors;
  const auto d429 = a.throttled - ticked_answers_.throttled;
  ticked_answers_ = a;
  if (final && n == std::array<int, 7>{} && d200 + d500 + d429 == 0) return;
  const auto q = quota_.usage(0);
  const armor::breaker_state s = breaker_.stats().state;
  rec_.line(t, rec_.style(fmt::emphasis::faint), "|",
            "answered {} live, {} fresh, {} stale, {} not | {} failed, {} failed fast, {} not sent | "
            "upstream sent 200 x{}, 500 x{}, 429 x{} | breaker {} | limit {} | quota {:.0f} %",
            got[1], got[2], got[3], got[0], n[1], n[2], n[3] + n[4], d200, d500, d429, armor::to_string(s),
            limit_.limit(), q.percent());
}

int demo_run::run() {
  const double total = demo::phase_count * duration<double>(opt_.phase).count();
  // Time zero is now, with the upstream listening and the callers ready.
  start_workers(64);
  t0_ = steady::now();
  rec_.restart(t0_);
  fmt::print(rec_.style(fmt::emphasis::bold), "armor demo");
  fmt::print(": {} calls ({:g}/s at random, seed {}) in {} phases of {:g} s, over real sockets\n", arrivals_.size(),
             opt_.rate, opt_.seed, demo::phase_count, duration<double>(opt_.phase).count());
  fmt::print("  upstream  http://127.0.0.1:{}/api/items/ allows each client 10 requests/s (burst 2):\n"
             "            RateLimit headers, and 429 + Retry-After beyond the limit\n",
             upstream_.port());
  fmt::print("  items     GET /api/items/0..{}: each call asks for one (the same for both clients); a 200 says\n"
             "            Cache-Control: max-age={}, stale-if-error={}\n",
             item_count - 1, item_max_age(opt_).count(), item_stale_if_error.count());
  fmt::print("  armor     armor::cache (fresh: no request; stale, marked, when the pipeline below fails or refuses)\n"
             "            -> deadline {:g} s -> backoff (3 attempts, retry budget, honours Retry-After, waits out no\n"
             "            refusal) -> circuit breaker (opens at 50 % failures in the last 10; open {:.1f} s; 429s,\n"
             "            timeouts and slow answers do not count) -> adaptive limit (gradient, {} to {} in flight)\n"
             "            -> token bucket (10/s, burst 1, waits up to 100 ms) -> quota ({} requests an hour)\n",
             duration<double>(call_deadline).count(), duration<double>(breaker_.options().open_for).count(),
             limit_floor(opt_), 8 * limit_floor(opt_), quota_limit_);
  fmt::print("  plain     the same calls at the same moments: one GET each, {:g} s timeout, no cache, nothing else\n",
             duration<double>(call_deadline).count());
  std::fflush(stdout);

  static constexpr std::array<std::string_view, demo::phase_count> what = {
      "answers 200 in 5-15 ms",
      "answers 500 to every request",
      "allows 2 requests/s: 429 + Retry-After beyond that",
      "answers 200 after 1 to 2.8 s",
      "answers 200 in 5-15 ms again",
  };

  const auto at = [&](double s) { return t0_ + std::chrono::duration_cast<steady::duration>(duration<double>(s)); };
  std::size_t arrived = 0;
  const auto next_call = [&] { return arrived < arrivals_.size() ? arrivals_[arrived] : total + 1; };
  double next_tick = 1;
  double next_sample = 0;
  const double bin = std::max(0.1, total / 300);
  for (int k = 0; k < demo::phase_count; ++k) {
    const double phase_end = (k + 1) * duration<double>(opt_.phase).count();
    breaker_throttled_at_[static_cast<std::size_t>(k)] = breaker_.stats().throttled;
    upstream_.set_phase(static_cast<demo::phase>(k));
    rec_.phase_started(k, rec_.now(), what[static_cast<std::size_t>(k)]);
    for (;;) {
      const double next = std::min({next_call(), next_tick, next_sample, phase_end});
      std::this_thread::sleep_until(at(next));
      if (next_sample <= next) {
        rec_.quota_sample(next_sample, quota_.usage(0).percent(), limit_.limit());
        next_sample += bin;
      }
      if (next_call() <= next && next_call() < phase_end) {
        submit({false, k, arrived});
        submit({true, k, arrived});
        ++arrived;
      }
      if (next_tick <= next) {
        tick(next_tick);
        next_tick += 1;
      }
      if (next >= phase_end) break;
    }
  }
  drain_and_stop_workers();
  breaker_throttled_at_[demo::phase_count] = breaker_.stats().throttled;
  rec_.quota_sample(rec_.now(), quota_.usage(0).percent(), limit_.limit());
  tick(rec_.now(), true);
  upstream_.stop();
  const double ran = rec_.now();
  summary();
  write_svg(std::max(total, ran));
  return 0;
}

void demo_run::summary() {
  const auto calls = rec_.calls();
  const auto plain = rec_.plain_calls();
  const demo::answer_counts a = upstream_.counts(demo::client::armor);
  const demo::answer_counts p = upstream_.counts(demo::client::plain);
  const armor::backoff_stats bs = client_.layer<1>().stats();
  const armor::circuit_breaker_stats cs = breaker_.stats();
  const auto [waits, wait_seconds] = rec_.waits();
  const auto retries = rec_.retries_per_phase();

  struct totals {
    int calls = 0, ok = 0, failed = 0, fast = 0, not_sent = 0, quota = 0, fresh = 0, joined = 0, throttled = 0;
    int answered = 0, live = 0, from_fresh = 0, from_stale = 0;  // what the callers got
    double failing_seconds = 0;  // time callers spent in calls that got no answer
  };
  const auto add = [](totals& t, const call_record& r) {
    ++t.calls;
    t.throttled += r.throttled;
    switch (r.how) {
      case ending::ok: ++t.ok; break;
      case ending::failed: ++t.failed; break;
      case ending::fast_failed: ++t.fast; break;
      case ending::not_sent: ++t.not_sent; break;
      case ending::quota: ++t.quota; break;
      case ending::fresh: ++t.fresh; break;
      case ending::joined: ++t.joined; break;
    }
    switch (r.got) {
      case answer::none: t.failing_seconds += r.end - r.start; return;
      case answer::live: ++t.live; break;
      case answer::fresh: ++t.from_fresh; break;
      case answer::stale: ++t.from_stale; break;
    }
    ++t.answered;
  };
  std::array<totals, demo::phase_count> ap{}, pp{};
  totals at, pt;
  for (const auto& r : calls) {
    add(ap[static_cast<std::size_t>(r.phase)], r);
    add(at, r);
  }
  for (const auto& r : plain) {
    add(pp[static_cast<std::size_t>(r.phase)], r);
    add(pt, r);
  }

  const auto heading = rec_.style(fmt::emphasis::bold);
  fmt::print("\n");
  fmt::print(heading, "summary by phase");
  fmt::print("{:>14}{:>16}{:>22}{:>16}{:>10}{:>14}\n", "calls", "answered", "armor's answers", "429s received",
             "retries", "failed fast");
  fmt::print("{:>46}{:>22}{:>16}\n", "armor / plain", "live / fresh / stale", "armor / plain");
  for (std::size_t k = 0; k < demo::phase_count; ++k) {
    fmt::print("  {:<22}{:>6}{:>16}{:>22}{:>16}{:>10}{:>14}\n",
               fmt::format("{}/{} {}", k + 1, demo::phase_count, demo::phase_names[k]), ap[k].calls,
               fmt::format("{} / {}", ap[k].answered, pp[k].answered),
               fmt::format("{} / {} / {}", ap[k].live, ap[k].from_fresh, ap[k].from_stale),
               fmt::format("{} / {}", ap[k].throttled, pp[k].throttled), retries[k], ap[k].fast);
  }

  // The breaker, per phase: how often it opened, and how often the attempt
  // that opened it was a 429; the 429s it saw and counted as neither success
  // nor failure (its stats().throttled, read as each phase began); the calls
  // it refused before they sent anything, and how long they took, from just
  // before try_execute to its return (steady_clock), however they ended (a
  // retry layer that waited for the breaker would show here).
  const auto opens = rec_.opens_per_phase();
  std::array<std::vector<nanoseconds>, demo::phase_count> refused_in{};
  std::vector<nanoseconds> refused_all;
  for (const auto& r : calls) {
    if (!r.breaker_refused) continue;
    refused_in[static_cast<std::size_t>(r.phase)].push_back(r.took);
    refused_all.push_back(r.took);
  }
  const auto median_max = [](std::vector<nanoseconds> v) -> std::string {
    if (v.empty()) return "-";
    std::sort(v.begin(), v.end());
    const auto us = [](nanoseconds d) { return duration<double, std::micro>(d).count(); };
    const std::size_t n = v.size();
    const double median = n % 2 == 1 ? us(v[n / 2]) : (us(v[n / 2 - 1]) + us(v[n / 2])) / 2;
    return fmt::format("{:.0f} / {:.0f} µs", median, us(v.back()));
  };
  int opened = 0, opened_by_429 = 0;
  fmt::print("\n");
  fmt::print(heading, "breaker by phase");
  fmt::print("{:>18}{:>10}{:>18}{:>10}{:>22}\n", "opened", "by a 429", "429s not counted", "refused",
             "time to return");
  fmt::print("{:>94}\n", "median / max");
  for (std::size_t k = 0; k < demo::phase_count; ++k) {
    opened += opens[k].opened;
    opened_by_429 += opens[k].by_429;
    fmt::print("  {:<22}{:>10}{:>10}{:>18}{:>10}{:>22}\n",
               fmt::format("{}/{} {}", k + 1, demo::phase_count, demo::phase_names[k]), opens[k].opened,
               opens[k].by_429, breaker_throttled_at_[k + 1] - breaker_throttled_at_[k], refused_in[k].size(),
               median_max(refused_in[k]));
  }

  const auto row = [](std::string_view name, const std::string& armor_value, const std::string& plain_value) {
    fmt::print("  {:<44} {:>12} {:>14}\n", name, armor_value, plain_value);
  };
  const auto num = [](auto v) { return fmt::format("{}", v); };
  fmt::print("\n");
  fmt::print(heading, "summary");
  fmt::print("{:>50}{:>15}\n", "with armor", "without armor");
  row("calls", num(at.calls), num(pt.calls));
  row("answered", num(at.answered), num(pt.answered));
  row("answered live (the upstream's 200)", num(at.live), num(pt.live));
  row("answered fresh from the cache (no request)", num(at.from_fresh), "- (no cache)");
  row("answered stale from the cache (marked)", num(at.from_stale), "- (no cache)");
  row("not answered", num(at.calls - at.answered), num(pt.calls - pt.answered));
  row("served by the cache without the pipeline", num(at.fresh), "-");
  row("joined a call in flight for the same item", num(at.joined), "-");
  row("succeeded after sending", num(at.ok), num(pt.ok));
  row("failed after sending", num(at.failed), num(pt.failed));
  row("failed fast (breaker open, nothing sent)", num(at.fast), "-");
  row("not sent (limit, no token in time, deadline)", num(at.not_sent), "-");
  row("refused by the quota", num(at.quota), "-");
  row("requests the upstream received", num(a.requests), num(p.requests));
  row("retries", num(bs.retries), "-");
  row("succeeded after a retry", num(bs.successes_after_retry), "-");
  row("waits for a token (total)", fmt::format("{} ({:.1f} s)", waits, wait_seconds), "-");
  row("429s received (counted by the upstream)", num(a.throttled), num(p.throttled));
  row("500s received", num(a.server_errors), num(p.server_errors));
  row("seconds callers spent in calls not answered", fmt::format("{:.1f}", at.failing_seconds),
      fmt::format("{:.1f}", pt.failing_seconds));
  row("breaker opened", fmt::format("{} times", cs.times_opened), "-");
  row("breaker opens caused by a 429", num(opened_by_429), "-");
  row("429s the breaker saw and did not count", num(cs.throttled), "-");
  row("refused by the breaker: time to return", median_max(refused_all), "-");
  row("breaker refusals the retry layer waited out", num(rec_.breaker_waits()), "-");
  const armor::cache_stats ks = cache_.stats();
  row("cache: fresh hits / stale on error / misses", fmt::format("{} / {} / {}", ks.hits, ks.stale_on_error, ks.misses),
      "-");
  const auto q = quota_.usage(0);
  row("quota used", fmt::format("{} of {} ({:.0f} %)", q.used, q.limit, q.percent()), "-");
  fmt::print("\n");
  const auto avoided = static_cast<long long>(p.throttled) - static_cast<long long>(a.throttled);
  fmt::print(heading, "  429s avoided: {}", avoided);
  fmt::print(" (the plain client got {}, armor {}: same calls, same moments, same upstream)\n", p.throttled,
             a.throttled);
  fmt::print(heading, "  fast failures: {}", at.fast);
  fmt::print(" calls ended at the breaker with no request sent; the {} calls it refused\n"
             "  returned in {} (median / max)\n",
             refused_all.size(), median_max(refused_all));
  fmt::print(heading, "  429s and the breaker: {} opens caused by a 429", opened_by_429);
  fmt::print(" (it opened {} time{}, {} in the throttling phase; it saw {} 429s\n"
             "  and counted them as neither success nor failure)\n",
             opened, opened == 1 ? "" : "s", opens[static_cast<std::size_t>(demo::phase::throttling)].opened,
             cs.throttled);
  const double saved = pt.failing_seconds - at.failing_seconds;
  fmt::print(heading, "  answered: {} of {} calls with armor, {} without", at.answered, at.calls, pt.answered);
  fmt::print("\n  ({} live, {} fresh from the cache with no request, {} stale from the cache instead of a failure;\n"
             "  the plain client has no cache: {} live)\n",
             at.live, at.from_fresh, at.from_stale, pt.live);
  fmt::print("  time callers spent in calls not answered: {:.1f} s with armor, {:.1f} s without ({:.1f} s {})\n",
             at.failing_seconds, pt.failing_seconds, std::abs(saved), saved >= 0 ? "saved" : "more with armor");
  std::fflush(stdout);
}

void demo_run::write_svg(double total) {
  demo::svg_input in;
  in.title = "armor demo: a flaky upstream through deadline, backoff, circuit breaker, adaptive limit, token bucket"
             " and quota";
  in.total_seconds = total;
  const double len = duration<double>(opt_.phase).count();
  for (int k = 0; k < demo::phase_count; ++k) {
    in.phases.push_back({k * len, k + 1 == demo::phase_count ? total : (k + 1) * len,
                         fmt::format("{}/{} {}", k + 1, demo::phase_count, demo::phase_names[static_cast<std::size_t>(k)])});
  }
  in.breaker.push_back({0, "closed"});
  for (const auto& [t, s] : rec_.transitions()) in.breaker.push_back({t, std::string(armor::to_string(s))});
  in.bin_seconds = std::max(0.1, total / 300);
  const auto bins = static_cast<std::size_t>(std::ceil(total / in.bin_seconds));
  in.admitted.assign(bins, 0);
  in.rejected.assign(bins, 0);
  for (const auto& r : rec_.calls()) {
    if (r.how == ending::fresh || r.how == ending::joined) continue;  // the pipeline was not called
    const auto b = std::min(bins - 1, static_cast<std::size_t>(std::max(0.0, r.start) / in.bin_seconds));
    ++(r.sent > 0 ? in.admitted : in.rejected)[b];
  }
  const auto per_bin = [&](std::string name, const std::vector<call_record>& records) {
    demo::svg_input::outcomes c{std::move(name), std::vector<int>(bins, 0), std::vector<int>(bins, 0)};
    for (const auto& r : records) {
      const auto b = std::min(bins - 1, static_cast<std::size_t>(std::max(0.0, r.start) / in.bin_seconds));
      ++(r.got != answer::none ? c.ok : c.failed)[b];
    }
    return c;
  };
  in.clients.push_back(per_bin("with armor", rec_.calls()));
  in.clients.push_back(per_bin("plain client", rec_.plain_calls()));
  in.limit = rec_.limit_samples();
  in.quota = rec_.quota_samples();
  in.quota_label = fmt::format("(of {} requests)", quota_limit_);
  in.alerts = rec_.alerts();

  std::error_code ec;
  const std::filesystem::path path = std::filesystem::absolute(opt_.svg, ec);
  std::ofstream out(path, std::ios::binary);
  out << demo::render_svg(in);
  out.close();
  if (!out) {
    fmt::print(stderr, "armor_demo: could not write the SVG timeline to {}\n", path.string());
    std::exit(1);
  }
  fmt::print("\nSVG timeline written to {}\n", path.string());
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse_options(argc, argv);
  try {
    demo_run run(o);
    return run.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "armor_demo: %s\n", e.what());
    return 1;
  }
}
