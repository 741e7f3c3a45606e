#pragma once
// sb-test-plugin: a plugin with one of everything, for end-to-end tests of
// the edge and the SDK. Behaviour is identical over both transports.
//
// Keys (SB_* env as every process): plugin.name ("testsvc"), plugin.version
// ("1.0.0"), plugin.transport (amqp | http), plugin.http_port (0: any),
// http.port (admin: /health /ready /metrics, POST /control/pause,
// POST /control/resume, GET /control/stats), rabbitmq.url, postgres.url (its
// read model's tables and the store's events table).
//
// Endpoints (paths after /api/<name>):
//   GET|POST /echo/{id}   {"service","version","id","method","path","route",
//                          "query","tenant","actor","roles","body","x_test"},
//                          header X-Instance: <instance id>
//   GET /public/ping      public: {"pong":true,"version":...}
//   GET /admin/only       roles [admin]: {"ok":true}
//   GET /items/{id}       read model <name>_items (X-Min-Position honoured):
//                          {"id","title","position"} or 404 not_found
//   GET /slow?ms=N        sleeps N ms, then {"slept":N}
//   GET /limited          rate_limit 1/s, burst 2: {"ok":true}
// Commands: <name>.create_item {"id","title"} appends <name>.item.created
// to item-<id> (no_stream: 201, again: 409); <name>.slow_create
// {"id","title","ms"} sleeps, then the same; <name>.reject -> 422
// rule_violated.

#include <memory>
#include <string>

#include "switchboard/sdk/sdk.hpp"

namespace sb::testplugin {

/// What the admin routes expose; shared by the handlers.
struct State;

/// The plugin declared from config (used by main and by tests in-process).
sdk::Plugin make_plugin(const config::Config& cfg);

/// The keys besides sdk::config_schema.
config::Schema extra_keys();

int main(int argc, const char* const* argv);

}  // namespace sb::testplugin
