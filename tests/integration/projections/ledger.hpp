#pragma once
// The projection the projections tests run (and projection_worker runs in a
// child process): a ledger of accounts folded from
// `bank.account.deposited` events ({"amount": N}). It is strict about order
// and exactly-once: an account's next event must carry a higher stream
// version than the last one applied, otherwise the handler throws (and the
// projection parks), so a duplicate or reordered apply never goes unnoticed.

#include <rapidjson/document.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "switchboard/projections/projection.hpp"

namespace sb::projtest {

struct LedgerKnobs {
  /// Sleep per event (makes a page take long enough to be killed mid-way).
  std::chrono::microseconds delay{0};
  /// Also log each apply into {applied} with this owner tag.
  std::string owner;
  /// Throw on the event at this position while > 0.
  std::shared_ptr<std::atomic<std::int64_t>> fail_at =
      std::make_shared<std::atomic<std::int64_t>>(0);
  int version = 1;
  bool extra_column = false;  // a schema change: accounts gets a `note` column
};

inline std::int64_t amount_of(const events::Event& e) {
  const auto& v = e.data.value();
  if (v.IsObject() && v.HasMember("amount") && v["amount"].IsInt64()) return v["amount"].GetInt64();
  return 0;
}

inline std::shared_ptr<projections::Projection> ledger(const std::string& name,
                                                       LedgerKnobs knobs = {}) {
  projections::ProjectionBuilder b(name);
  b.table("accounts").table("by_type").table("applied").version(knobs.version);
  b.schema(std::string("CREATE TABLE {accounts} (stream text PRIMARY KEY, balance bigint NOT NULL, "
                       "events bigint NOT NULL, last_version bigint NOT NULL, last_position "
                       "bigint NOT NULL") +
           (knobs.extra_column ? ", note text" : "") + ")");
  b.schema("CREATE INDEX ON {accounts} (last_position)");
  b.schema("CREATE TABLE {by_type} (type text PRIMARY KEY, n bigint NOT NULL)");
  b.schema(
      "CREATE TABLE {applied} (seq bigserial PRIMARY KEY, stream text NOT NULL, version bigint NOT "
      "NULL, position bigint NOT NULL, owner text NOT NULL)");
  auto handler = [knobs](pg::Transaction& tx, const projections::Tables& t,
                         const events::Event& e) {
    if (knobs.delay.count() > 0) std::this_thread::sleep_for(knobs.delay);
    if (knobs.fail_at->load() > 0 && e.position.value() == knobs.fail_at->load()) {
      throw std::runtime_error("ledger: refusing position " + std::to_string(e.position.value()));
    }
    // Versions only ever grow within a stream (other event types take
    // versions too, so they need not be consecutive): an apply that is not
    // strictly after the last one is a duplicate or out of order.
    auto r = tx.exec(
        t.sql(
            "INSERT INTO {accounts} AS a (stream, balance, events, last_version, last_position) "
            "VALUES ($1, $2, 1, $3, $4) ON CONFLICT (stream) DO UPDATE SET balance = a.balance + "
            "excluded.balance, events = a.events + 1, last_version = excluded.last_version, "
            "last_position = excluded.last_position WHERE a.last_version < excluded.last_version"),
        {e.stream.value(), amount_of(e), e.version.value(), e.position.value()});
    if (r.affected_rows() != 1) {
      throw std::runtime_error("ledger: " + e.stream.value() + " version " +
                               std::to_string(e.version.value()) +
                               " applied twice or out of order");
    }
    tx.exec(t.sql("INSERT INTO {by_type} (type, n) VALUES ($1, 1) ON CONFLICT (type) DO UPDATE SET "
                  "n = {by_type}.n + 1"),
            {e.type.value()});
    if (!knobs.owner.empty()) {
      tx.exec(
          t.sql("INSERT INTO {applied} (stream, version, position, owner) VALUES ($1, $2, $3, $4)"),
          {e.stream.value(), e.version.value(), e.position.value(), knobs.owner});
    }
    return events::HandleResult::handled;
  };
  b.on("bank.account.deposited", handler);
  return b.build();
}

}  // namespace sb::projtest
