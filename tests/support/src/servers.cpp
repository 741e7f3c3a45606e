#include "switchboard/testing/servers.hpp"

#include <httplib.h>
#include <pqxx/pqxx>

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <thread>

namespace sb::testing {
namespace {

std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("test servers: cannot read " + path);
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

Servers load() {
  const char* pointer = std::getenv("SB_TEST_SERVERS_POINTER");
  if (pointer == nullptr) {
    throw std::runtime_error(
        "SB_TEST_SERVERS_POINTER is not set: run integration tests through ctest "
        "(they need the sb_servers fixture)");
  }
  std::ifstream p(pointer);
  std::string dir;
  if (!std::getline(p, dir) || dir.empty()) {
    throw std::runtime_error(std::string("test servers are not up (no folder in ") + pointer + ")");
  }
  auto env = read_env_file(dir + "/env");
  Servers s;
  s.dir = dir;
  s.rabbitmq_url = env.at("SB_RABBITMQ_URL");
  s.rabbitmq_mgmt_url = env.at("SB_RABBITMQ_MGMT_URL");
  s.rabbitmq_user = env.at("SB_RABBITMQ_USER");
  s.rabbitmq_password = env.at("SB_RABBITMQ_PASSWORD");
  s.postgres_url = env.at("SB_POSTGRES_URL");
  s.redis_url = env.at("SB_REDIS_URL");
  return s;
}

std::string source_dir() {
  const char* d = std::getenv("SB_SOURCE_DIR");
  if (d == nullptr) throw std::runtime_error("SB_SOURCE_DIR is not set");
  return d;
}

void control(const Servers& s, std::string_view action, std::string_view name) {
  std::string cmd = source_dir() + "/scripts/servers.sh " + std::string(action) + " " +
                    std::string(name) + " '" + s.dir + "'";
  if (run_command(cmd) != 0) throw std::runtime_error("failed: " + cmd);
}

std::string url_encode(std::string_view in) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string json_string(std::string_view in) {
  std::string out = "\"";
  for (char c : in) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

httplib::Client management_client() {
  const auto& s = servers();
  httplib::Client cli(s.rabbitmq_mgmt_url);
  cli.set_basic_auth(s.rabbitmq_user.c_str(), s.rabbitmq_password.c_str());
  cli.set_connection_timeout(10);
  cli.set_read_timeout(30);
  return cli;
}

void put_json(httplib::Client& cli, const std::string& path, const std::string& body) {
  auto r = cli.Put(path.c_str(), body, "application/json");
  if (!r || (r->status != 201 && r->status != 204)) {
    throw std::runtime_error("management API: PUT " + path + " failed" +
                             (r ? ": " + std::to_string(r->status) + " " + r->body : ""));
  }
}

}  // namespace

void Servers::start(std::string_view name) const {
  control(*this, "start", name);
}
void Servers::stop(std::string_view name) const {
  control(*this, "stop", name);
}
void Servers::restart(std::string_view name) const {
  control(*this, "restart", name);
}
void Servers::freeze(std::string_view name) const {
  control(*this, "freeze", name);
}
void Servers::thaw(std::string_view name) const {
  control(*this, "thaw", name);
}

const Servers& servers() {
  static const Servers s = load();
  return s;
}

std::string unique_name(std::string_view prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%012llx",
                static_cast<unsigned long long>(rng() & 0xffffffffffffULL));
  return std::string(prefix) + "_" + buf;
}

std::string fresh_database(std::string_view prefix) {
  const auto& s = servers();
  std::string name = unique_name(prefix);
  pqxx::connection c(s.postgres_url);
  pqxx::nontransaction tx(c);
  tx.exec("CREATE DATABASE " + tx.quote_name(name));
  auto slash = s.postgres_url.rfind('/');
  return s.postgres_url.substr(0, slash + 1) + name;
}

std::string fresh_vhost(std::string_view prefix) {
  const auto& s = servers();
  std::string name = unique_name(prefix);
  httplib::Client cli(s.rabbitmq_mgmt_url);
  cli.set_basic_auth(s.rabbitmq_user.c_str(), s.rabbitmq_password.c_str());
  cli.set_connection_timeout(10);
  cli.set_read_timeout(30);
  auto r = cli.Put(("/api/vhosts/" + url_encode(name)).c_str(), "", "application/json");
  if (!r || (r->status != 201 && r->status != 204)) {
    throw std::runtime_error("cannot create vhost " + name);
  }
  auto p =
      cli.Put(("/api/permissions/" + url_encode(name) + "/" + url_encode(s.rabbitmq_user)).c_str(),
              R"({"configure":".*","write":".*","read":".*"})", "application/json");
  if (!p || (p->status != 201 && p->status != 204)) {
    throw std::runtime_error("cannot grant permissions on vhost " + name);
  }
  return s.rabbitmq_url + url_encode(name);
}

std::string broker_user(std::string_view vhost_url, std::string_view user,
                        std::string_view configure, std::string_view write, std::string_view read,
                        const std::vector<BrokerTopicPermission>& topics) {
  // amqp://user:pass@host:port/<encoded vhost>
  const auto at = vhost_url.rfind('@');
  const auto slash = vhost_url.find('/', at == std::string_view::npos ? 0 : at);
  if (at == std::string_view::npos || slash == std::string_view::npos) {
    throw std::runtime_error("broker_user: not an amqp URL with a vhost");
  }
  const std::string host_port(vhost_url.substr(at + 1, slash - at - 1));
  std::string vhost(vhost_url.substr(slash + 1));
  const std::string vhost_path = vhost.empty() ? "%2F" : vhost;
  const std::string password = unique_name("pw");
  auto cli = management_client();
  const std::string name = url_encode(user);
  put_json(cli, "/api/users/" + name, "{\"password\":" + json_string(password) + ",\"tags\":\"\"}");
  put_json(cli, "/api/permissions/" + vhost_path + "/" + name,
           "{\"configure\":" + json_string(configure) + ",\"write\":" + json_string(write) +
               ",\"read\":" + json_string(read) + "}");
  for (const auto& t : topics) {
    put_json(cli, "/api/topic-permissions/" + vhost_path + "/" + name,
             "{\"exchange\":" + json_string(t.exchange) + ",\"write\":" + json_string(t.write) +
                 ",\"read\":" + json_string(t.read) + "}");
  }
  return "amqp://" + name + ":" + url_encode(password) + "@" + host_port + "/" + vhost;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds deadline,
                std::chrono::milliseconds poll) {
  auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(poll);
  }
}

int run_command(const std::string& command) {
  int rc = std::system(command.c_str());
  if (rc == -1) throw std::runtime_error("cannot run: " + command);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

}  // namespace sb::testing
