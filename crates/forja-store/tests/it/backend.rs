//! Runs a test on both backends: first on a SQLite file, then on a fresh
//! Postgres database (when the test server runs). A test opens its store
//! by path with [`open`]; on Postgres the same path always reaches the same
//! database, so a test that opens a path twice (two connections, as two
//! processes would) gets two stores on one database there too.

use forja_store::SqlStore;
use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

thread_local! {
    static POSTGRES: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread's test runs on Postgres now.
pub fn on_postgres() -> bool {
    POSTGRES.with(Cell::get)
}

/// Sets this thread's backend (threads a test spawns inherit nothing:
/// they call this with their test's [`on_postgres`]).
pub fn set_postgres(on: bool) {
    POSTGRES.with(|p| p.set(on));
}

/// Runs `body` on SQLite, then on Postgres.
pub fn both(body: impl Fn()) {
    set_postgres(false);
    body();
    if crate::pg::server().is_some() {
        set_postgres(true);
        body();
        set_postgres(false);
    }
}

/// The store at `path` on this thread's backend; on Postgres the node key
/// lives in the path's directory, as it does beside a SQLite file.
pub fn open(path: &Path, busy: Duration) -> SqlStore {
    if on_postgres() {
        let server = crate::pg::server().expect("the Postgres half runs only with a server");
        let url = server.database(&crate::pg::name_for(path));
        let dir = path.parent().expect("a path in a directory");
        SqlStore::open_postgres(&url, dir).unwrap()
    } else {
        SqlStore::open(path, busy).unwrap()
    }
}
