//! The `weft` binary: see `weft --help`.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal, not escape codes in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match weft::cli::Cli::try_parse_checked(std::env::args_os()) {
        Ok(cli) => cli,
        // `--help` and `--version` too: clap prints them and picks the code.
        Err(e) => e.exit(),
    };
    match weft::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our stdout went away (`weft stage list | head`).
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        // The message and its causes, never a backtrace: these are the
        // user's errors (a bad spec, a daemon that is not running), not ours.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
