-- Checkpointed subscriptions: one row per (subscription, partition). The
-- position is written in the same transaction as the subscription's effects.
CREATE TABLE subscription_checkpoints (
  name            text        NOT NULL,
  partition       integer     NOT NULL,
  partitions      integer     NOT NULL,
  position        bigint      NOT NULL DEFAULT 0,
  -- running | parked (stopped on a failure until resumed or reset)
  state           text        NOT NULL DEFAULT 'running',
  last_error      text,
  last_error_at   timestamptz,
  failed_position bigint,
  owner           text,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, partition),
  CONSTRAINT subscription_checkpoints_position CHECK (position >= 0),
  CONSTRAINT subscription_checkpoints_partition CHECK (partition >= 0 AND partition < partitions)
);

-- Events a skip-and-record subscription stepped over after its retries.
CREATE TABLE subscription_skipped (
  name       text        NOT NULL,
  partition  integer     NOT NULL,
  position   bigint      NOT NULL,
  event_id   uuid        NOT NULL,
  event_type text        NOT NULL,
  error      text        NOT NULL,
  skipped_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, partition, position)
);

-- Push subscriptions: event ids a group handled in a transaction (dedupe).
CREATE TABLE processed_events (
  group_name   text        NOT NULL,
  event_id     uuid        NOT NULL,
  position     bigint,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, event_id)
);

-- Push subscriptions: events dropped from a full sub.<group> queue (recorded
-- from sub.<group>.overflow), caught up by re-reading them from the store.
CREATE TABLE push_overflow (
  group_name    text        NOT NULL,
  position      bigint      NOT NULL,
  event_id      uuid        NOT NULL,
  overflowed_at timestamptz NOT NULL DEFAULT now(),
  handled_at    timestamptz,
  attempts      integer     NOT NULL DEFAULT 0,
  last_error    text,
  PRIMARY KEY (group_name, position)
);
CREATE INDEX push_overflow_pending ON push_overflow (group_name, position) WHERE handled_at IS NULL;
