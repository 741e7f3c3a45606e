// execute(): load, decide, append with the expected version, retry on
// conflict; answered from the stream when the command was applied before.
#include "switchboard/sdk/aggregate.hpp"

#include <stdexcept>

#include "switchboard/events/reader.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::sdk {

StoreLoader::StoreLoader(std::shared_ptr<pg::Pool> store, const events::Catalog* catalog,
                         std::size_t page_size)
    : store_(std::move(store)), catalog_(catalog), page_size_(page_size == 0 ? 500 : page_size) {
  if (!store_) throw std::invalid_argument("StoreLoader needs the store's database");
}

std::int64_t StoreLoader::load(std::string_view stream,
                               const std::function<void(const events::Event&)>& each) const {
  events::EventReader reader(*store_, catalog_);
  const events::StreamId id{std::string(stream)};
  std::int64_t from = 0;
  std::int64_t last = -1;
  while (true) {
    auto slice =
        reader.read_stream(id, events::StreamVersion(from), events::Direction::forward, page_size_);
    if (slice.last_version) last = slice.last_version->value();
    for (const auto& e : slice.events) {
      each(e);
      from = e.version.value() + 1;
    }
    if (slice.events.size() < page_size_ || from > last) break;
  }
  return last;
}

Response Executed::response() const {
  switch (kind) {
    case Kind::appended:
    case Kind::failed:
      return outcome.response();
    case Kind::refused:
      return refusal ? *refusal : Response::error(422, "refused", "refused");
    case Kind::nothing:
      break;
  }
  return Response::json("{\"stream\":" + json::quoted(outcome.stream) +
                        ",\"version\":" + std::to_string(version) + "}");
}

void Executed::throw_if_failed() const {
  if (kind != Kind::failed) return;
  throw std::runtime_error("append to " + outcome.stream + " failed: " + outcome.code + ": " +
                           outcome.message);
}

namespace detail {

Executed execute(CommandContext& ctx, const StreamLoader& loader, std::string_view stream,
                 const std::function<void()>& reset,
                 const std::function<void(const events::Event&)>& fold,
                 const std::function<Decision()>& decide, const ExecuteOptions& options) {
  const std::uint32_t base = ctx.next_event_index();
  const int attempts = std::max(1, options.max_attempts);
  Executed out;
  out.outcome.stream = std::string(stream);
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    out.attempts = attempt;
    ctx.rewind_event_index(base);
    reset();
    // The events this command appended before, if it did: they carry the
    // ids derived from its id, in order, from `base` on.
    std::uint32_t next = base;
    auto next_id = ctx.event_id(next);
    std::vector<const events::Event*> mine;
    std::vector<events::Event> kept;  // copies (the loader's events are transient)
    const std::int64_t version = loader.load(stream, [&](const events::Event& e) {
      if (next_id && e.id == *next_id) {
        kept.push_back(e);
        ++next;
        next_id = ctx.event_id(next);
      }
      fold(e);
    });
    out.version = version;
    if (!kept.empty()) {
      ctx.rewind_event_index(next);
      AppendOutcome& o = out.outcome;
      o.ok = true;
      o.duplicate = true;
      o.created = kept.front().version.value() == 0;
      for (const auto& e : kept) {
        o.positions.push_back(e.position.value());
        o.event_ids.push_back(e.id.value());
      }
      o.position = kept.back().position.value();
      o.version = kept.back().version.value();
      out.kind = Executed::Kind::appended;
      return out;
    }
    Decision d = decide();
    if (d.refusal) {
      out.kind = Executed::Kind::refused;
      out.refusal = std::move(d.refusal);
      return out;
    }
    if (d.events.empty()) {
      out.kind = Executed::Kind::nothing;
      return out;
    }
    const auto expected = version < 0
                              ? events::ExpectedVersion::no_stream()
                              : events::ExpectedVersion::exact(events::StreamVersion(version));
    out.outcome = ctx.append(stream, expected, d.events);
    if (out.outcome.ok) {
      out.kind = Executed::Kind::appended;
      out.version = out.outcome.version;
      return out;
    }
    out.kind = Executed::Kind::failed;
    if (out.outcome.code != "wrong_expected_version") return out;
    log::debug("conflict; deciding again", {{"stream", std::string(stream)}, {"attempt", attempt}});
  }
  ctx.rewind_event_index(base);
  return out;
}

}  // namespace detail
}  // namespace sb::sdk
