-- Last-seen per instance, fed by every registry replica's batched flush of
-- the heartbeats it received. Not part of the registry's projection: a
-- heartbeat is a transient signal, not an event, so a rebuild of the read
-- model from the store neither needs nor touches this table.
CREATE TABLE registry_heartbeats (
  instance_id text        PRIMARY KEY,
  last_seen   timestamptz NOT NULL
);
