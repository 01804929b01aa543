// A degradation ladder: the live answer; else a cached answer; else a
// cheaper model; else a clear "try again at T".
//
//     fallback{try_again_at}            <- outermost: always has an answer
//       fallback{cheaper_model}
//         armor::cache (fresh 10 s; stale for 10 min when the call fails)
//           deadline{2s} -> circuit_breaker -> bulkhead{4}
//             live call to the large model
//
// Each fallback handles what the layers inside it could not. The cache
// answers a question seen in the last 10 s without calling; when the call
// fails (the model's 503, or the open breaker refusing it) it answers the
// last good answer, marked stale, for up to 10 minutes. A question never
// seen gets the cheaper model, which has its own quota; when everything is
// spent the client gets a time to come back instead of an error.
//
// The "upstreams" are scripted and the pipeline runs on a manual_clock, so the
// program finishes at once and prints the same thing every time.
#include <armor/armor.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {

struct answer {
  std::string text;
  std::string source;  // which rung of the ladder answered
};

struct upstream_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

int main() {
  armor::manual_clock clock;

  // The large model: healthy for the first 3 questions, then failing.
  int large_calls = 0;
  auto large_model = [&](const std::string& q) -> answer {
    ++large_calls;
    if (large_calls > 3) throw upstream_error("large model: 503");
    return {"(large) " + q + " -> 42", "live"};
  };
  // The cheaper model: works, but has its own budget of 2 answers.
  int cheap_left = 2;
  auto cheap_model = [&](const std::string& q) -> answer {
    if (cheap_left == 0) throw upstream_error("cheap model: quota spent");
    --cheap_left;
    return {"(small) " + q + " -> about 40", "cheaper model"};
  };
  armor::cache<std::string, answer, armor::manual_clock> cache{
      {.max_age = 10s, .stale_if_error = 10min, .max_entries = 100, .shards = 1}, clock};

  armor::circuit_breaker<armor::manual_clock> breaker{{.failure_threshold = 2, .open_for = 30s}, clock};
  armor::bulkhead slots{{.max_concurrent = 4}};

  const auto live = armor::pipeline{clock, armor::deadline{2s}, std::ref(breaker), std::ref(slots)};

  std::string question;  // the question of the call in progress
  const auto ladder = armor::pipeline{
      clock,
      armor::fallback{[&](const armor::failure& why, const armor::context& ctx) {
        const auto wait = why.retry_after.value_or(60s);
        const auto at = std::chrono::duration_cast<std::chrono::seconds>(ctx.now().time_since_epoch() + wait);
        return answer{"busy: try again at t=" + std::to_string(at.count()) + "s", "try-again"};
      }},
      armor::fallback{[&](const armor::failure&) { return cheap_model(question); }},
  };

  const char* questions[] = {"q1", "q2", "q3", "q1", "q4", "q2", "q5", "q6", "q7"};
  int step = 0;
  int stale = 0;
  for (const char* q : questions) {
    question = q;
    const answer a = ladder.execute([&] {
      // The cache in front of the live pipeline: fresh, stale instead of a
      // failure, or live. A failure with nothing cached goes on outward.
      const auto c = cache.execute(question, [&] { return live.try_execute([&] { return large_model(question); }); });
      if (c.origin == armor::cache_origin::live) return *c;
      if (c.origin == armor::cache_origin::stale) ++stale;
      return answer{c->text, c.origin == armor::cache_origin::stale
                                 ? "cache (stale: " + c.error.message() + ")"
                                 : std::string("cache")};
    });
    std::printf("t=%2llds  %-3s  %-38s  %s\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count()),
                q, a.source.c_str(), a.text.c_str());
    clock.advance(5s);
    ++step;
  }
  std::printf("breaker: %s; large model called %d times; %d answers served stale from the cache; %d slots in use\n",
              std::string(armor::to_string(breaker.state())).c_str(), large_calls, stale,
              static_cast<int>(slots.in_use()));
  // The ladder always answered, and gave every slot back.
  return step == 9 && slots.in_use() == 0 ? 0 : 1;
}
