//! The `runledger` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    runledger::cli::main()
}
