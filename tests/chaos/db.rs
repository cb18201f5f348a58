//! The databases a scenario runs against: SQLite in its own directory, or a PostgreSQL
//! database created for the scenario (not only a schema: killing connections by `datname`
//! must not touch other tests sharing the server) and dropped afterwards.

use std::net::SocketAddr;

use sqlx::Connection as _;

/// The machine's PostgreSQL, when `LEADRELAY_TEST_DATABASE_URL` is set.
pub fn postgres_base() -> Option<String> {
    std::env::var("LEADRELAY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A database of its own on the machine's PostgreSQL.
pub struct PgDatabase {
    pub name: String,
    /// URL of the new database.
    pub url: String,
    admin_url: String,
}

impl PgDatabase {
    pub async fn create(base: &str) -> PgDatabase {
        let name = format!("chaos_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let mut admin = sqlx::PgConnection::connect(base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        PgDatabase {
            url: with_database(base, &name),
            name,
            admin_url: base.to_string(),
        }
    }

    /// The database's URL through `addr` (a cutting proxy) instead of the server.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
    }

    /// The server's address (host:port of the URL).
    pub async fn server_addr(&self) -> SocketAddr {
        let rest = self.url.split_once("://").unwrap().1;
        let authority = rest.split_once('/').unwrap().0;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host_port = if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:5432")
        };
        tokio::net::lookup_host(host_port)
            .await
            .unwrap()
            .next()
            .unwrap()
    }

    /// Ends every session on the database but this one; returns how many.
    pub async fn terminate_connections(&self) -> usize {
        let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await else {
            return 0;
        };
        let ended: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_all(&mut admin)
        .await
        .unwrap_or_default();
        let _ = admin.close().await;
        ended.iter().filter(|(ended,)| *ended).count()
    }
}

impl Drop for PgDatabase {
    /// Dropped on a thread of its own: Drop cannot await, and the test's runtime may be
    /// the one being dropped.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// `base` with its database name replaced by `name` (query string kept).
fn with_database(base: &str, name: &str) -> String {
    let (head, tail) = base
        .rsplit_once('/')
        .expect("a postgres:// URL with a database");
    let query = tail
        .split_once('?')
        .map_or(String::new(), |(_, q)| format!("?{q}"));
    format!("{head}/{name}{query}")
}

/// `PRAGMA integrity_check` of a SQLite file, read-only; "ok" when sound.
pub async fn sqlite_integrity(path: &std::path::Path) -> String {
    use sqlx::sqlite::SqliteConnectOptions;
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = match sqlx::SqliteConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) => return format!("cannot open: {e}"),
    };
    let rows: Vec<(String,)> = match sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return format!("cannot check: {e}"),
    };
    let _ = conn.close().await;
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("; ")
}
