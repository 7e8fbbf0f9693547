-- Installed plugins. Several versions of one plugin id may be installed; exactly one of them
-- is active (used by installations) until an admin switches.
CREATE TABLE plugins (
    plugin_id      TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('social', 'helpdesk')),
    contract       TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    -- The manifest as the host parsed it (JSON), and the http-hosts entries an admin approved.
    manifest_json  TEXT    NOT NULL,
    approved_hosts TEXT    NOT NULL,
    -- The component itself, so any host sharing the database can load it.
    wasm           BLOB    NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT FALSE,
    installed_at   TEXT    NOT NULL,
    PRIMARY KEY (plugin_id, version)
);

CREATE UNIQUE INDEX plugins_one_active_version ON plugins (plugin_id) WHERE active;
