//! Unit tests of the database: grant rows and their cache, migrations, a broken file.

use super::*;
use crate::status::GrantStatus;

#[test]
fn grants_round_trip() {
    let db = Db::open_in_memory().unwrap();
    let now = Utc::now();
    let g = GrantRecord {
        resource: "https://api.github.com".into(),
        status: GrantStatus::Connected,
        scopes: vec!["repo".into()],
        connected_at: Some(now),
        last_used_at: None,
        last_error: None,
        updated_at: now,
    };
    db.put_grant(&g).unwrap();
    let mut back = db.grant(&g.resource).unwrap().unwrap();
    assert_eq!(back.scopes, g.scopes);
    back.status = GrantStatus::NeedsReconnect;
    db.put_grant(&back).unwrap();
    assert_eq!(db.grants().unwrap()[0].status, GrantStatus::NeedsReconnect);
    // A writer holding an older copy loses to the newer row.
    let stale = GrantRecord {
        status: GrantStatus::Connected,
        updated_at: back.updated_at + chrono::Duration::seconds(1),
        ..back.clone()
    };
    assert!(
        !db.put_grant_if_unchanged(&stale, g.updated_at - chrono::Duration::seconds(1))
            .unwrap()
    );
    assert_eq!(
        db.grant(&g.resource).unwrap().unwrap().status,
        GrantStatus::NeedsReconnect,
        "cached read sees the unchanged row"
    );
    assert!(db.put_grant_if_unchanged(&stale, back.updated_at).unwrap());
    assert_eq!(
        db.grant(&g.resource).unwrap().unwrap().status,
        GrantStatus::Connected,
        "a write is visible through the cache at once"
    );
    assert!(db.grant("https://nope").unwrap().is_none());
}

#[test]
fn migrations_are_idempotent_and_reject_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    Db::open(&path).unwrap().set_setting("k", &1).unwrap();
    let db = Db::open(&path).unwrap();
    assert_eq!(db.setting::<i32>("k").unwrap(), Some(1));
    drop(db);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(Db::open(&path).is_err());
}

#[test]
fn garbage_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    std::fs::write(&path, b"this is not sqlite at all, not even close......").unwrap();
    assert!(matches!(Db::open(&path), Err(DbError::Open { .. })));
}
