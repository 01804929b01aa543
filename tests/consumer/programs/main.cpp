// A consumer of armor through armor::armor: a pipeline with a deadline and
// retries around a call that fails twice, then succeeds. Exits 0 only if
// armor behaved as documented.
#include <armor/armor.hpp>

#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

int main() {
  armor::manual_clock clock;
  auto p = armor::pipeline{clock, armor::deadline{5s}, armor::backoff{{.max_attempts = 3, .initial = 10ms}}};
  int calls = 0;
  const int v = p.execute([&]() -> int {
    if (++calls < 3) throw std::runtime_error("transient");
    return 42;
  });
  auto refused = p.try_execute([] { return 0; }, {.timeout = 0ns});
  const bool ok = v == 42 && calls == 3 && !refused && refused.code() == armor::errc::deadline_exceeded;
  std::printf("armor %d.%d.%d consumer: %s\n", ARMOR_VERSION_MAJOR, ARMOR_VERSION_MINOR, ARMOR_VERSION_PATCH,
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
