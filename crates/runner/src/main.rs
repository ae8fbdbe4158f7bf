//! `auditsync`, the stock binary: every sink, formatter and store of the default features.

// Ingest and export allocate many small strings and maps; mimalloc handles that churn far
// better than glibc's allocator (measured: see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    auditsync::main()
}
