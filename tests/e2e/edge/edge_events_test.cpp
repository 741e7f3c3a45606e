// Events over HTTP on the real stack (issue 7): tenant-scoped queries,
// cursor pages, NDJSON and CSV export, a stream as of a time, correlations,
// and the SSE live tail resuming with Last-Event-ID.
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "edge_stack.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/events/uuid.hpp"

using namespace sb;
using namespace sb::edgetest;

namespace {

class EdgeEvents : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new Stack();
    stack_->plugin("testsvc", "1.0.0", "amqp");
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  Stack& stack() { return *stack_; }
  static std::map<std::string, std::string> as(const std::string& tenant,
                                               std::map<std::string, std::string> extra = {}) {
    auto h = bearer(token("u-" + tenant, tenant, {"user"}));
    h.insert(extra.begin(), extra.end());
    return h;
  }
  /// Creates an item as `tenant`; returns the answer's JSON.
  rapidjson::Document create(const std::string& tenant, const std::string& id,
                             std::map<std::string, std::string> extra = {}) {
    Http h(stack_->edge_port);
    auto r = h.post("/api/v1/commands/testsvc/create_item", R"({"id":")" + id + R"(","title":"t"})",
                    as(tenant, std::move(extra)));
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json();
  }
  static Stack* stack_;
};
Stack* EdgeEvents::stack_ = nullptr;

std::string uid(const char* prefix) {
  auto n = tst::unique_name(prefix);
  for (auto& c : n) {
    if (c == '_') c = '-';
  }
  return n;
}

