// A whole plugin: one endpoint, one subscription (services/sdk/README.md).
// GET /api/<name>/seen/{type}: events of that type the subscription handled.
#include "switchboard/sdk/sdk.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb;

sdk::Plugin build(const config::Config& cfg) {
  auto db = sdk::database(cfg);
  pg::with_transaction(*db, [](pg::Transaction& tx) {
    tx.exec(
        "CREATE TABLE IF NOT EXISTS hello_seen (tenant text, type text, n bigint NOT NULL, "
        "PRIMARY KEY (tenant, type))");
  });
  sdk::Plugin p;
  p.name = "hello";
  p.version = "1.0.0";
  p.get("/seen/{type}", [db](const sdk::Request& r) {
    auto n = pg::with_transaction(*db, [&](pg::Transaction& tx) {
      auto row = tx.exec("SELECT n FROM hello_seen WHERE tenant = $1 AND type = $2",
                         {r.tenant, r.params.at("type")})
                     .optional_one();
      return row ? (*row)[0].get<std::int64_t>() : 0;
    });
    return sdk::Response::json("{\"seen\":" + std::to_string(n) + "}");
  });
  // Checkpointed: in order, once; the insert commits with the checkpoint.
  p.react("count", {"shop.order.*"}, db, [](sdk::ReactionContext& rc) {
    rc.transaction()->exec(
        "INSERT INTO hello_seen VALUES ($1, $2, 1) ON CONFLICT (tenant, type) "
        "DO UPDATE SET n = hello_seen.n + 1",
        {rc.event().tenant.value(), rc.event().type.value()});
  });
  return p;
}

int main(int argc, char** argv) {
  return sdk::run("hello", {}, build, argc, argv);
}
