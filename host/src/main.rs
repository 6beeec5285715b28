//! The `runledger` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    runledger::cli::main()
}

/// Lets a closed pipe end the process quietly, as for other command-line tools: Rust ignores
/// SIGPIPE, so `runledger runs show RUN | head` would otherwise panic on its next print.
#[expect(
    unsafe_code,
    reason = "setting a signal disposition needs libc; SIG_DFL is always a valid handler"
)]
fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists, with a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
