#pragma once
// The store's broker endpoints: RPC `store.append` (competing consumers on
// rpc.store.append) and the `store.ingest` queue (fire-and-forget appends
// with expected version "any"). They exist only while this store's writer is
// active: a standby consumes nothing, so it can never answer for data it does
// not own.

#include <memory>

#include "switchboard/broker/options.hpp"
#include "switchboard/events/catalog.hpp"
#include "switchboard/shared/lifecycle.hpp"
#include "switchboard/store/writer.hpp"

namespace sb::store {

inline constexpr const char* kAppendService = "store.append";
inline constexpr const char* kIngestQueue = "store.ingest";
inline constexpr const char* kIngestRoutingKey = "store.ingest";

struct EndpointOptions {
  broker::ConnectionOptions broker;
  std::size_t rpc_workers = 4;        // decode and hand over; answers come from the writer
  std::uint16_t rpc_prefetch = 1024;  // appends in flight at most
  std::size_t ingest_workers = 64;
  std::uint16_t ingest_prefetch = 256;
};

class Endpoints : public app::Component {
 public:
  Endpoints(EndpointOptions options, Writer& writer, const events::Catalog& catalog);
  ~Endpoints() override;
  std::string_view name() const override { return "store-endpoints"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;
  app::Health health() const override;

  /// From the writer's listener: (re)consider serving.
  void on_writer_state_changed();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::store
