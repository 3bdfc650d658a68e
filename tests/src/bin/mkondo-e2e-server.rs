//! `mkondo` under another name, for the end-to-end tests (see `Cargo.toml`).

fn main() {
    mkondo_server::cli::main()
}
