#pragma once
// Binding a cpp-httplib server the way every Switchboard HTTP server needs
// it. The system's compiled cpp-httplib 0.11 listens with a backlog of 5: a
// burst of new connections (64 clients connecting at once) overflows the
// accept queue whenever the accepting thread is not scheduled at once, and
// the dropped handshakes come back only with the kernel's SYN and data
// retransmits, 1 s and 3 s later — seconds of latency that no handler ever
// sees. bind_server listens again with kListenBacklog (on Linux, listen() on
// a listening socket only changes its backlog).
//
// httplib stays out of this header: only its Server is named.

#include <string>
#include <string_view>

namespace httplib {
class Server;
}

namespace sb::http {

inline constexpr int kListenBacklog = 1024;

/// Binds `server` to host:port (0: a free port) with the larger backlog and
/// returns the port; the caller then runs server.listen_after_bind(). Throws
/// std::runtime_error ("<name>: cannot bind host:port") when it cannot bind.
/// Replaces the server's socket options with httplib's defaults plus
/// remembering the listening socket.
int bind_server(httplib::Server& server, const std::string& host, int port, std::string_view name);

}  // namespace sb::http
