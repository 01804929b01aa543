// A fault injector whose chosen result cannot stand in for the operation's
// value: a string injected into an operation that returns an int.
// expect: armor::fault_injector<Result>: the operation's result type cannot be built from the injector's Result
#include <armor/fault_injector.hpp>
#include <armor/pipeline.hpp>

#include <functional>
#include <string>

int main() {
#ifdef ARMOR_COMPILE_FAIL_FIXED
  armor::fault_injector<int> chaos{{.result_rate = 0.5}, 503};
#else
  armor::fault_injector<std::string> chaos{{.result_rate = 0.5}, std::string("503")};
#endif
  auto p = armor::pipeline{std::ref(chaos)};
  return p.execute([] { return 1; });
}
