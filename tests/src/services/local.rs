//! PostgreSQL and Redis started by the tests themselves from the installed
//! binaries (Debian's `postgresql` and `redis-server` packages): no script to
//! run first, nothing to export.
//!
//! One file, two users:
//! - at build time, `build.rs` calls [`installed`] and sets `cfg(has_services)`
//!   when both are there, so the tests that need them are otherwise reported as
//!   ignored, with [`IGNORED`] as the reason (`MKONDO_TEST_NO_SERVICES=1` at
//!   build time hides them, to check that);
//! - at run time, [`postgres_url`] and [`redis_url`] start each service once
//!   per test process, on a free loopback port, with its data in a directory
//!   of the system's temporary directory named after the process. A watchdog
//!   shell stops them when the process exits; a directory left by a process
//!   that died with its watchdog is cleaned by the next run, stopping what its
//!   pid files name.
//!
//! `MKONDO_TEST_DATABASE_URL` (an administrator URL of a running PostgreSQL)
//! and `MKONDO_TEST_REDIS_URL` use running servers instead.
//!
//! [`start_postgres_tls`] starts a second PostgreSQL speaking TLS, with a
//! certificate the caller made (`services::fresh_postgres_tls`).
//!
//! Only `std`: the build script compiles this file too.

#![allow(dead_code)] // each includer uses its own part

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Why a service test is ignored, and how to run it.
pub const IGNORED: &str = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server";

/// Set (to anything but `0`) at build time: behave as if the services were not
/// installed.
pub const HIDE_VAR: &str = "MKONDO_TEST_NO_SERVICES";

/// The directory holding `initdb` and `pg_ctl`: Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest), else `PATH`.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    debian.sort_by_key(|bin| {
        let version = bin.parent().and_then(|v| v.file_name());
        version.and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    debian
        .pop()
        .or_else(|| Some(in_path("initdb")?.parent()?.to_path_buf()))
}

/// `redis-server` on `PATH` (or in `/usr/bin`, `/usr/sbin`).
pub fn redis_server() -> Option<PathBuf> {
    in_path("redis-server")
}

/// `name` on `PATH`, or in the system directories a minimal `PATH` may lack.
pub fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"])
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file());
    found
}

/// For build scripts: whether both services can be started. Prints the
/// `rerun-if-…` lines that make Cargo check again when that may change.
pub fn installed() -> bool {
    println!("cargo::rerun-if-env-changed={HIDE_VAR}");
    let hidden = std::env::var(HIDE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    let found = (postgres_bin_dir(), redis_server());
    if let (Some(pg), Some(redis)) = &found {
        println!("cargo::rerun-if-changed={}", pg.join("initdb").display());
        println!("cargo::rerun-if-changed={}", redis.display());
    } else if Path::new("/var/lib/dpkg/status").is_file() {
        // Changes when a package is installed.
        println!("cargo::rerun-if-changed=/var/lib/dpkg/status");
    }
    !hidden && matches!(found, (Some(_), Some(_)))
}

/// An administrator URL of this process's PostgreSQL (user `postgres`, trusted
/// on loopback), started on first use.
pub fn postgres_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        from_env("MKONDO_TEST_DATABASE_URL").unwrap_or_else(|| {
            start_postgres().unwrap_or_else(|e| panic!("could not start PostgreSQL: {e}"))
        })
    })
    .clone()
}

/// The PEM files of a TLS server: its certificate chain, its key and the CA
/// that issued it (made by the caller: this file knows no cryptography).
pub struct TlsPem<'a> {
    pub cert_chain: &'a str,
    pub key: &'a str,
    pub ca: &'a str,
}

/// Another PostgreSQL of this process, speaking TLS too (`ssl=on` with the
/// given certificate): returns an administrator URL that verifies it
/// (`postgres://postgres@localhost:PORT/postgres?sslmode=verify-full&sslrootcert=…`,
/// the CA written beside the data directory). Each call starts one: call it once.
pub fn start_postgres_tls(pem: &TlsPem<'_>) -> Result<String> {
    start_postgres_in("postgres-tls", Some(pem))
}

/// `redis://127.0.0.1:PORT` of this process's Redis, started on first use.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        from_env("MKONDO_TEST_REDIS_URL").unwrap_or_else(|| {
            start_redis().unwrap_or_else(|e| panic!("could not start Redis: {e}"))
        })
    })
    .clone()
}

fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

type Result<T> = std::result::Result<T, String>;

/// A free loopback port (the OS picks it; released before the service binds it).
fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))
}

const DIR_PREFIX: &str = "mkondo-test-services-";

