//! The shared services of the distributed-path tests: PostgreSQL and Redis,
//! started once per test process from the installed binaries (`local`), or
//! the running servers `MKONDO_TEST_DATABASE_URL` and `MKONDO_TEST_REDIS_URL`
//! name. Tests that need them carry
//! `#[cfg_attr(not(has_services), ignore = "…")]` (see `build.rs`).
//!
//! Every test gets a database of its own ([`fresh_postgres`]), so tests run in
//! parallel and never see each other's rows. The databases use the "C" collation,
//! as `docs/deploy.md` asks of a production one: ids sort bytewise, as on SQLite.

mod local;

use std::sync::{
    atomic::{AtomicU32, Ordering},
    OnceLock,
};

use sqlx::{Connection, Executor, PgConnection};

pub use local::redis_url;

/// A new, empty PostgreSQL database with a unique name on this test process's
/// PostgreSQL (started on first use); returns its URL.
pub async fn fresh_postgres() -> String {
    let admin_url = tokio::task::spawn_blocking(local::postgres_url)
        .await
        .expect("start PostgreSQL");
    create_database(&admin_url).await
}

/// The PostgreSQL of [`fresh_postgres_tls`]: its administrator URL and CA.
struct TlsPostgres {
    admin_url: String,
    ca_pem: String,
}

/// A new, empty database on this test process's PostgreSQL over TLS (a
/// second server, `ssl=on`, started on first use with a certificate for
/// `localhost` and `127.0.0.1` from a test CA). Returns its URL, which verifies
/// the server (`host localhost`, `sslmode=verify-full&sslrootcert=<the CA file>`),
/// and the CA as PEM.
pub async fn fresh_postgres_tls() -> (String, String) {
    static SERVER: OnceLock<TlsPostgres> = OnceLock::new();
    let server = tokio::task::spawn_blocking(|| {
        SERVER.get_or_init(|| {
            let ca = crate::tls::TestCa::new("mkondo test PostgreSQL CA");
            let cert = ca.server_cert(&["localhost", "127.0.0.1"], 1);
            let ca_pem = ca.cert_pem();
            let pem = local::TlsPem {
                cert_chain: &cert.chain_pem,
                key: &cert.key_pem,
                ca: &ca_pem,
            };
            let admin_url = local::start_postgres_tls(&pem)
                .unwrap_or_else(|e| panic!("could not start PostgreSQL with TLS: {e}"));
            TlsPostgres { admin_url, ca_pem }
        })
    })
    .await
    .expect("start PostgreSQL with TLS");
    (
        create_database(&server.admin_url).await,
        server.ca_pem.clone(),
    )
}

async fn create_database(admin_url: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "mkondo_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand_u32()
    );
    let mut admin = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {admin_url} failed: {e}"));
    // template0: the only template a different collation may be chosen from.
    admin
        .execute(
            format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' \
                 LC_COLLATE 'C' LC_CTYPE 'C'"
            )
            .as_str(),
        )
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    let _ = admin.close().await;
    with_database(admin_url, &name)
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:55432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:55432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }
}
