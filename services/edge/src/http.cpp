#include "switchboard/edge/http.hpp"

#include "switchboard/shared/json.hpp"

namespace sb::edge {

using text::iequals;

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& h : headers) {
    if (h.name == lower_name) return &h.value;
  }
  return nullptr;
}

std::size_t HttpRequest::header_bytes() const {
  std::size_t n = 0;
  for (const auto& h : headers) n += h.name.size() + h.value.size() + 4;
  return n;
}

void HttpResponse::set_header(std::string_view name, std::string value) {
  for (auto& h : headers) {
    if (iequals(h.name, name)) {
      h.value = std::move(value);
      return;
    }
  }
  headers.push_back({std::string(name), std::move(value)});
}

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

bool hop_by_hop(std::string_view n) {
  return n == "connection" || n == "keep-alive" || n == "transfer-encoding" || n == "te" ||
         n == "upgrade" || n == "trailer" || n == "content-length" || n.rfind("proxy-", 0) == 0;
}

std::string error_body(std::string_view code, std::string_view message,
                       std::string_view details_json) {
  std::string out = "{\"error\":{\"code\":";
  json::append_quoted(out, code);
  out += ",\"message\":";
  json::append_quoted(out, message);
  out += ",\"details\":";
  out += details_json.empty() ? std::string_view("{}") : details_json;
  out += "}}";
  return out;
}

HttpResponse error_response(int status, std::string_view code, std::string_view message,
                            std::string_view details_json) {
  HttpResponse r;
  r.status = status;
  r.body = error_body(code, message, details_json);
  r.error_code = code;
  return r;
}

}  // namespace sb::edge
