// The example at the top of armor/prometheus_cpp.hpp, compiled and run.
//
// It is copied verbatim under a `// header example: <armor/...>` line;
// tests/shape/check_examples.py (CTest armor_header_examples_check) fails
// when the header's example and its copy here differ. Change both together.
#include <armor/circuit_breaker.hpp>
#include <armor/prometheus.hpp>
#include <armor/prometheus_cpp.hpp>

#include <prometheus/exposer.h>

#include "prometheus_cpp/scrape.hpp"
#include "armor_catch.hpp"

#include <memory>
#include <string>

namespace header_examples {

// ---------------------------------------------------------------------------
// header example: <armor/prometheus_cpp.hpp>
namespace prometheus_cpp_ex {
std::shared_ptr<armor::prometheus::collectable> example(const armor::circuit_breaker<>& s3_breaker,
                                                         prometheus::Exposer& exposer) {
  armor::prometheus::registry metrics;            // armor/prometheus.hpp
  metrics.add(s3_breaker, {{"upstream", "s3-products"}});
  auto armor_metrics = std::make_shared<armor::prometheus::collectable>(metrics);
  exposer.RegisterCollectable(armor_metrics);      // beside the service's prometheus::Registry
  return armor_metrics;  // the Exposer holds a weak_ptr: the service keeps it
}
}  // namespace prometheus_cpp_ex

}  // namespace header_examples

TEST_CASE("header example: prometheus_cpp.hpp serves the breaker's families") {
  const armor::circuit_breaker<> breaker{{.failure_threshold = 5}};
  prometheus::Exposer& exposer = armor_test::shared_exposer();
  const auto kept = header_examples::prometheus_cpp_ex::example(breaker, exposer);
  const std::string body = armor_test::body_of(armor_test::http_get(armor_test::shared_port(), "/metrics"));
  exposer.RemoveCollectable(kept);
  INFO(body);
  CHECK(body.find("# TYPE armor_circuit_breaker_state gauge") != std::string::npos);
  CHECK(body.find("armor_circuit_breaker_state{upstream=\"s3-products\"} 0") != std::string::npos);
}
