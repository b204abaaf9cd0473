//! What only the PostgreSQL backend has: schema migrations, several processes on one
//! database, and a database that goes away and comes back.

use std::sync::Arc;

use akte_core::backend::{BackendError, FaultKind};
use akte_core::store::{Store, StoreOptions};
use akte_postgres::{PgBackend, PgOptions, SCHEMA_VERSION};
use akte_tests::append_document;
use akte_tests::pg::{shared, PgServer};

fn connect(url: &str) -> Arc<PgBackend> {
    PgBackend::connect(url, PgOptions::default()).expect("connect")
}

#[test]
fn an_older_schema_is_upgraded_and_a_newer_one_refused() {
    let pg = shared();
    let url = pg.fresh_database();
    let db = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    // A database as the first release left it: schema version 1, a tenant with entries.
    {
        let old = PgBackend::connect_at(&url, PgOptions::default(), 1).unwrap();
        assert_eq!(
            pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
            "1"
        );
        assert!(
            pg.psql(&db, "SELECT 1 FROM akte_objects").is_err(),
            "no content tables at 1"
        );
        let _ = old;
    }
    // This build upgrades it and works on it.
    let backend = connect(&url);
    assert_eq!(
        pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
        SCHEMA_VERSION.to_string()
    );
    let store = Store::open(backend, StoreOptions::default()).unwrap();
    let t = store.create_tenant("gemeinde").unwrap();
    append_document(&t, "clerk:c", "a", b"nach dem Upgrade", b"{}").unwrap();
    drop(t);
    drop(store);
    // Connecting again changes nothing.
    connect(&url);
    // A schema written by a newer akte is refused with a clear error, and left alone.
    pg.psql(&db, "UPDATE akte_schema SET version = 99").unwrap();
    let err = PgBackend::connect(&url, PgOptions::default()).unwrap_err();
    assert!(
        matches!(err, BackendError::UnsupportedFormat { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("99") && text.contains("newer"), "{text}");
    assert_eq!(
        pg.psql(&db, "SELECT version FROM akte_schema").unwrap(),
        "99"
    );
}

#[test]
fn bad_connection_strings_and_absent_servers_are_clear_errors() {
    let err = PgBackend::connect("postgres://host:notaport/db", PgOptions::default()).unwrap_err();
    assert_eq!(err.kind(), FaultKind::Other, "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::default()
    };
    let url = format!("postgres://akte:geheim@127.0.0.1:{port}/akte?sslmode=disable");
    let err = PgBackend::connect(&url, options).unwrap_err();
    assert_eq!(err.kind(), FaultKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(text.contains("refused"), "says why: {text}");
    assert!(
        !text.contains("geheim"),
        "the password is never shown: {text}"
    );
}

/// The database restarts under load: writes fail with "unavailable" while it is down,
/// nothing acknowledged is lost, nothing half-written stays, and the same store writes
/// again once it is back, without being opened again.
#[test]
fn a_database_restart_fails_writes_cleanly_and_heals() {
    let pg = PgServer::start();
    let url = pg.fresh_database();
    let store = Store::open(connect(&url), StoreOptions::default()).unwrap();
    store.create_tenant("amt").unwrap();
    let mut acked = Vec::new();
    let mut failed = 0u64;
    let mut kinds = std::collections::BTreeSet::new();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut i = 0u32;
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(6) {
                i += 1;
                let t = match store.tenant("amt") {
                    Ok(t) => t,
                    Err(e) => {
                        kinds.insert(format!("{:?}", e.kind()));
                        failed += 1;
                        continue;
                    }
                };
                match append_document(&t, "clerk:c", "d", &i.to_be_bytes(), b"{}") {
                    Ok(a) => acked.push((a.ticket.entry.seq, a.ticket.leaf)),
                    Err(e) => {
                        kinds.insert(format!("{:?}", e.kind()));
                        failed += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(1500));
        pg.stop(false); // immediate: as a crash of the database server
        std::thread::sleep(std::time::Duration::from_millis(1500));
        pg.resume();
        writer.join().unwrap();
    });
    assert!(failed > 0, "writes failed while the database was down");
    assert!(
        kinds.iter().all(|k| k == "Unavailable"),
        "failures are 'unavailable': {kinds:?}"
    );
    let before = acked.len();
    // Writes work again through the same store.
    let t = store.tenant("amt").unwrap();
    let a = append_document(&t, "clerk:c", "d", b"after", b"{}").unwrap();
    acked.push((a.ticket.entry.seq, a.ticket.leaf));
    assert!(before > 0);
    // Every acknowledged entry is there, at its place in one verified chain.
    let fresh = Store::open(connect(&url), StoreOptions::default()).unwrap();
    let t = fresh.tenant("amt").unwrap();
    for (seq, leaf) in &acked {
        assert_eq!(&t.entry(*seq).unwrap().leaf, leaf, "entry {seq}");
    }
    let report = akte_core::verify::verify_store(&fresh, Default::default()).unwrap();
    assert!(
        report.is_clean(),
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    eprintln!(
        "{} entries acknowledged, {failed} writes failed while the database restarted",
        acked.len()
    );
}
