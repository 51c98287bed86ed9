-- Every API object, as JSON. rv is the store revision of its last write.
CREATE TABLE objects (
	kind      TEXT NOT NULL,
	namespace TEXT NOT NULL,
	name      TEXT NOT NULL,
	uid       TEXT NOT NULL,
	rv        INTEGER NOT NULL,
	data      BLOB NOT NULL,
	PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;

-- The store revision: increases with every write, survives restarts.
CREATE TABLE revision (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	rv INTEGER NOT NULL
);
INSERT INTO revision (id, rv) VALUES (1, 0);

-- Bearer tokens (admin, join); only SHA-256 hashes are kept.
CREATE TABLE tokens (
	id          TEXT PRIMARY KEY,
	kind        TEXT NOT NULL,
	hash        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	expires_at  TEXT
);

-- Per-node MQTT credentials issued at join (SHA-256 of the password).
CREATE TABLE node_credentials (
	node       TEXT PRIMARY KEY,
	hash       TEXT NOT NULL,
	created_at TEXT NOT NULL
);
