//! Throwaway stores for tests on both backends: a fresh SQLite file and a fresh PostgreSQL
//! database on the running server (`G2P_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Both are removed again: the SQLite file when
//! its [`TestStore`] is dropped, the PostgreSQL database (`DROP DATABASE … WITH (FORCE)`) when
//! its [`PgDatabase`] guard is dropped, which a [`TestStore`] holds. Drops run during a panic's
//! unwinding too, so a failed test cleans up as well; only a killed process leaves
//! `g2p_test_%` databases behind (CI drops those).
//!
//! When PostgreSQL cannot be reached the PostgreSQL half is skipped with a message, unless
//! `G2P_REQUIRE_PG=1` (set by CI), in which case the test fails: the suite is never silently
//! skipped there.

use std::cell::RefCell;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use g2p_domain::Clock;
use g2p_store::db::{ConnectOptions, Store};
use sqlx::Connection;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long dropping a database may take before the guard gives up (and leaves it to CI).
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

fn unique_name() -> String {
    format!("g2p_test_{}", uuid::Uuid::new_v4().simple())
}

fn admin_url() -> String {
    std::env::var("G2P_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn pg_required() -> bool {
    std::env::var("G2P_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// `admin_url` with its database name replaced by `name` (query string kept).
fn database_url(admin_url: &str, name: &str) -> String {
    let scheme_end = admin_url.find("://").map_or(0, |i| i + 3);
    match admin_url.rfind('/') {
        Some(i) if i >= scheme_end => {
            let (base, rest) = admin_url.split_at(i);
            let query = rest.find('?').map_or("", |q| &rest[q..]);
            format!("{base}/{name}{query}")
        }
        _ => format!("{admin_url}/{name}"),
    }
}

/// A new, empty PostgreSQL database on the test server, dropped (with `FORCE`, which ends any
/// connection still open to it) when the guard is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    admin_url: String,
    url: String,
}

impl PgDatabase {
    /// Creates the database; `None` when PostgreSQL is not reachable and not required.
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = admin_url();
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                if pg_required() {
                    panic!("G2P_REQUIRE_PG=1 but PostgreSQL at {admin_url} is not reachable: {e}");
                }
                eprintln!("SKIPPING PostgreSQL half of the test: {admin_url} not reachable ({e})");
                return None;
            }
        };
        let name = unique_name();
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
        {
            panic!("cannot create test database {name}: {e}");
        }
        // Best effort: the database exists either way and the guard drops it.
        let _ = admin.close().await;
        let url = database_url(&admin_url, &name);
        Some(PgDatabase {
            name,
            admin_url,
            url,
        })
    }

    /// The URL of the (unmigrated) database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        drop_database_blocking(&self.admin_url, &self.name);
    }
}

/// A request to the janitor: drop this database, then say how it went.
struct DropRequest {
    admin_url: String,
    name: String,
    done: mpsc::Sender<Result<(), String>>,
}

/// The janitor: one thread for the whole test binary, with a runtime of its own, that drops
/// databases on request. `Drop` is synchronous and may run inside a test's runtime (where
/// blocking on a future panics), after it has shut down, or in a thread's teardown (where
/// spawning threads or runtimes is not safe): sending on a channel works in all three.
fn janitor() -> Result<&'static mpsc::Sender<DropRequest>, String> {
    static JANITOR: OnceLock<Result<mpsc::Sender<DropRequest>, String>> = OnceLock::new();
    JANITOR
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<DropRequest>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("g2p-testkit janitor".into())
                .spawn(move || {
                    while let Ok(req) = rx.recv() {
                        let r = rt.block_on(drop_database(&req.admin_url, &req.name));
                        // The requester may have given up waiting: nothing to tell then.
                        let _ = req.done.send(r);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(tx)
        })
        .as_ref()
        .map_err(Clone::clone)
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), String> {
    let work = async {
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        // FORCE ends connections still open to it (a runner's clone of the store, an app).
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await
    };
    match tokio::time::timeout(DROP_TIMEOUT, work).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("timed out after {DROP_TIMEOUT:?}")),
    }
}

