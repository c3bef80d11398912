//! A PostgreSQL server of a test's own (its own data directory and port), so a test can stop and
//! start a real server while traffic flows without disturbing anyone else's. Created with
//! `initdb` as the `postgres` user (through `runuser` when the tests run as root), removed when
//! dropped.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::env::random_suffix;

/// A throwaway PostgreSQL server.
pub struct ThrowawayPostgres {
    /// Data directory (also the socket directory).
    dir: PathBuf,
    /// Where it listens, on 127.0.0.1.
    port: u16,
    /// `pg_ctl`, `initdb` and friends.
    bin: PathBuf,
}

impl ThrowawayPostgres {
    /// Creates and starts a server on a free port.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("blitz-pg-{}", random_suffix(8)));
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("addr").port()
        };
        let server = Self {
            dir,
            port,
            bin: postgres_bin(),
        };
        let (dir, bin) = (server.dir.clone(), server.bin.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).expect("create the data directory");
            chown_to_postgres(&dir);
            run_as_postgres(
                &bin.join("initdb"),
                &[
                    "-D",
                    dir.to_str().expect("utf-8 path"),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                ],
            );
            let conf = format!(
                "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 max_connections = 100\nshared_buffers = 32MB\nfsync = on\n",
                dir.display()
            );
            let path = dir.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&path).expect("read postgresql.conf");
            text.push_str(&conf);
            std::fs::write(&path, text).expect("write postgresql.conf");
        })
        .await
        .expect("initdb");
        server.start_again().await;
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>` (no database; append `/name`).
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) server again and waits until it accepts connections.
    pub async fn start_again(&self) {
        self.pg_ctl(&["-l", "log", "-w", "-t", "60", "start"]).await;
    }

    /// Stops the server: `fast` disconnects every client and shuts down cleanly, `immediate`
    /// aborts like a crash (recovery runs at the next start).
    pub async fn stop(&self, mode: StopMode) {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.pg_ctl(&["-w", "-t", "60", "-m", mode, "stop"]).await;
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let pg_ctl = self.bin.join("pg_ctl");
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut full = vec!["-D".to_owned(), dir.to_str().expect("utf-8").to_owned()];
            full.extend(args);
            let full: Vec<&str> = full.iter().map(String::as_str).collect();
            run_as_postgres_in(&pg_ctl, &full, &dir);
        })
        .await
        .expect("pg_ctl");
    }
}

/// How to stop the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, shut down cleanly.
    Fast,
    /// Abort at once, as a crash would.
    Immediate,
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let dir = self.dir.to_str().unwrap_or_default().to_owned();
        let _ = as_postgres(&pg_ctl)
            .args(["-D", &dir, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's `bin` directory (Debian layout), or `PG_BIN`.
fn postgres_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (or set PG_BIN)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().expect("an installed PostgreSQL version").1
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` run as the `postgres` user when we are root (initdb refuses root), else as us.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn chown_to_postgres(dir: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown postgres {}", dir.display());
    }
}

fn run_as_postgres(program: &Path, args: &[&str]) {
    run_as_postgres_in(program, args, Path::new("/"));
}

fn run_as_postgres_in(program: &Path, args: &[&str], cwd: &Path) {
    let output = as_postgres(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|error| panic!("run {}: {error}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until nothing accepts connections on `port` any more (the server is really down).
pub async fn until_refused(port: u16, timeout: Duration) {
    crate::wait::until("the server refuses connections", timeout, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
}
