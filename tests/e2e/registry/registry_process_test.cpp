// The sb-registry binary: configured from SB_* variables, ready once its
// route table is loaded, routes a registered instance, expires a silent one,
// and exits 0 on SIGTERM.
#include "../../integration/registry/support.hpp"

namespace sb::regtest {
namespace {

TEST(RegistryProcess, RoutesExpiresAndStopsCleanly) {
  const auto db = tst::fresh_database("regp");
  const auto vhost = tst::fresh_vhost("regp");
  StoreProcess store(db, vhost);
  const int port = tst::free_port();
  tst::ChildProcess registry(tst::built_binary("services/registry/sb-registry"), {},
                             {{"SB_POSTGRES_URL", db},
                              {"SB_RABBITMQ_URL", vhost},
                              {"SB_HTTP_PORT", std::to_string(port)},
                              {"SB_REGISTRY_DEFAULT_TTL", "1500ms"},
                              {"SB_LOG_LEVEL", "warn"},
                              {"SB_CONFIG", ""}});
  ASSERT_TRUE(tst::wait_until([&] { return tst::http_get(port, "/ready").status == 200; }, 30s))
      << registry.output();

  Fleet fleet(vhost);
  auto r = make_registration("orders", "1", "o-1", true);
  r.metadata = R"({"heartbeat_interval_ms":500})";
  fleet.add(r, 500ms);
  auto r2 = r;
  r2.instance_id = "o-2";
  fleet.add(r2, 500ms);

  broker::RpcClientOptions o;
  o.connection = amqp(vhost, "test-rpc");
  broker::RpcClient rpc(o);
  auto routes = [&] {
    broker::Message m;
    m.body = "{}";
    return registry::route_table_from_json(
        rpc.call(std::string(registry::kRoutesRpc), m, 5s).get().body);
  };
  ASSERT_TRUE(tst::wait_until([&] { return routed_ids(routes()).size() == 2; }, 15s, 100ms));
  fleet.stop("o-2");
  EXPECT_TRUE(tst::wait_until([&] { return routed_ids(routes()) == std::set<std::string>{"o-1"}; },
                              15s, 100ms));

  EXPECT_NE(tst::http_get(port, "/metrics").body.find("sb_broker"), std::string::npos);
  registry.signal(SIGTERM);
  EXPECT_EQ(registry.wait(15s), 0) << registry.output();
}

}  // namespace
}  // namespace sb::regtest
