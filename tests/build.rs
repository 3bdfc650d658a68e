//! Sets `cfg(has_services)` when PostgreSQL and Redis are installed, so that
//! the tests needing them run (they start the services themselves), and are
//! otherwise listed as ignored with the install command; `cfg(has_nginx)`
//! likewise for the test of the shipped nginx configuration. The check is the
//! one the tests use at run time (`src/services/local.rs`).

#[path = "src/services/local.rs"]
mod local;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_services, has_nginx)");
    if local::installed() {
        println!("cargo::rustc-cfg=has_services");
        if let Some(nginx) = local::in_path("nginx") {
            println!("cargo::rerun-if-changed={}", nginx.display());
            println!("cargo::rustc-cfg=has_nginx");
        }
    }
}
