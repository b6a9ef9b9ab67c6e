//! A real Postgres for the tests: Debian's server binaries, `initdb` into a
//! temporary directory, `postgres` on a free loopback port, one database
//! per test (`createdb`). Started once per test process, on a thread that
//! lives as long as the process, with `setpriv --pdeathsig`, so the server
//! goes when the tests do. As root (CI), the server runs as the `postgres`
//! user that Debian's package creates.
//!
//! Absent binaries skip the Postgres half of a test, unless
//! `FORJA_REQUIRE_TESTDATA` is set (CI, where `make setup-test` installs
//! `postgresql`): then they fail it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running test server.
pub struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    pid: std::sync::Mutex<u32>,
}

impl Server {
    /// A new, empty database; returns its URL.
    pub fn database(&self, name: &str) -> String {
        let out = self
            .cmd("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "forja", name])
            .output()
            .expect("createdb runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || err.contains("already exists"), "createdb {name}: {err}");
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://forja@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL on database `name` behind the store's back.
    pub fn psql(&self, name: &str, sql: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "forja", "-d", name])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The first column of every row of `sql` on database `name`, as text.
    pub fn rows(&self, name: &str, sql: &str) -> Vec<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "forja", "-d", name])
            .args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "--record-separator-zero", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        text.split('\0').filter(|r| !r.is_empty() && *r != "\n").map(str::to_string).collect()
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }
}

/// The directory of Debian's Postgres server binaries, if installed.
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists() && b.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

/// The test server, started on first use; `None` when Postgres is not
/// installed (a failure instead under `FORJA_REQUIRE_TESTDATA`).
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let Some(bin) = binaries() else {
                assert!(
                    std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(),
                    "Postgres is not installed (apt-get install postgresql; make setup-test does)"
                );
                eprintln!("skipping the Postgres half: no /usr/lib/postgresql/*/bin/initdb");
                return None;
            };
            Some(start(bin))
        })
        .as_ref()
}

/// A server of the caller's own, to stop and start (outage tests); it
/// goes with the test process like the shared one.
pub fn private() -> Option<Server> {
    binaries().map(start)
}

impl Server {
    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        let pid = *self.pid.lock().unwrap();
        let out = self
            .cmd("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.dir.join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop ({pid}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same data and port.
    pub fn start_again(&self) {
        *self.pid.lock().unwrap() = launch(self);
    }
}

fn start(bin: PathBuf) -> Server {
    let as_postgres = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    // Servers of test processes that are gone leave their directories.
    for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("forja-pg-") else { continue };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("forja-pg-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if as_postgres {
        let ok = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap();
        assert!(ok.success(), "chown of {} to postgres", dir.display());
    }
    let data = dir.join("data");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = Server { bin, dir: dir.clone(), port, as_postgres, pid: Default::default() };
    let out = server
        .cmd("initdb")
        .args(["-A", "trust", "-U", "forja", "--no-sync", "-E", "UTF8", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));

    *server.pid.lock().unwrap() = launch(&server);
    server
}

/// Starts `postgres` on the server's data directory and port; waits
/// until it accepts connections; returns its pid.
fn launch(server: &Server) -> u32 {
    // The server is the child of a thread that never ends: its parent-death
    // signal fires when the test process exits, not when a test does.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cmd = if server.as_postgres {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "TERM", "--reuid=postgres", "--regid=postgres", "--clear-groups"]);
        c.arg("--").arg(server.bin.join("postgres"));
        c
    } else {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "TERM", "--"]).arg(server.bin.join("postgres"));
        c
    };
    cmd.arg("-D")
        .arg(server.dir.join("data"))
        .args(["-p", &server.port.to_string(), "-k"])
        .arg(&server.dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(server.dir.join("server.log")).map(Stdio::from).unwrap());
    std::thread::spawn(move || {
        let child = cmd.spawn();
        let _ = tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()));
        loop {
            std::thread::park();
        }
    });
    let pid = rx.recv().unwrap().expect("postgres starts");
    let started = Instant::now();
    loop {
        let ready = Command::new(server.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "postgres did not start: {}",
            std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pid
}

/// A database name for a test's path: the same path, the same database.
pub fn name_for(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    format!("t_{:016x}", h.finish())
}