std::vector<std::string> lines(const std::string& body) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < body.size()) {
    auto nl = body.find('\n', start);
    if (nl == std::string::npos) nl = body.size();
    if (nl > start) out.push_back(body.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

/// A live SSE client on its own thread, collecting event ids.
class SseClient {
 public:
  SseClient(int port, std::map<std::string, std::string> headers, std::string path)
      : thread_([this, port, headers = std::move(headers), path = std::move(path)] {
          httplib::Client c("127.0.0.1", port);
          c.set_read_timeout(30, 0);
          httplib::Headers hs;
          for (const auto& [k, v] : headers) hs.emplace(k, v);
          std::string buf;
          c.Get(path.c_str(), hs, [&](const char* data, size_t n) {
            buf.append(data, n);
            std::size_t end;
            while ((end = buf.find("\n\n")) != std::string::npos) {
              auto frame = buf.substr(0, end);
              buf.erase(0, end + 2);
              if (frame.rfind("id: ", 0) == 0) {
                std::lock_guard lock(mu_);
                ids_.push_back(std::stoll(frame.substr(4, frame.find('\n') - 4)));
                frames_.push_back(frame);
              }
            }
            return !stop_.load();
          });
          done_ = true;
        }) {}
  ~SseClient() { close(); }
  void close() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::int64_t> ids() {
    std::lock_guard lock(mu_);
    return ids_;
  }
  std::vector<std::string> frames() {
    std::lock_guard lock(mu_);
    return frames_;
  }

 private:
  std::mutex mu_;
  std::vector<std::int64_t> ids_;
  std::vector<std::string> frames_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

TEST_F(EdgeEvents, QueriesSeeOnlyTheCallersTenant) {
  const auto a = uid("a");
  const auto g = uid("g");
  auto mine = create("acme", a);
  auto theirs = create("globex", g, {{"X-Correlation-Id", "corr-" + g}});
  Http h(stack().edge_port);
  auto r = h.get("/api/v1/events?type=testsvc.item.created&limit=1000", as("acme"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(a), std::string::npos);
  EXPECT_EQ(r.body.find(g), std::string::npos) << "acme saw globex's event";
  EXPECT_EQ(r.body.find("\"tenant\":\"globex\""), std::string::npos);
  EXPECT_EQ(h.get("/api/v1/events?tenant=globex", as("acme")).status, 403);
  // Another tenant's stream or flow reads as absent: nothing leaks.
  EXPECT_EQ(h.get("/api/v1/streams/item-" + g, as("acme")).status, 404);
  EXPECT_EQ(h.get("/api/v1/streams/item-" + g, as("globex")).status, 200);
  EXPECT_EQ(h.get("/api/v1/correlations/corr-" + g, as("acme")).status, 404);
  auto flow = h.get("/api/v1/correlations/corr-" + g, as("globex"));
  ASSERT_EQ(flow.status, 200) << flow.body;
  EXPECT_EQ(flow.json()["events"].Size(), 1u);
  EXPECT_TRUE(flow.json().HasMember("causation"));
  // NDJSON and CSV exports are scoped the same way.
  auto nd = h.get("/api/v1/events?type=testsvc.item.created",
                  as("acme", {{"Accept", "application/x-ndjson"}}));
  ASSERT_EQ(nd.status, 200) << nd.body;
  EXPECT_EQ(nd.header("Content-Type"), "application/x-ndjson");
  EXPECT_EQ(nd.body.find(g), std::string::npos);
  EXPECT_NE(nd.body.find(a), std::string::npos);
  auto csv = h.get("/api/v1/events?type=testsvc.item.created&format=csv", as("globex"));
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.body.rfind("position,id,stream", 0), 0u);
  EXPECT_EQ(csv.body.find(a), std::string::npos);
  // A super admin not acting for a tenant sees both.
  auto all =
      h.get("/api/v1/events?type=testsvc.item.created&limit=1000", bearer(stack().admin_token()));
  EXPECT_NE(all.body.find(a), std::string::npos);
  EXPECT_NE(all.body.find(g), std::string::npos);
  (void)mine;
  (void)theirs;
}

TEST_F(EdgeEvents, CursorPagesAddUpToTheExport) {
  const auto tenant = "pages" + uid("t").substr(2, 6);
  for (int i = 0; i < 7; ++i) create(tenant, uid("p"));
  Http h(stack().edge_port);
  auto full = lines(h.get("/api/v1/events", as(tenant, {{"Accept", "application/x-ndjson"}})).body);
  ASSERT_EQ(full.size(), 7u);
  std::vector<std::string> paged;
  std::string after = "0";
  for (int guard = 0; guard < 20; ++guard) {
    auto r = h.get("/api/v1/events?limit=3&after=" + after, as(tenant));
    ASSERT_EQ(r.status, 200) << r.body;
    auto d = r.json();
    for (const auto& e : d["events"].GetArray()) paged.push_back(json::to_string(e));
    if (d["events"].Empty()) break;
    after = d["next"].GetString();
  }
  ASSERT_EQ(paged.size(), full.size());
  for (std::size_t i = 0; i < full.size(); ++i) {
    EXPECT_EQ(json::to_string(json::parse(full[i])), paged[i]);
  }
}

TEST_F(EdgeEvents, StreamAsOfATimeIsWhatItWasThen) {
  // 1,000 events in 40 appends over time, straight through the store; after
  // each append the test records the stream's version and the time.
  broker::RpcClientOptions ro;
  ro.connection.url = stack().amqp;
  ro.connection.name = "e2e-asof";
  broker::RpcClient rpc(ro);
  const auto stream = "item-" + uid("asof");
  struct Moment {
    std::string at;
    std::int64_t version;
  };
  std::vector<Moment> moments;
  Http h(stack().edge_port);
  std::int64_t version = -1;
  for (int batch = 0; batch < 40; ++batch) {
    std::string body = R"({"stream":")" + stream + R"(","tenant":"acme","expected_version":)" +
                       (version < 0 ? std::string("\"no_stream\"") : std::to_string(version)) +
                       R"(,"events":[)";
    for (int i = 0; i < 25; ++i) {
      if (i) body += ',';
      body += R"({"id":")" + events::uuid_v4().to_string() +
              R"(","type":"testsvc.item.created","occurred_at":")" +
              events::format_rfc3339_ms(events::now_ms()) + R"(","data":{"id":"x","title":"v)" +
              std::to_string(batch * 25 + i) + R"("}})";
    }
    body += "]}";
    broker::Message m;
    m.body = body;
    auto reply = rpc.call("store.append", m, 10s).get();
    ASSERT_NE(reply.body.find("\"appended\""), std::string::npos) << reply.body;
    version += 25;
    // The moment just after this append: its last event's recorded_at.
    auto s = h.get("/api/v1/streams/" + stream, as("acme"));
    ASSERT_EQ(s.status, 200);
    auto d = s.json();
    const auto& evs = d["events"].GetArray();
    moments.push_back({evs[evs.Size() - 1]["recorded_at"].GetString(), d["version"].GetInt64()});
    ASSERT_EQ(moments.back().version, version);
  }
  for (std::size_t i = 0; i < moments.size(); i += 7) {
    auto r = h.get("/api/v1/streams/" + stream + "?as_of=" + moments[i].at, as("acme"));
    ASSERT_EQ(r.status, 200) << r.body;
    auto d = r.json();
    EXPECT_EQ(d["version"].GetInt64(), moments[i].version) << "as_of " << moments[i].at;
    EXPECT_EQ(static_cast<std::int64_t>(d["events"].Size()), moments[i].version + 1);
  }
  EXPECT_EQ(h.get("/api/v1/streams/" + stream + "?as_of=2000-01-01T00:00:00Z", as("acme")).status,
            404);
  EXPECT_EQ(h.get("/api/v1/streams/" + stream + "?as_of=yesterday", as("acme")).status, 400);
}

