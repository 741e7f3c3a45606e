#pragma once
// Shared helpers of the broker integration tests.

#include "switchboard/broker/broker.hpp"
#include "switchboard/testing/servers.hpp"

#include <chrono>
#include <string>

namespace sb::broker::test {

using namespace std::chrono_literals;

inline ConnectionOptions connection(const std::string& url, const std::string& name) {
  ConnectionOptions o;
  o.url = url;
  o.name = name;
  o.heartbeat = std::chrono::seconds(2);
  o.connect_timeout = 2000ms;
  o.reconnect_min = 100ms;
  o.reconnect_max = 1000ms;
  return o;
}

inline Message json(std::string body) {
  Message m;
  m.body = std::move(body);
  m.message_id = new_id();
  return m;
}

inline double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace sb::broker::test
