#include "switchboard/shared/http_bind.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <memory>
#include <stdexcept>

#include "switchboard/shared/log.hpp"

namespace sb::http {

int bind_server(httplib::Server& server, const std::string& host, int port, std::string_view name) {
  // The last socket the options are applied to is the one that was bound.
  auto listen_fd = std::make_shared<int>(-1);
  server.set_socket_options([listen_fd](int sock) {
    httplib::default_socket_options(sock);
    *listen_fd = sock;
  });
  int bound = port;
  if (port == 0) {
    bound = server.bind_to_any_port(host.c_str());
  } else if (!server.bind_to_port(host.c_str(), port)) {
    bound = -1;
  }
  if (bound <= 0) {
    throw std::runtime_error(std::string(name) + ": cannot bind " + host + ":" +
                             std::to_string(port));
  }
  if (*listen_fd < 0 || ::listen(*listen_fd, kListenBacklog) != 0) {
    log::warn("cannot raise the listen backlog",
              {{"server", std::string(name)}, {"backlog", kListenBacklog}});
  }
  return bound;
}

}  // namespace sb::http
