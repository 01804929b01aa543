// armor::keyed's memory per entry: entries are carved from chunks of four,
// so inserting allocates once per four keys (plus the shard's table on its
// first insert, and the characters of a key over 15); an erased or evicted
// entry's memory is reused by the next insert without allocating; a lookup
// of a key held allocates nothing.
#include <armor/keyed.hpp>
#include <armor/token_bucket.hpp>

#include "armor_catch.hpp"
#include "counting_new.hpp"

#include <string>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("keyed allocates a chunk per four entries, a long key's characters, and nothing to reuse an entry") {
  armor::manual_clock clock;
  armor::keyed<armor::token_bucket<armor::manual_clock>> m{
      {.rate = {1, 1h}, .burst = 1}, {.max_keys = 64, .shards = 1}, clock};
  std::vector<std::string> keys;
  for (int i = 0; i < 9; ++i) {
    std::string k = "k";
    k += std::to_string(i);
    keys.push_back(std::move(k));
  }
  const std::string long_key(40, 'L');
  std::vector<std::size_t> per_insert;
  for (const auto& k : keys) {
    const armor_test::allocation_scope scope;
    (void)m.get(k);
    per_insert.push_back(scope.allocations());
  }
  // The first: the table and a chunk; then a chunk every fourth key.
  CHECK(per_insert == std::vector<std::size_t>{2, 0, 0, 0, 1, 0, 0, 0, 1});
  {
    const armor_test::allocation_scope scope;
    (void)m.get(long_key);  // the 10th entry fits in the third chunk; its characters do not fit inline
    CHECK(scope.allocations() == 1);
  }
  {
    const armor_test::allocation_scope scope;
    for (int round = 0; round < 100; ++round) {
      for (const auto& k : keys) (void)m.get(k)->try_acquire();  // held keys: found, no allocation
      CHECK(m.erase(keys[static_cast<std::size_t>(round) % keys.size()]));
      (void)m.get(keys[static_cast<std::size_t>(round) % keys.size()]);  // reuses the erased entry's memory
    }
    CHECK(scope.allocations() == 0);
  }
  CHECK(m.size() == keys.size() + 1);
}
