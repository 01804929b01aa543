// armor's test package: a deadline and retries around a call that fails once,
// through armor::armor as installed. Exits 0 only if armor behaved as
// documented. With ARMOR_TEST_PACKAGE_<COMPONENT> it also uses what that
// component provides, to show its dependency arrived with it.
#include <armor/armor.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#if ARMOR_TEST_PACKAGE_ASIO
#if __has_include(<armor/asio.hpp>)
#include <armor/asio.hpp>
#endif
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#ifndef ASIO_STANDALONE
#error "armor::asio must define ASIO_STANDALONE"
#endif
#endif

#if ARMOR_TEST_PACKAGE_FMT
#if __has_include(<armor/fmt.hpp>)
#include <armor/fmt.hpp>
#endif
#include <fmt/format.h>
#endif

#if ARMOR_TEST_PACKAGE_SQLITE
#if __has_include(<armor/storage/sqlite.hpp>)
#include <armor/storage/sqlite.hpp>
#endif
#include <sqlite3.h>
#endif

#if ARMOR_TEST_PACKAGE_PROMETHEUS_CPP
#include <armor/prometheus_cpp.hpp>
#include <prometheus/registry.h>
#endif

#if ARMOR_TEST_PACKAGE_REDIS
#if __has_include(<armor/redis.hpp>)
#include <armor/redis.hpp>
#endif
#include <hiredis/hiredis.h>
#endif

using namespace std::chrono_literals;

int main() {
  auto p = armor::pipeline{armor::deadline{5s}, armor::backoff{{.max_attempts = 3, .initial = 1ms}}};
  int calls = 0;
  const int v = p.execute([&]() -> int {
    if (++calls < 2) throw std::runtime_error("transient");
    return 42;
  });
  bool ok = v == 42 && calls == 2;

#if ARMOR_TEST_PACKAGE_ASIO
  ::asio::io_context io;
  int posted = 0;
  ::asio::post(io, [&] { ++posted; });
  io.run();
  ok = ok && posted == 1;
#endif
#if ARMOR_TEST_PACKAGE_FMT
  ok = ok && fmt::format("{}", v) == "42";
#endif
#if ARMOR_TEST_PACKAGE_SQLITE
  ok = ok && sqlite3_libversion_number() > 0;
#endif
#if ARMOR_TEST_PACKAGE_REDIS
  // Links hiredis without needing a server: formatting a command is local.
  char* cmd = nullptr;
  const int len = redisFormatCommand(&cmd, "PING");
  ok = ok && len > 0;
  redisFreeCommand(cmd);
#endif
#if ARMOR_TEST_PACKAGE_PROMETHEUS_CPP
  // armor's families as prometheus-cpp's, collected without an Exposer;
  // a prometheus::Registry links prometheus-cpp's core library.
  armor::bulkhead<> pool{{.max_concurrent = 1}};
  armor::prometheus::registry metrics;
  metrics.add(pool, {{"pool", "uploads"}});
  const armor::prometheus::collectable armor_metrics{metrics};
  prometheus::Registry own;
  ok = ok && !armor_metrics.Collect().empty() && own.Collect().empty();
#endif

  std::printf("armor %d.%d.%d test package: %s\n", ARMOR_VERSION_MAJOR, ARMOR_VERSION_MINOR,
              ARMOR_VERSION_PATCH, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
