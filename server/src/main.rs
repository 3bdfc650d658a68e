fn main() {
    mkondo_server::cli::main()
}
