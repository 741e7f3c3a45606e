#pragma once
// Generated API documents: OpenAPI 3.0 for the edge's HTTP surface (the
// platform endpoints, every command of the catalog, every endpoint in the
// route table — plugins included), and AsyncAPI 2.6 for the events and
// commands of the catalog. Both are rebuilt per request from the current
// route table and catalog.

#include <string>

#include "switchboard/registry/route_table.hpp"

namespace sb::edge {

/// `catalog_json` is Catalog::to_json() (docs/protocol.md 8.9).
std::string openapi_json(const registry::RouteTable& table, const std::string& catalog_json);
std::string asyncapi_json(const std::string& catalog_json);

}  // namespace sb::edge
