-- The event store. Written by the single active store process only.
-- position: global, gap-free in commit order, assigned by the writer.
-- version: the event's index in its stream (0-based).
CREATE TABLE events (
  position       bigint      PRIMARY KEY,
  id             uuid        NOT NULL,
  stream         text        NOT NULL,
  version        bigint      NOT NULL,
  type           text        NOT NULL,
  schema_version integer     NOT NULL,
  tenant         text        NOT NULL,
  occurred_at    timestamptz NOT NULL,
  recorded_at    timestamptz NOT NULL,
  correlation_id text,
  causation_id   text,
  actor          text,
  data           jsonb       NOT NULL,
  meta           jsonb       NOT NULL DEFAULT '{}'::jsonb,
  CONSTRAINT events_id_unique UNIQUE (id),
  CONSTRAINT events_stream_version_unique UNIQUE (stream, version),
  CONSTRAINT events_position_positive CHECK (position > 0),
  CONSTRAINT events_version_nonnegative CHECK (version >= 0)
);
-- Readers filter by type and tenant while walking positions; auditors ask
-- for one business flow; time travel walks recorded_at, which follows
-- position order (BRIN fits a monotonic column and costs little to insert).
CREATE INDEX events_type_position ON events (type, position);
CREATE INDEX events_tenant_position ON events (tenant, position);
CREATE INDEX events_correlation ON events (correlation_id, position) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);

CREATE TABLE streams (
  stream          text        PRIMARY KEY,
  tenant          text        NOT NULL,
  last_version    bigint      NOT NULL,
  last_position   bigint      NOT NULL,
  -- Logical truncation: versions below this are hidden; the scavenger
  -- deletes them later.
  truncate_before bigint      NOT NULL DEFAULT 0,
  max_count       bigint,
  max_age_seconds bigint,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Named positions the store keeps: 'published' is the contiguous prefix of
-- positions the broker confirmed on sb.events.
CREATE TABLE store_positions (
  name     text   PRIMARY KEY,
  position bigint NOT NULL
);
INSERT INTO store_positions (name, position) VALUES ('published', 0);
