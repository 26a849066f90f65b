//! `g2p-mts-jq-worker`: the jq worker of g2p-mts as a program of its own, for programs that
//! embed the crate and are not the g2p binary (this crate's tests among them). It does what
//! `g2p mts jq-worker` does; see `src/jq.rs`.

use clap::Parser;

/// A jq worker: JSON lines on stdin/stdout, limits from the flags.
#[derive(Parser)]
#[command(name = "g2p-mts-jq-worker")]
struct Cli {
    #[command(flatten)]
    args: g2p_mts::jq::WorkerArgs,
}

fn main() -> std::process::ExitCode {
    match g2p_mts::jq::worker_main(&Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
