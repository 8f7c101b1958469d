-- Keys that seal ListOrgs' page tokens (HMAC-SHA256; common/page_token.h), kept here so that
-- every replica seals and opens tokens alike and tokens outlive a restart. The first replica to
-- start makes key 1 (32 random bytes); the others read it. To rotate, insert a key with a higher
-- id (README, "Errors, for integrators"): replicas load it when they start or meet a token sealed
-- with it. Tokens sealed with any key in this table stay valid; retire a key by deleting its row.
CREATE TABLE page_token_keys (
  key_id       integer PRIMARY KEY CHECK (key_id > 0),
  secret       bytea NOT NULL CHECK (length(secret) >= 32),
  create_time  timestamptz NOT NULL DEFAULT now()
);
