-- What happened to each installed plugin version, for admins: installs, and rebuilt components
-- swapped in under the same version during development (`plugin install --replace --dev`).
CREATE TABLE plugin_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id   TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    event       TEXT    NOT NULL CHECK (event IN ('installed', 'replaced-dev')),
    old_sha256  TEXT,
    new_sha256  TEXT    NOT NULL,
    at          TEXT    NOT NULL
);
CREATE INDEX plugin_history_by_plugin ON plugin_history (plugin_id, id);
