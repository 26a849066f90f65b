//! Bounded jq evaluation: a fixed-size pool of child worker processes that compile and run
//! `outputFormat` programs, and the worker's own loop. Owns the processes, their protocol and
//! their limits; it knows nothing of requests, records or the queue (see `output.rs`).
//!
//! Why processes. jaq (jaq-core 3) offers no way to interrupt an evaluation or to meter its
//! steps or its allocations: a filter is an iterator that runs until it yields, and one step
//! such as `. + .` on a 1 GB string is already unbounded in memory. A thread running it cannot
//! be stopped (the old pool leaked one spinning thread per timeout), and an allocation failure
//! aborts the whole process (`.input.vid | .+. | .+. | …` took `g2p mts` to 1.1 GB and down).
//! A child process can be bounded by the kernel and killed: each worker sets its own address
//! space limit (`RLIMIT_AS`, a budget above its start-up size) and, before each job, a CPU-time
//! limit (`RLIMIT_CPU`, so it dies of `SIGXCPU` even if the parent is gone); the parent kills a
//! worker that passes the wall-clock limit and reads at most a fixed number of bytes from it.
//! A worker that dies or is killed is replaced by a fresh one on the next job, so the number of
//! processes and threads never grows past [`JqSettings::workers`], and the server keeps serving.
//!
//! Why the g2p binary re-executed (`g2p mts jq-worker`) by default, and not a dedicated
//! program: g2p ships as one executable; a second one would have to be installed beside it,
//! found at run time and kept at the same version, or the protocol below could silently differ.
//! Re-executing [`std::env::current_exe`] gives exactly the same code and needs no lookup. The
//! cost is the start-up of a larger binary, paid once per worker, not per job. Programs that
//! embed this crate and are not g2p (this crate's own tests, a test binary of g2p) name another
//! program in [`JqSettings::worker_program`]; the crate ships the small `g2p-mts-jq-worker`
//! binary for that, which calls [`worker_main`] as `g2p mts jq-worker` does.
//!
//! Protocol: JSON lines over the worker's stdin/stdout, one [`Job`] in, one [`Reply`] out. A job
//! with no inputs only compiles. Workers keep the filters they compiled (compiling jaq's
//! standard library per job would cost more than the evaluation).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Largest result of one record, as JSON text.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Largest reply the parent reads from a worker for one job: beyond it the worker is killed.
const MAX_REPLY_BYTES: usize = 64 << 20;
/// Stack of the worker's evaluation thread: jaq recurses on nested programs and data. A program
/// deeper than this overflows it, which kills the worker, not the server.
const EVAL_STACK_BYTES: usize = 64 << 20;
/// Compiled filters a worker keeps.
const CACHE_ENTRIES: usize = 64;
/// Programs the parent remembers as compiling (so a connector's fixed format costs no round
/// trip per submission).
const KNOWN_GOOD_ENTRIES: usize = 256;

/// The first result of a program on one input: `None` for an empty result, or the error text.
pub type Outcome = Result<Option<Value>, String>;

/// One job for a worker: compile `program` and run it on each input (none: compile only).
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub program: String,
    pub inputs: Vec<Value>,
}

/// A worker's answer: the outcome of each input, or why the program does not compile.
pub type Reply = Result<Vec<Outcome>, String>;

/// How the pool runs and bounds its workers (part of `MtsConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct JqSettings {
    /// Worker processes at most (each evaluates one job at a time).
    pub workers: usize,
    /// Wall-clock bound of one job (a batch of records of one request, or a compile check).
    pub timeout: Duration,
    /// Address space a worker may add to its start-up size, bytes.
    pub memory_bytes: u64,
    /// The worker program; `None`: this executable ([`std::env::current_exe`]).
    pub worker_program: Option<PathBuf>,
    /// Arguments that make the program a worker, before its limits: `mts jq-worker` for the
    /// g2p binary (the default), none for `g2p-mts-jq-worker`.
    pub worker_args: Vec<String>,
}

impl Default for JqSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            worker_program: None,
            worker_args: vec!["mts".into(), "jq-worker".into()],
        }
    }
}

