#pragma once
// The RabbitMQ permissions of every broker user of the platform (protocol
// §11.6): one user per platform process and one per plugin, each allowed
// exactly what the code declares, binds, publishes and consumes. Pure
// functions: scripts/servers.sh applies the platform users' set (a unit test
// checks it matches), the identity service applies a plugin's.
//
// RabbitMQ's rules, for reading the regexes: queue.declare needs configure
// on the queue (and, with a dead-letter exchange, read on the queue and write
// on that exchange); queue.bind needs write on the queue and read on the
// exchange; basic.publish needs write on the exchange (the default exchange
// is `amq.default`); basic.consume and basic.get need read on the queue;
// exchange.declare needs configure on the exchange, unless passive. Only the
// store may configure the platform exchanges; every other user's sessions
// declare them passively (see broker/README.md).
//
// What these regexes cannot stop: write on `amq.default` (needed for RPC
// replies and for moving failed messages to retry/parked queues) lets a user
// publish into any queue by name. Consumers that must trust where a message
// came from check its user_id (broker-validated): events on `sub.*` queues
// come from the store's user.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::broker {

/// Topic permissions on one topic exchange: which routing keys a user may
/// publish with (write) and bind with (read).
struct TopicPermission {
  std::string exchange;
  std::string write;
  std::string read;
  friend bool operator==(const TopicPermission&, const TopicPermission&) = default;
};

struct Permissions {
  std::string configure;
  std::string write;
  std::string read;
  std::vector<TopicPermission> topics;
  friend bool operator==(const Permissions&, const Permissions&) = default;
};

enum class PlatformService { store, registry, edge, identity };

inline constexpr PlatformService kPlatformServices[] = {
    PlatformService::store, PlatformService::registry, PlatformService::edge,
    PlatformService::identity};

/// "store", "registry", "edge", "identity".
std::string_view to_string(PlatformService service);

/// The platform process's broker user: "sb-<service>".
std::string platform_user(PlatformService service);

/// A platform process's permissions. Each gets what a plugin named like it
/// gets (below) plus its own prefix `<service>.*`, and: store — configure on
/// the five platform exchanges, write on `sb.events` (no one else), read on
/// `sb.ingest`; edge — read on every `sub.*.parked` queue (operator
/// endpoints list, requeue and drop parked messages).
Permissions platform_permissions(PlatformService service);

inline constexpr std::string_view kPluginUserPrefix = "plugin-";

/// True for a plugin name the platform may issue credentials for:
/// [a-z0-9][a-z0-9_-]{0,62}, and not a platform service name (`store`,
/// `registry`, `edge`, `identity`) or `sb`/`amq`, whose queues a plugin's
/// patterns would otherwise cover.
bool valid_plugin_name(std::string_view name);

/// "plugin-<name>"; throws std::invalid_argument for an invalid name.
std::string plugin_user(std::string_view name);

/// The plugin's name for a "plugin-<name>" user; nullopt for any other user.
std::optional<std::string_view> plugin_of_user(std::string_view user);

/// A plugin's permissions (throws std::invalid_argument for an invalid
/// name). With N the name:
///   configure  ^(sub\.N\..+|rpc\.N(\..+)?|sb\.head\.N\..+|sb\.regreq\..+|amq\.gen-.+)$
///   write      ^(sb\.ingest|sb\.signals|sb\.rpc|sb\.dlx|amq\.default|<the configure set>)$
///   read       ^(sb\.events|sb\.signals|sb\.rpc|sb\.dlx|amq\.rabbitmq\.reply-to|<the configure
///   set>)$ topic sb.dlx: write and read ^sub\.N\..+$
/// `sub.N.*`: push subscriptions with their overflow, retry and parked queues
/// (the main queue dead-letters to sb.dlx); `rpc.N.<version>`: the SDK's RPC
/// queue; `sb.head.N.*`: head-signal queues; `sb.regreq.<instance>`:
/// register-request queues (exclusive, named by instance id).
Permissions plugin_permissions(std::string_view name);

}  // namespace sb::broker
