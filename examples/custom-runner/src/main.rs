//! The stock `auditsync` CLI plus a third-party sink: `{"type": "sqlite-table"}`
//! destinations and `sqlite-table:///path` URLs work in every command.

fn main() -> std::process::ExitCode {
    // Referencing the crate keeps it linked; it registers itself with the sink registry.
    custom_sink::link();
    auditsync::main()
}
