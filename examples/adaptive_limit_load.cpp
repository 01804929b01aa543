// A load test of armor::adaptive_limit in real time: an in-process upstream
// (threads and sleeps, no sockets) whose latency grows with its concurrency
// beyond its capacity, latency = base * max(1, in_flight / capacity), is
// called by 4x more client threads than it can serve at its base latency.
// Each client calls in a loop; a call refused locally waits 1 ms.
//
// It prints, for each way of protecting the upstream, the goodput (calls
// completed per second, and as a share of the capacity: capacity / base)
// and the latency of completed calls (p50, p99, and p99 against the
// unloaded p99 measured first). Bounded: 3 s per row.
//
//   armor_adaptive_limit_load            print the table
//   armor_adaptive_limit_load --check    also exit 1 unless the adaptive limit
//                                        keeps p99 within 2x unloaded and
//                                        goodput at 90 % of capacity or more
#include <armor/adaptive_limit.hpp>
#include <armor/bulkhead.hpp>
#include <armor/pipeline.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using ms = std::chrono::duration<double, std::milli>;

namespace {

constexpr int capacity = 8;
constexpr auto base = 20ms;
constexpr int clients = 4 * capacity;
constexpr auto warm_up = 1500ms;
constexpr auto measured = 1500ms;

struct upstream {
  std::atomic<int> in_flight{0};
  int call() {
    const int n = in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
    std::this_thread::sleep_for(base * std::max(1.0, static_cast<double>(n) / capacity));
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    return 1;
  }
};

struct row {
  std::string name;
  double goodput = 0;  // calls per second
  double p50 = 0;
  double p99 = 0;
  long refused = 0;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

// Runs `threads` clients through `p` for warm_up + measured; statistics over `measured` only.
template <class Pipeline>
row run(const std::string& name, const Pipeline& p, int threads) {
  upstream up;
  std::atomic<bool> measuring{false};
  std::atomic<bool> stop{false};
  std::mutex m;
  std::vector<double> latencies;
  long refused = 0;
  long completed = 0;
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      std::vector<double> mine;
      long my_refused = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = p.try_execute([&] { return up.call(); });
        const auto t1 = std::chrono::steady_clock::now();
        const bool counted = measuring.load(std::memory_order_relaxed);
        if (r) {
          if (counted) mine.push_back(ms(t1 - t0).count());
        } else {
          if (counted) ++my_refused;
          std::this_thread::sleep_for(1ms);
        }
      }
      const std::lock_guard lock(m);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      refused += my_refused;
    });
  }
  std::this_thread::sleep_for(warm_up);
  measuring = true;
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(measured);
  measuring = false;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  for (auto& t : pool) t.join();
  completed = static_cast<long>(latencies.size());
  row out;
  out.name = name;
  out.goodput = static_cast<double>(completed) / seconds;
  out.p50 = percentile(latencies, 0.50);
  out.p99 = percentile(latencies, 0.99);
  out.refused = refused;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
  const double capacity_per_s = capacity / std::chrono::duration<double>(base).count();

  const auto unprotected = armor::pipeline{};
  const row unloaded = run("unloaded (1 client)", unprotected, 1);

  armor::adaptive_limit<> gradient{{.initial_limit = 4, .window = 25ms, .min_samples = 5}};
  const row g = run("adaptive_limit<gradient_limit>", armor::pipeline{std::ref(gradient)}, clients);
  armor::adaptive_limit<armor::vegas_limit> vegas{{.initial_limit = 4, .window = 25ms, .min_samples = 5}};
  const row v = run("adaptive_limit<vegas_limit>", armor::pipeline{std::ref(vegas)}, clients);
  armor::bulkhead fixed{{.max_concurrent = 4 * capacity}};
  const row b = run("bulkhead{4x capacity}", armor::pipeline{std::ref(fixed)}, clients);
  const row n = run("no limit", unprotected, clients);

  std::printf("upstream: capacity %d, base latency %.1f ms (%.0f calls/s at capacity); %d clients\n", capacity,
              ms(base).count(), capacity_per_s, clients);
  std::printf("%-32s %10s %9s %9s %9s %12s %9s\n", "protection", "goodput/s", "of cap.", "p50 ms", "p99 ms",
              "p99/unloaded", "refused");
  for (const row* r : {&unloaded, &g, &v, &b, &n}) {
    std::printf("%-32s %10.0f %8.0f%% %9.2f %9.2f %11.2fx %9ld\n", r->name.c_str(), r->goodput,
                100 * r->goodput / capacity_per_s, r->p50, r->p99, r->p99 / unloaded.p99, r->refused);
  }
  std::printf("limits at the end: gradient %u, vegas %u\n", gradient.limit(), vegas.limit());
  if (!check) return 0;
  const bool ok = g.p99 <= 2 * unloaded.p99 && g.goodput >= 0.9 * capacity_per_s;
  std::printf("check (gradient: p99 <= 2x unloaded, goodput >= 90%%): %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
