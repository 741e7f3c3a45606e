#pragma once
// sb::broker — an AMQP 0-9-1 client for RabbitMQ (rabbitmq-c driven by libuv)
// that never loses a confirmed message.
//
// Threading model
// ---------------
// Every Publisher, Consumer, RpcClient and RpcServer owns its connection(s);
// each connection has three threads of its own:
//   * the loop thread runs a libuv loop and owns the AMQP connection: it
//     watches the socket (uv_poll, level-triggered) and on each wake-up reads
//     the socket once and handles every frame rabbitmq-c has buffered, sends
//     heartbeats from a timer (every 10 ms it also checks deadlines), and
//     takes work from other threads through mutex-guarded inboxes plus a
//     uv_async wake-up. At the end of each callback it sends what the
//     callback produced in one go: acks batched (one cumulative basic.ack for
//     the settled deliveries at the front of the channel), requests and
//     publishes queued by callbacks (a call made from a callback on the loop
//     thread costs no wake-up);
//   * the connector thread opens connections (TCP, login, channel, confirm
//     mode) with deadlines, so a slow or frozen broker never stalls the loop,
//     and hands the ready connection to the loop; it also watches the loop: a
//     socket write that stays blocked past the heartbeat interval gets the
//     socket shut down, which turns a wedged broker into a reconnect;
//   * consumers and RPC servers add a bounded worker pool: handlers never run
//     on the loop thread, so a handler may publish or make an RPC without
//     deadlocking. The loop thread holds an I/O mutex during its callbacks;
//     a worker whose RPC reply is ready while the loop is idle takes it
//     (try_lock, never waits) and publishes the reply and the ack itself,
//     saving a hop to the loop and back. Nothing else borrows the connection:
//     a caller with a deadline must never block on a socket write.
// Public methods are thread-safe. Publish callbacks run on the loop thread
// (keep them short); futures may be waited on from any thread except that
// loop thread.
//
// Failure handling: connection loss is detected by socket errors, missed
// heartbeats, connection.close and channel.close; a connection.blocked pauses
// publishing until unblocked (deadlines still apply). Reconnects back off
// exponentially, then re-declare the remembered topology, resume consumers
// and re-send unconfirmed messages in their original order.
//
// Metrics (Prometheus, label connection=<name>): sb_broker_published_total,
// _confirmed_total, _failed_total, _returned_total, _consumed_total,
// _acked_total, _retried_total, _parked_total, _reconnects_total,
// _rpc_late_replies_total, _rpc_extra_replies_total (RpcResponder answers
// after the first, ignored), sb_broker_rpc_latency_seconds.

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/message.hpp"
#include "switchboard/broker/options.hpp"
#include "switchboard/broker/permissions.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/broker/rpc.hpp"
#include "switchboard/broker/topology.hpp"
