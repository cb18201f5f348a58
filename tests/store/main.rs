//! The store against real databases: SQLite in a temporary file, and PostgreSQL in a schema
//! of its own when `LEADRELAY_TEST_DATABASE_URL` is set. Each test runs once per backend, as
//! its own test case (`sqlite::name`, `postgres::name`), so a failure names its backend.

/// Declares, for each named `async fn name(db: TestDb)`, a test per backend in the modules
/// `sqlite` and `postgres` of the calling module. Those after `; multi_thread:`
/// run on two worker threads.
macro_rules! on_each_backend {
    ($($name:ident),* $(; multi_thread: $($mt:ident),+)? $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::harness::TestDb::sqlite()).await;
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $mt() {
                    super::$mt(crate::harness::TestDb::sqlite()).await;
                }
            )+)?
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = crate::harness::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $mt() {
                    if let Some(db) = crate::harness::TestDb::postgres().await {
                        super::$mt(db).await;
                    }
                }
            )+)?
        }
    };
}

mod audit;
mod border;
mod deadlines;
mod harness;
mod matches;
mod outbox;
mod requests;
mod retention;
mod status;
mod targets;
mod tls;
