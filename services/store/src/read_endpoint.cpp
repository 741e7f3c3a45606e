#include "switchboard/store/read_endpoint.hpp"

#include "switchboard/broker/rpc.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::store {
namespace {

constexpr std::int64_t kMaxLimit = 1000;

struct BadRequest {
  std::string message;
  std::string path;
};

std::string error_body(std::string_view code, std::string_view message, std::string_view path) {
  std::string out = "{\"error\":{\"code\":";
  json::append_quoted(out, code);
  out += ",\"message\":";
  json::append_quoted(out, message);
  out += ",\"details\":{\"path\":";
  json::append_quoted(out, path);
  out += "}}}";
  return out;
}

std::size_t limit_of(const rapidjson::Value& req, std::int64_t fallback) {
  auto limit = json::optional_int64(req, "limit").value_or(fallback);
  if (limit < 1 || limit > kMaxLimit) {
    throw BadRequest{"limit must be between 1 and " + std::to_string(kMaxLimit), "/limit"};
  }
  return static_cast<std::size_t>(limit);
}

void append_events(std::string& out, const std::vector<events::Event>& evs) {
  out += "\"events\":[";
  for (std::size_t i = 0; i < evs.size(); ++i) {
    if (i > 0) out += ',';
    out += events::to_json(evs[i]);
  }
  out += ']';
}

std::string read_stream(const events::EventReader& reader, const rapidjson::Value& req,
                        const std::string& tenant) {
  events::StreamId stream(json::require_string(req, "stream"));
  auto from = json::optional_int64(req, "from_version");
  auto direction_text = json::optional_string(req, "direction").value_or("forward");
  if (direction_text != "forward" && direction_text != "backward") {
    throw BadRequest{"direction must be forward or backward", "/direction"};
  }
  auto direction =
      direction_text == "forward" ? events::Direction::forward : events::Direction::backward;
  auto start = from ? *from : (direction == events::Direction::forward ? 0 : INT64_MAX);
  if (start < 0) throw BadRequest{"from_version must be >= 0", "/from_version"};
  auto slice =
      reader.read_stream(stream, events::StreamVersion(start), direction, limit_of(req, 100));
  if (!slice.events.empty() && slice.events.front().tenant.value() != tenant) {
    return error_body("stream_not_found", "no such stream for this tenant", "/stream");
  }
  std::string out = "{";
  append_events(out, slice.events);
  out += ",\"last_version\":";
  out += slice.last_version ? std::to_string(slice.last_version->value()) : "null";
  out += ",\"next_version\":";
  if (slice.events.empty()) {
    out += "null";
  } else {
    auto v = slice.events.back().version.value();
    out += direction == events::Direction::forward ? std::to_string(v + 1)
                                                   : (v == 0 ? "null" : std::to_string(v - 1));
  }
  return out + "}";
}

std::string read_all(const events::EventReader& reader, const rapidjson::Value& req,
                     const std::string& tenant) {
  events::Filter filter;
  if (tenant != "*") filter.tenant = events::TenantId(tenant);
  if (const auto* types = json::find(req, "types"); types != nullptr && !types->IsNull()) {
    if (!types->IsArray())
      throw BadRequest{"types must be an array of types or patterns", "/types"};
    for (const auto& t : types->GetArray()) {
      if (!t.IsString()) throw BadRequest{"types must be strings", "/types"};
      filter.types.emplace_back(t.GetString(), t.GetStringLength());
    }
  }
  if (auto c = json::optional_string(req, "correlation_id"))
    filter.correlation_id = events::CorrelationId(*c);
  if (auto f = json::optional_string(req, "recorded_from"))
    filter.recorded_from = events::parse_rfc3339(*f);
  if (auto t = json::optional_string(req, "recorded_to"))
    filter.recorded_to = events::parse_rfc3339(*t);
  auto after = json::optional_int64(req, "after").value_or(0);
  if (after < 0) throw BadRequest{"after must be >= 0", "/after"};
  filter.validate();
  auto page = reader.read_all(events::Position(after), filter, limit_of(req, 500));
  std::string out = "{";
  append_events(out, page.events);
  out += ",\"next_after\":" + std::to_string(page.scanned_to.value());
  out += ",\"head\":" + std::to_string(page.head.value());
  return out + "}";
}

}  // namespace

std::string handle_read(const events::EventReader& reader, std::string_view body) {
  rapidjson::Document req;
  try {
    req = json::parse(body);
  } catch (const json::Error& e) {
    return error_body("malformed_json", e.what(), "");
  }
  if (!req.IsObject()) return error_body("invalid_request", "the body must be a JSON object", "");
  try {
    auto tenant = json::require_string(req, "tenant");
    if (tenant != "*") events::TenantId check(tenant);
    return json::find(req, "stream") != nullptr ? read_stream(reader, req, tenant)
                                                : read_all(reader, req, tenant);
  } catch (const BadRequest& e) {
    return error_body("invalid_request", e.message, e.path);
  } catch (const json::Error& e) {
    return error_body("invalid_request", e.what(), e.path());
  } catch (const events::Error& e) {
    return error_body("invalid_request", e.what(), "");
  }
}

class ReadEndpoint::Impl {
 public:
  Impl(broker::ConnectionOptions broker, pg::ConnectOptions database, std::size_t workers)
      : broker_(std::move(broker)), workers_(workers) {
    pg::PoolOptions po;
    po.connection = std::move(database);
    po.max_size = workers;
    pool_ = std::make_unique<pg::Pool>(po);
    reader_ = std::make_unique<events::EventReader>(*pool_);
  }

  void start() {
    broker::RpcServerOptions ro;
    ro.connection = broker_;
    ro.connection.name = "store-read";
    ro.workers = workers_;
    ro.prefetch = static_cast<std::uint16_t>(workers_ * 2);
    server_ = std::make_unique<broker::RpcServer>(std::move(ro));
    server_->serve(kReadService, [this](const broker::Delivery& d) {
      broker::Message reply;
      reply.body = handle_read(*reader_, d.message.body);
      return reply;
    });
  }

  void stop() { server_.reset(); }

 private:
  broker::ConnectionOptions broker_;
  std::size_t workers_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<events::EventReader> reader_;
  std::unique_ptr<broker::RpcServer> server_;
};

ReadEndpoint::ReadEndpoint(broker::ConnectionOptions broker, pg::ConnectOptions database,
                           std::size_t workers)
    : impl_(std::make_shared<Impl>(std::move(broker), std::move(database), workers)) {}
ReadEndpoint::~ReadEndpoint() {
  impl_->stop();
}
void ReadEndpoint::start() {
  impl_->start();
}
void ReadEndpoint::stop(Deadline) noexcept {
  impl_->stop();
}

}  // namespace sb::store
