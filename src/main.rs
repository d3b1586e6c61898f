//! The `kokoro` binary: parse the command line, hand over to the library.

/// mimalloc rather than the system's malloc: resident players are many small
/// long-lived allocations, which it keeps without per-chunk headers and with
/// less fragmentation (see the README's Performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kokoro::cli::main()
}
