// One token-bucket decision as text, for the differential tests that compare
// a memory bucket with another backend call for call (every number a user
// can read from the decision). Built by appending: GCC 12 -O3 reports a
// -Wrestrict false positive on `"literal" + std::to_string(...)`.
#pragma once

#include <armor/token_bucket.hpp>

#include <string>

namespace armor_test {

inline std::string describe(const armor::token_bucket_decision<>& d) {
  std::string s = "status ";
  s += std::to_string(static_cast<int>(d.status()));
  s += " code ";
  s += std::to_string(d.code().value());
  s += " remaining ";
  s += std::to_string(d.remaining());
  s += " retry_after ";
  s += std::to_string(d.retry_after().count());
  s += " reset ";
  s += std::to_string(d.reset().count());
  s += " limit ";
  s += std::to_string(d.limit());
  return s;
}

}  // namespace armor_test