/// Drops `name` through the janitor and waits for it. Never panics: a panic here during a
/// test's unwinding would abort the whole test binary.
fn drop_database_blocking(admin_url: &str, name: &str) {
    let (done, wait) = mpsc::channel();
    let result = janitor().and_then(|j| {
        j.send(DropRequest {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
            done,
        })
        .map_err(|_| "the janitor thread has stopped".to_owned())?;
        wait.recv_timeout(DROP_TIMEOUT + Duration::from_secs(5))
            .map_err(|e| e.to_string())?
    });
    if let Err(e) = result {
        eprintln!("WARNING: test database {name} was not dropped ({e}); CI removes leftovers");
    }
}

thread_local! {
    /// Databases handed out by URL only ([`pg_database_url`]): their guards live until the
    /// thread that asked for them ends. libtest runs each test on a thread of its own, so
    /// that is the end of the test.
    static URL_ONLY_DATABASES: RefCell<Vec<PgDatabase>> = const { RefCell::new(Vec::new()) };
}

/// The URL of a new, empty PostgreSQL database, or `None` when PostgreSQL is not reachable and
/// not required. For callers that can only keep a URL (an app's configuration): the database is
/// dropped when the calling thread ends, i.e. at the end of the test. Best effort: the test
/// binary may exit while its last test threads are still ending, and such a database is left
/// for CI's cleanup. Prefer [`PgDatabase`] or [`pg_store`], whose guards drop it in time.
pub async fn pg_database_url() -> Option<String> {
    let db = PgDatabase::create().await?;
    let url = db.url.clone();
    // `try_with`: during thread teardown the list may already be gone; the guard then drops
    // the database at once, which is what the caller's end would have done anyway.
    if let Err(e) = URL_ONLY_DATABASES.try_with(|dbs| dbs.borrow_mut().push(db)) {
        eprintln!("WARNING: cannot keep test database until the end of the test: {e}");
    }
    Some(url)
}

/// A migrated store that removes its database when dropped. Dereferences to [`Store`], so a
/// test uses it as one (`store.enqueue(…)`, `&store`, `store.clone()` gives a plain `Store`
/// sharing the pools). Clones handed to runners stay usable until the `TestStore` is dropped.
#[derive(Debug)]
pub struct TestStore {
    // Declared first, so dropped first: the store's pools go before the database does.
    store: Store,
    _pg: Option<PgDatabase>,
    _sqlite: Option<SqliteFile>,
}

impl TestStore {
    /// The same test store reading time from `clock` (see [`Store::with_clock`]).
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> TestStore {
        TestStore {
            store: self.store.with_clock(clock),
            _pg: self._pg,
            _sqlite: self._sqlite,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl AsRef<Store> for TestStore {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

/// The SQLite database file and its WAL companions, removed on drop.
#[derive(Debug)]
struct SqliteFile(PathBuf);

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            // Missing companions are normal (no WAL yet); anything else is left to the OS's
            // temp cleaning: not worth failing a test over.
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A migrated store on a new SQLite file in the temp directory.
pub async fn sqlite_store() -> TestStore {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name()));
    let file = SqliteFile(path);
    let url = format!("sqlite://{}", file.0.display());
    match Store::open(&url, &ConnectOptions::default()).await {
        Ok(store) => TestStore {
            store,
            _pg: None,
            _sqlite: Some(file),
        },
        Err(e) => panic!("cannot open test SQLite store at {url}: {e}"),
    }
}

/// A migrated store on a new PostgreSQL database (see [`PgDatabase::create`]).
pub async fn pg_store() -> Option<TestStore> {
    let db = PgDatabase::create().await?;
    match Store::open(db.url(), &ConnectOptions::default()).await {
        Ok(store) => Some(TestStore {
            store,
            _pg: Some(db),
            _sqlite: None,
        }),
        Err(e) => panic!("cannot open test PostgreSQL store: {e}"),
    }
}

/// Every backend a store test must run on: SQLite always, PostgreSQL when reachable (or
/// required). The one way a test runs its body on both:
///
/// ```ignore
/// for store in g2p_testkit::backends().await {
///     let b = store.backend().name(); // name the backend in every assertion message
///     …
/// }
/// ```
pub async fn backends() -> Vec<TestStore> {
    let mut v = vec![sqlite_store().await];
    if let Some(pg) = pg_store().await {
        v.push(pg);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            database_url("postgres://u@h:5432/postgres", "g2p_test_x"),
            "postgres://u@h:5432/g2p_test_x"
        );
        assert_eq!(
            database_url("postgres://u@h/postgres?sslmode=disable", "d"),
            "postgres://u@h/d?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h", "d"), "postgres://u@h/d");
    }
}
