// The RabbitMQ management calls (broker_admin.hpp).
#include "broker_admin.hpp"

#include <httplib.h>

#include "switchboard/shared/json.hpp"

namespace sb::identity {
namespace {

std::string path_segment(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

BrokerAdminResult put(httplib::Client& client, const std::string& path, const std::string& body) {
  auto res = client.Put(path, body, "application/json");
  if (!res) return {false, "PUT " + path + ": " + httplib::to_string(res.error())};
  if (res->status < 200 || res->status >= 300) {
    return {false, "PUT " + path + ": HTTP " + std::to_string(res->status) + " " +
                       res->body.substr(0, 300)};
  }
  return {true, ""};
}

}  // namespace

BrokerAdminResult put_plugin_user(const BrokerAdminOptions& o, const std::string& user,
                                  const std::string& password, const std::string& vhost,
                                  const broker::Permissions& p) {
  if (o.management_url.empty()) return {false, "rabbitmq.management_url is not set"};
  httplib::Client client(o.management_url);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(o.timeout).count();
  const auto usecs =
      std::chrono::duration_cast<std::chrono::microseconds>(o.timeout).count() % 1000000;
  client.set_connection_timeout(static_cast<time_t>(secs), static_cast<time_t>(usecs));
  client.set_read_timeout(static_cast<time_t>(secs), static_cast<time_t>(usecs));
  client.set_write_timeout(static_cast<time_t>(secs), static_cast<time_t>(usecs));
  client.set_basic_auth(o.user, o.password);
  const auto on_vhost = path_segment(vhost) + "/" + path_segment(user);
  auto r = put(client, "/api/users/" + path_segment(user),
               "{\"password\":" + json::quoted(password) + ",\"tags\":\"\"}");
  if (!r.ok) return r;
  r = put(client, "/api/permissions/" + on_vhost,
          "{\"configure\":" + json::quoted(p.configure) + ",\"write\":" + json::quoted(p.write) +
              ",\"read\":" + json::quoted(p.read) + "}");
  for (const auto& t : p.topics) {
    if (!r.ok) break;
    r = put(client, "/api/topic-permissions/" + on_vhost,
            "{\"exchange\":" + json::quoted(t.exchange) + ",\"write\":" + json::quoted(t.write) +
                ",\"read\":" + json::quoted(t.read) + "}");
  }
  return r;
}

}  // namespace sb::identity
