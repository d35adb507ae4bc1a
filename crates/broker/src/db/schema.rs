//! The schema: its migrations and the step that applies them when the database opens.

use rusqlite::Connection;

use super::DbError;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE session (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    issuer       TEXT NOT NULL,
    account      TEXT,
    subject      TEXT,
    signed_in_at TEXT NOT NULL,
    status       TEXT NOT NULL,
    last_error   TEXT
);
CREATE TABLE resources (
    resource  TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    api_bases TEXT NOT NULL,
    scopes    TEXT NOT NULL,
    docs_url  TEXT,
    added_at  TEXT NOT NULL
);
CREATE TABLE grants (
    resource     TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    connected_at TEXT,
    last_used_at TEXT,
    last_error   TEXT,
    updated_at   TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE clients (
    name         TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT
);
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    client     TEXT,
    kind       TEXT NOT NULL,
    resource   TEXT,
    method     TEXT,
    host       TEXT,
    path       TEXT,
    status     INTEGER,
    latency_ms INTEGER NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_at ON audit (at);
"#,
    // The resource identifier the session was signed in for: every refresh presents it, so a
    // port change (which changes the default identifier) never costs the sign-in.
    r#"
ALTER TABLE session ADD COLUMN resource TEXT;
"#,
    // Agent authorization: OAuth agent clients, their refresh tokens (hashes only), and what
    // the user lets each agent (OAuth or static) do per provider. Static clients that existed
    // before keep what they had: every provider, read and write ('*').
    r#"
CREATE TABLE agent_clients (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    registration  TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT
);
CREATE TABLE agent_tokens (
    hash       TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    grant_id   TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX agent_tokens_grant ON agent_tokens (grant_id);
CREATE INDEX agent_tokens_client ON agent_tokens (client_id);
CREATE TABLE agent_access (
    client   TEXT NOT NULL,
    resource TEXT NOT NULL,
    access   TEXT NOT NULL,
    PRIMARY KEY (client, resource)
);
INSERT INTO agent_access (client, resource, access) SELECT name, '*', 'write' FROM clients;
"#,
    // How each agent reached the broker: the loopback port or the agent socket (remote agents).
    r#"
ALTER TABLE audit ADD COLUMN via TEXT;
"#,
];

/// Brings the schema up to date; refuses a database written by a newer broker.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(DbError::Sqlite(format!(
            "database schema version {version} is newer than this broker understands"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
