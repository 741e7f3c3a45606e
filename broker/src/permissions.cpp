#include "switchboard/broker/permissions.hpp"

#include <stdexcept>

namespace sb::broker {
namespace {

bool valid_name_chars(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '-'))) return false;
  }
  return true;
}

// Names are [a-z0-9_-]: nothing to escape for a regex.
std::string own_queues(std::string_view n) {
  const std::string name(n);
  return "sub\\." + name + "\\..+|rpc\\." + name + "(\\..+)?|sb\\.head\\." + name +
         "\\..+|sb\\.regreq\\..+|amq\\.gen-.+";
}

// `queues`: more of its own queue patterns (in all three); `configure`,
// `write`, `read`: more alternatives for one of them.
Permissions service_permissions(std::string_view name, const std::string& queues,
                                const std::string& configure, const std::string& write,
                                const std::string& read) {
  const std::string own = own_queues(name) + queues;
  Permissions p;
  p.configure = "^(" + own + configure + ")$";
  p.write = "^(sb\\.ingest|sb\\.signals|sb\\.rpc|sb\\.dlx|amq\\.default|" + own + write + ")$";
  p.read =
      "^(sb\\.events|sb\\.signals|sb\\.rpc|sb\\.dlx|amq\\.rabbitmq\\.reply-to|" + own + read + ")$";
  const std::string keys = "^sub\\." + std::string(name) + "\\..+$";
  p.topics.push_back(TopicPermission{"sb.dlx", keys, keys});
  return p;
}

}  // namespace

std::string_view to_string(PlatformService service) {
  switch (service) {
    case PlatformService::store:
      return "store";
    case PlatformService::registry:
      return "registry";
    case PlatformService::edge:
      return "edge";
    case PlatformService::identity:
      return "identity";
  }
  return "store";
}

std::string platform_user(PlatformService service) {
  return "sb-" + std::string(to_string(service));
}

Permissions platform_permissions(PlatformService service) {
  const std::string name(to_string(service));
  const std::string prefix = "|" + name + "\\..+";
  switch (service) {
    case PlatformService::store:
      return service_permissions(name, prefix, "|sb\\.(events|ingest|signals|rpc|dlx)",
                                 "|sb\\.events", "|sb\\.ingest");
    case PlatformService::edge:
      return service_permissions(name, prefix, "", "", "|sub\\..+\\.parked");
    case PlatformService::registry:
    case PlatformService::identity:
      break;
  }
  return service_permissions(name, prefix, "", "", "");
}

bool valid_plugin_name(std::string_view name) {
  if (!valid_name_chars(name)) return false;
  for (auto reserved : {"store", "registry", "edge", "identity", "sb", "amq"}) {
    if (name == reserved) return false;
  }
  return true;
}

std::string plugin_user(std::string_view name) {
  if (!valid_plugin_name(name)) {
    throw std::invalid_argument("not a valid plugin name for a broker user: '" + std::string(name) +
                                "'");
  }
  return std::string(kPluginUserPrefix) + std::string(name);
}

std::optional<std::string_view> plugin_of_user(std::string_view user) {
  if (user.size() <= kPluginUserPrefix.size() || !user.starts_with(kPluginUserPrefix)) {
    return std::nullopt;
  }
  return user.substr(kPluginUserPrefix.size());
}

Permissions plugin_permissions(std::string_view name) {
  (void)plugin_user(name);  // validates
  return service_permissions(name, "", "", "", "");
}

}  // namespace sb::broker
