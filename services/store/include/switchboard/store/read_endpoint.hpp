#pragma once
// RPC `store.read`: paged reads by stream and by position, for services that
// cannot read the events table directly. Every store instance serves it,
// standbys included (reads need no lock). A large range is read page by page
// with the cursor in each reply, so neither side holds it in memory.
//
// By stream: {"tenant", "stream", "from_version"?: 0, "direction"?: "forward"|"backward",
//             "limit"?: 100}
//   → {"events": [...], "last_version": N|null, "next_version": N|null}
// By position: {"tenant": "acme"|"*", "after"?: 0, "types"?: [...], "correlation_id"?,
//               "recorded_from"?, "recorded_to"?, "limit"?: 500}
//   → {"events": [...], "next_after": N, "head": N}
// A stream of another tenant reads as not found. limit ≤ 1000.

#include <memory>
#include <string>
#include <string_view>

#include "switchboard/broker/options.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/shared/lifecycle.hpp"

namespace sb::store {

inline constexpr const char* kReadService = "store.read";

/// The reply body for a request body (errors as {"error": {...}}).
std::string handle_read(const events::EventReader& reader, std::string_view body);

class ReadEndpoint : public app::Component {
 public:
  ReadEndpoint(broker::ConnectionOptions broker, pg::ConnectOptions database,
               std::size_t workers = 4);
  ~ReadEndpoint() override;
  std::string_view name() const override { return "store-read"; }
  void start() override;
  void stop(Deadline deadline) noexcept override;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::store
