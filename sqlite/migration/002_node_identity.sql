-- The node password that binds a node name to the machine that first
-- joined under it (k3s keeps one per node for the same reason): a second
-- join under a taken name must present it.
CREATE TABLE node_passwords (
	node       TEXT PRIMARY KEY,
	hash       TEXT NOT NULL,
	created_at TEXT NOT NULL
);
