//! PostgreSQL over TLS, verified: `sslmode=verify-full` against the server's CA, when
//! `LEADRELAY_TEST_DATABASE_TLS_URL` names such a URL (`.ci/postgres-tls.sh` sets the
//! machine's PostgreSQL up for it).

use leadrelay::store::{Store, isolated_postgres_url};
use sqlx::Connection as _;

fn tls_url() -> Option<String> {
    let url = std::env::var("LEADRELAY_TEST_DATABASE_TLS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("LEADRELAY_TEST_DATABASE_TLS_URL is not set: PostgreSQL over TLS not tested");
    }
    url
}

/// The store migrates, writes and reads over a verified TLS connection, and the server says
/// the session is encrypted.
#[tokio::test]
async fn the_store_works_over_verified_tls() {
    let Some(base) = tls_url() else { return };
    assert!(base.contains("sslmode=verify-full"), "{base}");
    let url = isolated_postgres_url(&base).await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    store.ping().await.unwrap();
    let target = crate::harness::vehicle("T-TLS-1", "浙B12345");
    store
        .upsert_target(&target, chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        store
            .all_targets()
            .await
            .unwrap()
            .iter()
            .any(|t| t.target_id == "T-TLS-1")
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted);
}

/// A server whose certificate the given CA did not sign is refused, not trusted silently.
#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let Some(base) = tls_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.crt");
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another CA", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (before, _) = base
        .split_once("sslrootcert=")
        .expect("the URL names its CA");
    let url = format!("{before}sslrootcert={}", other_ca.display());
    let err = match Store::connect(&url).await {
        Ok(_) => panic!("connected to a server the CA did not sign"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
}