/// Why a job got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("outputFormat evaluation timed out")]
    Timeout,
    #[error("outputFormat evaluation exceeded its memory or CPU limit, or crashed")]
    Died,
    #[error("outputFormat result is too large")]
    TooLarge,
    #[error("outputFormat evaluation could not start: {0}")]
    Spawn(String),
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    /// Sends one job line and reads one reply line, at most [`MAX_REPLY_BYTES`].
    async fn round_trip(&mut self, line: &[u8]) -> Result<Reply, PoolError> {
        self.stdin
            .write_all(line)
            .await
            .map_err(|_| PoolError::Died)?;
        self.stdin.flush().await.map_err(|_| PoolError::Died)?;
        let mut buf = Vec::new();
        let limit = u64::try_from(MAX_REPLY_BYTES).unwrap_or(u64::MAX);
        let n = (&mut self.stdout)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|_| PoolError::Died)?;
        if n == 0 {
            return Err(PoolError::Died);
        }
        if buf.last() != Some(&b'\n') {
            return Err(if n >= MAX_REPLY_BYTES {
                PoolError::TooLarge
            } else {
                PoolError::Died
            });
        }
        serde_json::from_slice(&buf).map_err(|_| PoolError::Died)
    }

    /// Kills the worker and reaps it, so no zombie and no stray process is left.
    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The pool: at most `workers` processes, started on demand, replaced when they die or are
/// killed. Jobs wait for a free worker.
pub struct JqPool {
    settings: JqSettings,
    slots: tokio::sync::Semaphore,
    idle: Mutex<Vec<Worker>>,
    known_good: Mutex<Vec<String>>,
}

impl JqPool {
    pub fn new(settings: JqSettings) -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(settings.workers.max(1)),
            settings,
            idle: Mutex::new(Vec::new()),
            known_good: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self) -> Result<Worker, PoolError> {
        let program = match &self.settings.worker_program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| PoolError::Spawn(e.to_string()))?,
        };
        let cpu_seconds = self.settings.timeout.as_secs().saturating_add(1);
        let mut child = Command::new(&program)
            .args(&self.settings.worker_args)
            .arg("--memory-bytes")
            .arg(self.settings.memory_bytes.to_string())
            .arg("--cpu-seconds")
            .arg(cpu_seconds.to_string())
            .arg("--max-result-bytes")
            .arg(MAX_RESULT_BYTES.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // An allocation failure prints one line there before the abort; keep it visible.
            .stderr(Stdio::inherit())
            // A worker whose job future is dropped (shutdown, a cancelled request) must not
            // outlive it.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PoolError::Spawn(format!("{}: {e}", program.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PoolError::Spawn("no pipes to the worker".into()));
        };
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    /// Runs one job on a free worker under the wall-clock limit. A worker that times out, dies,
    /// answers garbage or too much is killed and not reused.
    pub async fn run(&self, job: &Job) -> Result<Reply, PoolError> {
        let mut line = serde_json::to_vec(job).map_err(|e| PoolError::Spawn(e.to_string()))?;
        line.push(b'\n');
        // The semaphore is never closed; were it, jobs would just run without the bound.
        let _slot = self.slots.acquire().await.ok();
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn()?,
        };
        match tokio::time::timeout(self.settings.timeout, worker.round_trip(&line)).await {
            Ok(Ok(reply)) => {
                if let Ok(mut v) = self.idle.lock() {
                    v.push(worker);
                }
                Ok(reply)
            }
            Ok(Err(e)) => {
                let status = worker.child.try_wait().ok().flatten();
                tracing::warn!(error = %e, ?status, "mts: jq worker lost; it will be replaced");
                worker.kill().await;
                Err(e)
            }
            Err(_) => {
                tracing::warn!("mts: jq worker passed its time limit; killed and replaced");
                worker.kill().await;
                Err(PoolError::Timeout)
            }
        }
    }

    /// Whether `program` parses and compiles. Programs that did are remembered; a worker lost
    /// while compiling counts as "does not compile".
    pub async fn compiles(&self, program: &str) -> bool {
        if let Ok(k) = self.known_good.lock()
            && k.iter().any(|p| p == program)
        {
            return true;
        }
        let job = Job {
            program: program.to_owned(),
            inputs: Vec::new(),
        };
        let ok = matches!(self.run(&job).await, Ok(Ok(_)));
        if ok && let Ok(mut k) = self.known_good.lock() {
            if k.len() >= KNOWN_GOOD_ENTRIES {
                k.remove(0);
            }
            k.push(program.to_owned());
        }
        ok
    }

    /// Stops the idle workers (closing their stdin ends their loop) and reaps them.
    pub async fn close(&self) {
        let idle: Vec<Worker> = match self.idle.lock() {
            Ok(mut v) => v.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for w in idle {
            let Worker {
                mut child, stdin, ..
            } = w;
            drop(stdin);
            if tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// The worker's limits, from its command line (`g2p mts jq-worker --memory-bytes N …`).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Address space the worker may add to its start-up size, bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub memory_bytes: u64,
    /// CPU seconds one job may use.
    #[arg(long, default_value_t = 3)]
    pub cpu_seconds: u64,
    /// Largest result of one record, as JSON text.
    #[arg(long, default_value_t = MAX_RESULT_BYTES)]
    pub max_result_bytes: usize,
}

/// The worker process: sets its limits, then answers jobs from stdin until it closes. Returns
/// an error when it cannot set a limit (it must not run unbounded) or its pipes fail.
pub fn worker_main(args: &WorkerArgs) -> Result<(), String> {
    let args = args.clone();
    // Everything runs on one thread with a large stack, started before the memory limit so the
    // stack's reservation is part of the baseline.
    let handle = std::thread::Builder::new()
        .name("jq-worker".into())
        .stack_size(EVAL_STACK_BYTES)
        .spawn(move || {
            limit_memory(args.memory_bytes)?;
            serve(&args).map_err(|e| format!("jq worker: {e}"))
        })
        .map_err(|e| format!("jq worker thread: {e}"))?;
    handle
        .join()
        .map_err(|_| "jq worker thread failed".to_owned())?
}

/// `RLIMIT_AS` = the current virtual size + `budget`, soft and hard (it cannot be raised back).
fn limit_memory(budget: u64) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    let base = virtual_size().ok_or("jq worker: cannot read /proc/self/status")?;
    let limit = base.saturating_add(budget);
    setrlimit(Resource::RLIMIT_AS, limit, limit).map_err(|e| format!("RLIMIT_AS: {e}"))
}

/// The process's virtual size, bytes (`VmSize` of `/proc/self/status`).
fn virtual_size() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Arms `RLIMIT_CPU` for the next job: the CPU time used so far plus `seconds` (the limit is
/// per process and cumulative, so it moves forward before each job). The hard limit is left
/// as it is, so it can be moved again.
fn arm_cpu_limit(seconds: u64) -> Result<(), String> {
    use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
    let usage = getrusage(UsageWho::RUSAGE_SELF).map_err(|e| format!("getrusage: {e}"))?;
    let used =
        u64::try_from(usage.user_time().tv_sec() + usage.system_time().tv_sec()).unwrap_or(0);
    let (_, hard) = getrlimit(Resource::RLIMIT_CPU).map_err(|e| format!("RLIMIT_CPU: {e}"))?;
    let soft = used.saturating_add(seconds).saturating_add(1).min(hard);
    setrlimit(Resource::RLIMIT_CPU, soft, hard).map_err(|e| format!("RLIMIT_CPU: {e}"))
}

fn serve(args: &WorkerArgs) -> std::io::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut cache: HashMap<String, Compiled> = HashMap::new();
    for line in stdin.lines() {
        let line = line?;
        let reply: Reply = match serde_json::from_str::<Job>(&line) {
            Err(e) => Err(format!("bad job: {e}")),
            Ok(job) => {
                arm_cpu_limit(args.cpu_seconds).map_err(std::io::Error::other)?;
                handle(&mut cache, job, args.max_result_bytes)
            }
        };
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

fn handle(cache: &mut HashMap<String, Compiled>, job: Job, max_result: usize) -> Reply {
    if !cache.contains_key(&job.program) {
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        let f = compile(&job.program)?;
        cache.insert(job.program.clone(), f);
    }
    let filter = cache
        .get(&job.program)
        .ok_or_else(|| "outputFormat lost".to_owned())?;
    Ok(job
        .inputs
        .iter()
        .map(|input| run(filter, input, max_result))
        .collect())
}

type Compiled = jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>;

/// Parses and compiles `program` with jaq's core, standard and JSON definitions.
pub fn compile(program: &str) -> Result<Compiled, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: program,
                path: (),
            },
        )
        .map_err(|_| "outputFormat does not parse".to_owned())?;
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|_| "outputFormat does not compile".to_owned())
}

