#pragma once
// The edge's own view of an HTTP exchange: what the filters, the router and
// the forwarders work on. The HTTP server library stays behind edge.cpp, so
// every filter is a plain function of these types and is unit-tested alone.

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "switchboard/shared/text.hpp"

namespace sb::edge {

struct Header {
  std::string name;  // lower-case
  std::string value;
};

struct HttpRequest {
  std::string method;  // upper-case
  std::string path;    // raw: percent-encoding kept
  std::string query;   // raw, without '?'
  std::vector<Header> headers;
  std::string body;
  std::string remote_addr;

  /// The first header of that (lower-case) name.
  const std::string* header(std::string_view lower_name) const;
  /// Total bytes of the header block as received (names, values, ": ", CRLF).
  std::size_t header_bytes() const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<Header> headers;
  std::string body;
  /// When set, the body is produced by calling this with a writer (chunked
  /// transfer) instead of `body`: the writer returns false once the client is
  /// gone, and the producer must then stop. Memory stays bounded by what the
  /// producer holds at once.
  std::function<void(const std::function<bool(std::string_view)>& write)> stream;
  /// The platform error code when the edge itself answered with an error
  /// (error_response): counted in /metrics by code; never sent as a header.
  std::string error_code;

  /// Replaces a header of that name (case-insensitive).
  void set_header(std::string_view name, std::string value);
  const std::string* header(std::string_view name) const;
};

/// The platform's error body: {"error":{"code","message","details"}}.
/// `details_json` must be a JSON object ("{}" when there is nothing to add).
std::string error_body(std::string_view code, std::string_view message,
                       std::string_view details_json = "{}");
HttpResponse error_response(int status, std::string_view code, std::string_view message,
                            std::string_view details_json = "{}");

/// Thrown inside the edge's handlers to answer with an error.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string code, const std::string& message,
            std::string details_json = "{}")
      : std::runtime_error(message),
        status_(status),
        code_(std::move(code)),
        details_(std::move(details_json)) {}
  int status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }
  const std::string& details() const noexcept { return details_; }
  HttpResponse response() const { return error_response(status_, code_, what(), details_); }

 private:
  int status_;
  std::string code_;
  std::string details_;
};

/// A header that describes one connection or the message framing, never
/// passed between hops: Connection, Keep-Alive, Transfer-Encoding, TE,
/// Upgrade, Trailer, Proxy-*, and Content-Length (each hop frames its own).
bool hop_by_hop(std::string_view lower_name);

using text::lower;
using text::percent_decode;
using text::query_param;

}  // namespace sb::edge
