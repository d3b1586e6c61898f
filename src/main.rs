//! The `kokoro` binary: parse the command line, hand over to the library.

fn main() -> std::process::ExitCode {
    kokoro::cli::main()
}
