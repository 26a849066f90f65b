//! `g2p import FILE`: the command-line face of the bulk import. It streams the file into the
//! same store function the API uses ([`Store::import_registrants`]) and prints a summary with the
//! first failed rows. It owns only argument handling and printing.
//!
//! Exit status: 0 when every row was created or skipped, 2 when some rows failed, 1 on a fatal
//! error (returned as `Err`, which `main` turns into 1).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use g2p_store::Store;
use g2p_store::audit::Actor;
use g2p_store::import::{
    DEFAULT_CHUNK_SIZE, ImportFormat, ImportOptions, ImportReport, MAX_CHUNK_SIZE,
};

/// Failed rows printed to the terminal (the report itself keeps more).
const PRINTED_ERRORS: usize = 20;

#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// A CSV file with a header row, or an NDJSON file (one registrant object per line).
    pub file: PathBuf,
    /// csv or ndjson; by default from the file extension (.csv, .ndjson, .jsonl).
    #[arg(long)]
    pub format: Option<String>,
    /// Rows per transaction (1 to 10000).
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
}

/// 0 when no row failed, 2 when some did.
pub fn exit_status(report: &ImportReport) -> i32 {
    if report.failed > 0 { 2 } else { 0 }
}

/// Runs the import and prints the summary to `out`; returns the exit status.
pub async fn run(store: &Store, args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<i32> {
    let format = match &args.format {
        Some(f) => ImportFormat::parse(f)
            .with_context(|| format!("unknown format {f:?}: use csv or ndjson"))?,
        None => ImportFormat::from_path(&args.file).with_context(|| {
            format!(
                "cannot tell the format of {} from its name: pass --format csv or --format ndjson",
                args.file.display()
            )
        })?,
    };
    anyhow::ensure!(
        (1..=MAX_CHUNK_SIZE).contains(&args.chunk_size),
        "--chunk-size must be between 1 and {MAX_CHUNK_SIZE}"
    );
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let opts = ImportOptions {
        chunk_size: args.chunk_size,
        ..ImportOptions::default()
    };
    let started = Instant::now();
    let report = store
        .import_registrants(file, format, &opts, &Actor::system("cli:import"))
        .await
        .with_context(|| format!("import of {} failed", args.file.display()))?;
    print_report(&report, started.elapsed(), out)?;
    Ok(exit_status(&report))
}

pub fn print_report(
    report: &ImportReport,
    elapsed: Duration,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        report.rows_total as f64 / secs
    } else {
        0.0
    };
    writeln!(
        out,
        "import {}: {} rows in {secs:.1} s ({rate:.0} rows/s)",
        report.import_id, report.rows_total
    )?;
    writeln!(out, "  created            {:>10}", report.created)?;
    writeln!(out, "  skipped (existing) {:>10}", report.skipped_existing)?;
    writeln!(out, "  failed             {:>10}", report.failed)?;
    if report.errors.is_empty() {
        return Ok(());
    }
    writeln!(out, "first failed rows:")?;
    for e in report.errors.iter().take(PRINTED_ERRORS) {
        let key = e.external_key.as_deref().unwrap_or("-");
        writeln!(out, "  line {} [{key}]: {}", e.line, e.fields)?;
    }
    let more = report.failed.saturating_sub(PRINTED_ERRORS as u64);
    if more > 0 {
        writeln!(out, "  … and {more} more")?;
    }
    Ok(())
}
