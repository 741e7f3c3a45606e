-- Projections (projections/README.md): which generation of each projection
-- serves queries (its views point at that generation's tables) and which one
-- is being rebuilt. One row per projection; every replica and restart agrees
-- through it. A generation's checkpoints are those of the subscription
-- "projection.<name>.g<generation>" in subscription_checkpoints.
CREATE TABLE projection_generations (
  name                  text        PRIMARY KEY,
  serving_generation    integer     NOT NULL,
  serving_fingerprint   text        NOT NULL,
  serving_partitions    integer     NOT NULL,
  building_generation   integer,
  building_fingerprint  text,
  building_partitions   integer,
  rebuild_started_at    timestamptz,
  swapped_at            timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT projection_generations_building CHECK (
    building_generation IS NULL OR building_generation > serving_generation)
);

-- The physical tables each generation created, so that the tables of a
-- generation that no longer serves (or of an abandoned rebuild) are dropped
-- even when the projection's code no longer lists them.
CREATE TABLE projection_tables (
  name       text    NOT NULL,
  generation integer NOT NULL,
  logical    text    NOT NULL,
  physical   text    NOT NULL,
  PRIMARY KEY (name, generation, logical)
);