/// The first result of `filter` on `input`, capped at `max_result` bytes of JSON text.
fn run(filter: &Compiled, input: &Value, max_result: usize) -> Outcome {
    let text = input.to_string();
    let val = jaq_json::read::parse_single(text.as_bytes()).map_err(|e| e.to_string())?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    match filter.id.run((ctx, val)).map(jaq_core::unwrap_valr).next() {
        None => Ok(None),
        Some(Err(e)) => Err(format!("outputFormat failed: {e}")),
        Some(Ok(v)) => {
            let text = v.to_string();
            if text.len() > max_result {
                return Err("outputFormat result is too large".into());
            }
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_and_runs_in_process() {
        assert!(compile("{partner_id: .input.id, value: .output.token}").is_ok());
        assert!(compile("{partner_id: ").is_err());
        let f = compile("{z: .input.id}").unwrap();
        assert_eq!(
            run(&f, &json!({"input": {"id": 1}}), 100),
            Ok(Some(json!({"z": 1})))
        );
        let f = compile(".input").unwrap();
        let big = json!({"input": "x".repeat(200)});
        assert_eq!(
            run(&f, &big, 100),
            Err("outputFormat result is too large".into())
        );
        let f = compile("empty").unwrap();
        assert_eq!(run(&f, &json!({}), 100), Ok(None));
    }
}
