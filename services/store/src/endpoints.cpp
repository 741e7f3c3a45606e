#include "switchboard/store/endpoints.hpp"

#include <future>
#include <mutex>

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/loop_thread.hpp"
#include "switchboard/store/append_codec.hpp"

namespace sb::store {
namespace {

// Waits for the writer's answer; the writer answers every append exactly once.
AppendResult append_and_wait(Writer& writer, AppendRequest request) {
  auto promise = std::make_shared<std::promise<AppendResult>>();
  auto future = promise->get_future();
  writer.append(std::move(request),
                [promise](AppendResult result) { promise->set_value(std::move(result)); });
  return future.get();
}

}  // namespace

class Endpoints::Impl {
 public:
  Impl(EndpointOptions options, Writer& writer, const events::Catalog& catalog)
      : options_(std::move(options)), writer_(writer), catalog_(catalog) {}

  void start() {
    loop_.start([this] { run(); });
  }

  void stop() {
    loop_.stop();
    close();
  }

  void changed() { loop_.notify(); }

  app::Health health() const {
    std::lock_guard lock(loop_.mutex());
    if (rpc_) return {};
    return {app::HealthState::degraded, "not serving (standby)"};
  }

 private:
  void run() {
    while (loop_.wait_for(std::chrono::milliseconds(200))) {
      bool serving = false;
      {
        std::lock_guard lock(loop_.mutex());
        serving = rpc_ != nullptr;
      }
      if (writer_.active() && !serving) {
        try {
          open();
        } catch (const std::exception& e) {
          log::error("store endpoints cannot start serving", {{"error", e.what()}});
          close();
        }
      } else if (!writer_.active() && serving) {
        log::warn("store writer on standby: no longer serving appends");
        close();
      }
    }
  }

  // Hands the append to the writer and answers when its group commits: no
  // thread waits, and appends in flight are bounded by the RPC prefetch.
  void append(const broker::Delivery& d, broker::RpcResponder responder) {
    auto decoded = decode_append(d.message.body, catalog_);
    if (auto* err = std::get_if<DecodeError>(&decoded)) {
      broker::Message reply;
      reply.body = encode_error(*err);
      responder.reply(std::move(reply));
      return;
    }
    auto& request = std::get<AppendRequest>(decoded);
    stamp_publisher(request, d.message.user_id, false);
    if (auto ms = d.message.header_int(broker::kDeadlineHeader)) {
      request.deadline = std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms));
    }
    writer_.append(std::move(request), [responder](AppendResult result) mutable {
      broker::Message reply;
      reply.body = encode_result(result);
      responder.reply(std::move(reply));
    });
  }

  void ingest(const broker::Delivery& d) {
    auto decoded = decode_append(d.message.body, catalog_);
    if (auto* err = std::get_if<DecodeError>(&decoded)) {
      // Bad input never becomes good: park it with the reason at once.
      throw broker::PermanentError(err->code + ": " + err->message +
                                   (err->path.empty() ? "" : " at " + err->path));
    }
    auto& req = std::get<AppendRequest>(decoded);
    req.expected = events::ExpectedVersion::any();
    stamp_publisher(req, d.message.user_id, true);
    auto result = append_and_wait(writer_, std::move(req));
    switch (result.kind) {
      case AppendResult::Kind::appended:
      case AppendResult::Kind::duplicate:
        return;  // ack
      case AppendResult::Kind::unavailable:
        throw std::runtime_error("store unavailable: " + result.message);  // retried later
      case AppendResult::Kind::conflict:
      case AppendResult::Kind::rejected:
        throw broker::PermanentError(result.code + ": " + result.message);
    }
  }

  void open() {
    // Ingest first: if anything here fails, no RPC server has taken requests
    // yet (tearing one down would drop what its auto-delete queue holds).
    broker::ConsumerOptions co;
    co.connection = options_.broker;
    co.connection.name = "store-ingest";
    co.workers = options_.ingest_workers;
    co.topology = broker::platform_topology();
    auto consumer = std::make_unique<broker::Consumer>(std::move(co));
    broker::QueueSpec queue;
    queue.name = kIngestQueue;
    queue.durable = true;
    broker::Topology bind;
    bind.queues.push_back(queue);
    bind.bindings.push_back({kIngestQueue, broker::kIngestExchange, kIngestRoutingKey});
    consumer->declare(bind);
    broker::ConsumeOptions opts;
    opts.prefetch = options_.ingest_prefetch;
    opts.retry.delays = {std::chrono::seconds(1), std::chrono::seconds(5),
                         std::chrono::seconds(30)};
    consumer->consume(queue, opts, [this](const broker::Delivery& d) { ingest(d); });

    broker::RpcServerOptions ro;
    ro.connection = options_.broker;
    ro.connection.name = "store-rpc";
    ro.workers = options_.rpc_workers;
    ro.prefetch = options_.rpc_prefetch;
    auto rpc = std::make_unique<broker::RpcServer>(std::move(ro));
    rpc->serve_async(kAppendService, [this](const broker::Delivery& d, broker::RpcResponder r) {
      append(d, std::move(r));
    });

    std::lock_guard lock(loop_.mutex());
    rpc_ = std::move(rpc);
    ingest_ = std::move(consumer);
    log::info("store serving appends", {{"rpc", kAppendService}, {"queue", kIngestQueue}});
  }

  void close() {
    std::unique_ptr<broker::RpcServer> rpc;
    std::unique_ptr<broker::Consumer> ingest;
    {
      std::lock_guard lock(loop_.mutex());
      rpc.swap(rpc_);
      ingest.swap(ingest_);
    }
    // Destroying them stops consuming; unacked deliveries go back to the queue.
  }

  EndpointOptions options_;
  Writer& writer_;
  const events::Catalog& catalog_;
  std::unique_ptr<broker::RpcServer> rpc_;
  std::unique_ptr<broker::Consumer> ingest_;
  app::LoopThread loop_;  // guards rpc_/ingest_; last: joined first
};

Endpoints::Endpoints(EndpointOptions options, Writer& writer, const events::Catalog& catalog)
    : impl_(std::make_shared<Impl>(std::move(options), writer, catalog)) {}
Endpoints::~Endpoints() {
  impl_->stop();
}
void Endpoints::start() {
  impl_->start();
}
void Endpoints::stop(Deadline) noexcept {
  impl_->stop();
}
app::Health Endpoints::health() const {
  return impl_->health();
}
void Endpoints::on_writer_state_changed() {
  impl_->changed();
}

}  // namespace sb::store