TEST_F(EdgeEvents, SseDeliversExactlyTheMatchingLiveEventsAndResumesWithoutGapOrDuplicate) {
  const auto tenant = "sse" + uid("t").substr(2, 6);
  const std::string path = "/api/v1/events/stream?type=testsvc.item.created";
  std::vector<std::int64_t> expected;
  auto client = std::make_unique<SseClient>(stack().edge_port, as(tenant), path);
  // The stream is live once the edge counts the client.
  ASSERT_TRUE(tst::wait_until(
      [&] {
        Http h(stack().edge_port);
        auto m = h.get("/metrics", bearer(stack().admin_token())).body;
        auto at = m.find("\nsb_edge_sse_clients ");
        return at != std::string::npos && m.substr(at + 21, 1) != "0";
      },
      10s));
  for (int i = 0; i < 5; ++i) {
    expected.push_back(create(tenant, uid("s"))["position"].GetInt64());
    create("othertenant", uid("o"));  // never shown to this client
  }
  ASSERT_TRUE(tst::wait_until([&] { return client->ids().size() >= 5; }, 10s))
      << client->ids().size();
  EXPECT_EQ(client->ids(), expected);
  for (const auto& f : client->frames()) {
    EXPECT_NE(f.find("\"tenant\":\"" + tenant + "\""), std::string::npos) << f;
  }
  const auto last = client->ids().back();
  client->close();
  // Missed while away.
  for (int i = 0; i < 3; ++i) expected.push_back(create(tenant, uid("m"))["position"].GetInt64());
  auto again = std::make_unique<SseClient>(
      stack().edge_port, as(tenant, {{"Last-Event-ID", std::to_string(last)}}), path);
  for (int i = 0; i < 2; ++i) expected.push_back(create(tenant, uid("n"))["position"].GetInt64());
  ASSERT_TRUE(tst::wait_until([&] { return again->ids().size() >= 5; }, 10s))
      << again->ids().size();
  auto resumed = again->ids();
  std::vector<std::int64_t> tail(expected.begin() + 5, expected.end());
  EXPECT_EQ(resumed, tail) << "gap or duplicate after Last-Event-ID " << last;
  again->close();
}

TEST_F(EdgeEvents, EventEndpointsAreClosedAndValidated) {
  Http h(stack().edge_port);
  for (const auto* p :
       {"/api/v1/events", "/api/v1/events/stream", "/api/v1/streams/x", "/api/v1/correlations/x"}) {
    auto r = h.get(p);
    EXPECT_EQ(r.status, 401) << p << " " << r.body;
  }
  EXPECT_EQ(h.get("/api/v1/events?type=Bad..Type", as("acme")).status, 400);
  EXPECT_EQ(h.get("/api/v1/events?after=-3", as("acme")).status, 400);
  EXPECT_EQ(h.get("/api/v1/events/stream", as("acme", {{"Last-Event-ID", "x"}})).status, 400);
}