/// A fresh data directory for `service`, named after this process, after
/// cleaning what earlier processes left.
fn data_dir(service: &str) -> Result<PathBuf> {
    clean_leftovers();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{service}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Stops the services of test processes that are gone (by the pid files in
/// their directories) and removes their directories.
fn clean_leftovers() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
                continue;
            };
            let owner = rest.split('-').next().unwrap_or_default();
            if owner.is_empty() || Path::new("/proc").join(owner).exists() {
                continue;
            }
            let dir = entry.path();
            for pid_file in ["redis.pid", "pg/postmaster.pid"] {
                if let Some(pid) = read_pid(&dir.join(pid_file)) {
                    stop(pid);
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}

fn read_pid(file: &Path) -> Option<u32> {
    fs::read_to_string(file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// SIGINT (a fast shutdown for both services), then waits up to 10 s.
fn stop(pid: u32) {
    let alive = |pid: u32| Path::new("/proc").join(pid.to_string()).exists();
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shell that waits for this process to exit, then stops the services whose
/// pid files are given and removes `dir`. Its output goes nowhere, so it holds
/// no pipe of the test runner open.
fn watchdog(dir: &Path, pid_files: &[&str]) -> Result<()> {
    const SCRIPT: &str = r#"
        owner=$1; dir=$2; shift 2
        while kill -0 "$owner" 2>/dev/null; do sleep 1; done
        for f in "$@"; do
            pid=$(head -n 1 "$dir/$f" 2>/dev/null) && [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
        done
        for _ in $(seq 1 100); do
            alive=0
            for f in "$@"; do
                pid=$(head -n 1 "$dir/$f" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
            done
            [ "$alive" = 0 ] && break
            sleep 0.1
        done
        rm -rf "$dir"
    "#;
    Command::new("sh")
        .args(["-c", SCRIPT, "mkondo-test-services-watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .args(pid_files)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("start the watchdog shell: {e}"))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs `program` (as the `postgres` user when we are root: PostgreSQL refuses
/// to run as root), failing with its output.
fn run(program: &Path, args: &[&str], log: &Path) -> Result<()> {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // A directory the `postgres` user may enter, wherever the tests run from.
    let out = command
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let server_log = fs::read_to_string(log).unwrap_or_default();
    Err(format!(
        "{} {} failed ({}):\n{}{}\n{server_log}",
        program.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ))
}

fn start_postgres() -> Result<String> {
    start_postgres_in("postgres", None)
}

fn start_postgres_in(service: &str, tls: Option<&TlsPem<'_>>) -> Result<String> {
    let bin = postgres_bin_dir().ok_or_else(|| IGNORED.to_owned())?;
    let dir = data_dir(service)?;
    let data = dir.join("pg");
    fs::create_dir(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
    if let Some(pem) = tls {
        // Beside the data directory (initdb wants an empty one); the key
        // readable by its owner only, as PostgreSQL demands.
        write_file(&dir.join("server.crt"), pem.cert_chain, 0o644)?;
        write_file(&dir.join("server.key"), pem.key, 0o600)?;
        write_file(&dir.join("ca.crt"), pem.ca, 0o644)?;
    }
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err(format!("chown -R postgres: {} failed", dir.display()));
        }
    }
    let data_s = data
        .to_str()
        .ok_or("the temporary directory is not UTF-8")?;
    let log = data.join("server.log");
    let log_s = log.to_str().ok_or("the temporary directory is not UTF-8")?;
    run(
        &bin.join("initdb"),
        &[
            "-D",
            data_s,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ],
        &log,
    )?;
    let port = free_port()?;
    // Durability is not under test here: no fsync, no full-page writes.
    let mut options = format!(
        "-h 127.0.0.1 -p {port} -k {data_s} -c max_connections=400 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off"
    );
    let dir_s = dir.to_str().ok_or("the temporary directory is not UTF-8")?;
    if tls.is_some() {
        options.push_str(&format!(
            " -c ssl=on -c ssl_cert_file={dir_s}/server.crt -c ssl_key_file={dir_s}/server.key"
        ));
    }
    run(
        &bin.join("pg_ctl"),
        &[
            "-D", data_s, "-l", log_s, "-w", "-t", "60", "-o", &options, "start",
        ],
        &log,
    )?;
    watchdog(&dir, &["pg/postmaster.pid"])?;
    if tls.is_some() {
        return Ok(format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={dir_s}/ca.crt"
        ));
    }
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn start_redis() -> Result<String> {
    let redis = redis_server().ok_or_else(|| IGNORED.to_owned())?;
    let dir = data_dir("redis")?;
    let port = free_port()?;
    let status = Command::new(&redis)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--daemonize", "yes"])
        .arg("--pidfile")
        .arg(dir.join("redis.pid"))
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("run {}: {e}", redis.display()))?;
    if !status.success() {
        return Err(format!("{} exited with {status}", redis.display()));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pong(port) {
        if Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            return Err(format!(
                "redis-server did not answer PING on {port}:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    watchdog(&dir, &["redis.pid"])?;
    Ok(format!("redis://127.0.0.1:{port}"))
}

fn pong(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}
