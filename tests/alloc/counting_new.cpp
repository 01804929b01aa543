// Replaces the global allocation functions to count calls per thread.
// Only operator new is replaced (its forms all funnel through malloc here);
// the matching deletes call free.
#include "counting_new.hpp"

#include <cstdlib>
#include <new>

namespace {

thread_local std::size_t thread_allocations = 0;
std::atomic<std::size_t> total_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align = 0) {
  ++thread_allocations;
  total_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align > alignof(std::max_align_t)) {
    const std::size_t rounded = (n + align - 1) / align * align;
    p = std::aligned_alloc(align, rounded);
  } else {
    p = std::malloc(n);
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

namespace armor_test {

std::size_t allocation_count() noexcept { return total_allocations.load(std::memory_order_relaxed); }

allocation_scope::allocation_scope() noexcept : start_(thread_allocations) {}

std::size_t allocation_scope::allocations() const noexcept { return thread_allocations - start_; }

}  // namespace armor_test

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
