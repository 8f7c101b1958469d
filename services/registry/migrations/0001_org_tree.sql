-- The org tree, its change feed, and idempotency of creates.
--
-- Each org stores its materialised path ('/1/5/23/': ids from the root down to itself) in the C
-- collation, so a subtree is one index range (path LIKE '/1/5/%') in tree order, and a keyset page
-- continues with path > last_path.

CREATE SEQUENCE org_id_seq;

CREATE TABLE orgs (
  id                   bigint PRIMARY KEY,
  code                 text UNIQUE,
  name                 text NOT NULL,
  parent_id            bigint REFERENCES orgs (id),
  kind                 smallint NOT NULL CHECK (kind BETWEEN 1 AND 4),
  joint                boolean NOT NULL DEFAULT false,
  domain               smallint NOT NULL CHECK (domain BETWEEN 1 AND 9),
  region_code          text NOT NULL CHECK (region_code ~ '^[0-9]{6}$'),
  status               smallint NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
  established_on       date,
  depth                integer NOT NULL CHECK (depth >= 0),
  path                 text COLLATE "C" NOT NULL UNIQUE,
  version              bigint NOT NULL DEFAULT 1,
  revision             bigint NOT NULL,
  create_time          timestamptz NOT NULL DEFAULT now(),
  update_time          timestamptz NOT NULL DEFAULT now(),
  dissolve_time        timestamptz,
  dissolve_reason      text,
  create_request_id    text UNIQUE,
  create_request_hash  text,
  CHECK (joint = false OR kind = 3),
  CHECK ((parent_id IS NULL) = (depth = 0))
);

CREATE INDEX orgs_parent_status ON orgs (parent_id, status);

-- One row, locked by every write transaction: revisions are handed out in commit order, so a
-- follower that has seen revision N never later finds a committed change below N.
CREATE TABLE feed_head (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  revision   bigint NOT NULL
);
INSERT INTO feed_head (revision) VALUES (0);

-- The change feed: one row per org per change, with the org as it was after the change.
CREATE TABLE org_changes (
  revision             bigint PRIMARY KEY,
  change_type          smallint NOT NULL CHECK (change_type BETWEEN 1 AND 4),
  change_time          timestamptz NOT NULL DEFAULT now(),
  previous_parent_id   bigint,
  previous_path        text COLLATE "C",
  id                   bigint NOT NULL,
  code                 text,
  name                 text NOT NULL,
  parent_id            bigint,
  kind                 smallint NOT NULL,
  joint                boolean NOT NULL,
  domain               smallint NOT NULL,
  region_code          text NOT NULL,
  status               smallint NOT NULL,
  established_on       date,
  depth                integer NOT NULL,
  path                 text COLLATE "C" NOT NULL,
  version              bigint NOT NULL,
  create_time          timestamptz NOT NULL,
  update_time          timestamptz NOT NULL,
  dissolve_time        timestamptz,
  dissolve_reason      text
);
