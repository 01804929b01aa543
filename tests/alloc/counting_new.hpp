// Counting global allocator for the allocation tests.
//
// counting_new.cpp replaces the global operator new/delete for the whole
// armor_alloc_tests executable; a test measures a region like this:
//
//     armor_test::allocation_scope scope;
//     p.execute(f);
//     CHECK(scope.allocations() == 0);
#pragma once

#include <atomic>
#include <cstddef>

namespace armor_test {

/// Number of calls to any global operator new (all forms) since start.
std::size_t allocation_count() noexcept;

/// Counts allocations made by this thread between construction and
/// allocations(). Counting per thread keeps other threads (a test
/// framework's, a sanitizer's) out of the measurement.
class allocation_scope {
 public:
  allocation_scope() noexcept;
  [[nodiscard]] std::size_t allocations() const noexcept;

 private:
  std::size_t start_;
};

}  // namespace armor_test
