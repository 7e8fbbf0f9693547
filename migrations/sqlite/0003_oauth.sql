-- OAuth2 connections of installations whose plugin declares an `oauth2-spec`, and the
-- authorization requests an admin started in a browser.

-- One installation's grant: the tokens the provider issued and whether it must be connected
-- again. A row with `needs_reauth` stops the installation's jobs and deliveries.
CREATE TABLE oauth_grants (
    installation_id TEXT    PRIMARY KEY REFERENCES installations (id),
    -- authorization-code-pkce | jwt-bearer | client-credentials (how the grant is renewed),
    -- or `none` while it was never connected.
    flow            TEXT    NOT NULL,
    -- AEAD-encrypted JSON with the access and refresh tokens and the extra fields of the token
    -- response (see secrets.rs); NULL while it was never connected.
    tokens          BLOB,
    -- When the access token expires, in ms since the Unix epoch; NULL when the provider did
    -- not say (Salesforce): it is then used until an API refuses it.
    expires_at      BIGINT,
    -- When the current access token was issued.
    issued_at       BIGINT,
    -- Granted scopes, space-separated.
    scopes          TEXT    NOT NULL DEFAULT '',
    -- Bumped with every new token, so a writer holding an older grant cannot overwrite it.
    generation      BIGINT  NOT NULL DEFAULT 0,
    needs_reauth    BOOLEAN NOT NULL DEFAULT FALSE,
    reauth_error    TEXT,
    connected_at    BIGINT,
    updated_at      BIGINT  NOT NULL
);

-- Authorization requests in flight: the `state` the admin's browser brings back to
-- /oauth/callback. Each is taken (deleted) once, and is refused after `expires_at`.
CREATE TABLE oauth_states (
    state           TEXT    PRIMARY KEY,
    installation_id TEXT    NOT NULL REFERENCES installations (id),
    -- AEAD-encrypted PKCE code verifier.
    verifier        BLOB    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL
);
CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

-- Installations whose jobs and deliveries may run: enabled, and not waiting for OAuth2
-- reauthorization.
CREATE VIEW active_installations AS
    SELECT i.id FROM installations i
    WHERE i.enabled AND NOT EXISTS (
        SELECT 1 FROM oauth_grants g WHERE g.installation_id = i.id AND g.needs_reauth
    );
