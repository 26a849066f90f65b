//! `outputFormat` (spec §3): a jq program applied to `{input, output}` of each record, with
//! jaq. Evaluation is bounded so a hostile program is an error for its record and cannot crash
//! or stall the service: it runs on its own thread with a large stack, under a wall-clock
//! limit, with a result-size limit, after a static screen that rejects the constructs that
//! recurse without bound or build unbounded data. Owns no I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use serde_json::Value;

/// Largest result of one record, as JSON text.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Largest program text.
pub const MAX_PROGRAM_BYTES: usize = 16 * 1024;
/// Stack of the evaluation thread: deep enough for legitimate nesting, reserved lazily.
const EVAL_STACK_BYTES: usize = 256 << 20;

/// The program used when `outputFormat` is empty.
pub fn effective(program: &str) -> &str {
    if program.trim().is_empty() {
        ".output"
    } else {
        program
    }
}

/// Whether `program` parses and compiles (ATS-REQ-103 otherwise).
pub fn compiles(program: &str) -> bool {
    program.len() <= MAX_PROGRAM_BYTES && compile_and_run(program, &[]).is_ok()
}

/// Builtins (and syntax) that can loop or recurse without bound on a finite input, or build
/// unbounded data from a number. Filters of registries do not need them.
const UNBOUNDED: &[&str] = &[
    "def",
    "recurse",
    "repeat",
    "while",
    "until",
    "range",
    "limit",
    "input",
    "inputs",
    "env",
    "$ENV",
    "$__loc__",
    "getpath",
    "setpath",
    "splits",
    "ltrimstr",
    "rtrimstr",
    "pow",
    "exp",
    "exp10",
    "exp2",
    "implode",
    "tostream",
    "fromstream",
    "truncate_stream",
    "@base32d",
];

/// A static screen, run before evaluation: the identifiers of [`UNBOUNDED`] (outside string
/// literals), numeric literals above 10⁶ and `*` applied to anything (string repetition) are
/// refused. Returns the reason.
pub fn screen(program: &str) -> Result<(), String> {
    if program.len() > MAX_PROGRAM_BYTES {
        return Err("outputFormat is too long".into());
    }
    let b = program.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    // `\(...)` interpolation is code: screen it as code by not skipping it.
                    if b.get(i + 1) == Some(&b'(') {
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'*' {
            return Err("outputFormat uses '*', which is not allowed".into());
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            let lit = &program[start..i];
            if lit.parse::<f64>().map_or(true, |n| n > 1e6) {
                return Err(format!("outputFormat number {lit} is out of bounds"));
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'@' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let ident = &program[start..i];
            let prev_dot = start > 0 && b[start - 1] == b'.';
            if !prev_dot && UNBOUNDED.contains(&ident) {
                return Err(format!("outputFormat uses '{ident}', which is not allowed"));
            }
            continue;
        }
        if c == b'.' && b.get(i + 1) == Some(&b'.') {
            return Err("outputFormat uses '..', which is not allowed".into());
        }
        i += 1;
    }
    Ok(())
}

type Compiled = jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>;
type Results = Vec<Result<Option<Value>, String>>;

fn compile(program: &str) -> Result<Compiled, String> {
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

fn run(filter: &Compiled, inputs: &[String]) -> Results {
    inputs
        .iter()
        .map(|input| {
            let val = jaq_json::read::parse_single(input.as_bytes()).map_err(|e| e.to_string())?;
            let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
            match filter.id.run((ctx, val)).map(jaq_core::unwrap_valr).next() {
                None => Ok(None),
                Some(Err(e)) => Err(format!("outputFormat failed: {e}")),
                Some(Ok(v)) => {
                    let text = v.to_string();
                    if text.len() > MAX_RESULT_BYTES {
                        return Err("outputFormat result is too large".into());
                    }
                    serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
            }
        })
        .collect()
}

/// Compiles `program` and runs it on each input (JSON text), giving the first result of each
/// (`None` for an empty result) or the error text.
fn compile_and_run(program: &str, inputs: &[String]) -> Result<Results, String> {
    Ok(run(&compile(program)?, inputs))
}

/// One evaluation handed to the jq threads.
struct Job {
    program: String,
    inputs: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Result<Results, String>>,
}

/// Long-lived evaluation threads with large stacks, each keeping the filters it compiled
/// (compiling jaq's standard library per record would cost more than the evaluation). jaq
/// values are not `Send`, so a filter stays on the thread that compiled it.
struct JqPool {
    tx: std::sync::mpsc::Sender<Job>,
    rx: Arc<Mutex<std::sync::mpsc::Receiver<Job>>>,
}

const POOL_THREADS: usize = 2;
const CACHE_ENTRIES: usize = 64;

static POOL: OnceLock<Option<JqPool>> = OnceLock::new();

impl JqPool {
    fn get() -> Option<&'static JqPool> {
        POOL.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let pool = JqPool {
                tx,
                rx: Arc::new(Mutex::new(rx)),
            };
            let started = (0..POOL_THREADS).filter(|_| pool.add_thread()).count();
            (started > 0).then_some(pool)
        })
        .as_ref()
    }

    /// Starts one more evaluation thread; also used to replace a thread stuck past its
    /// timeout, so the pool keeps its capacity.
    fn add_thread(&self) -> bool {
        let rx = self.rx.clone();
        std::thread::Builder::new()
            .name("mts-jq".into())
            .stack_size(EVAL_STACK_BYTES)
            .spawn(move || {
                let mut cache: HashMap<String, Compiled> = HashMap::new();
                loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if !cache.contains_key(&job.program) {
                        if cache.len() >= CACHE_ENTRIES {
                            cache.clear();
                        }
                        match compile(&job.program) {
                            Ok(f) => {
                                cache.insert(job.program.clone(), f);
                            }
                            Err(e) => {
                                let _ = job.reply.send(Err(e));
                                continue;
                            }
                        }
                    }
                    let out = cache.get(&job.program).map(|f| run(f, &job.inputs));
                    let _ = job
                        .reply
                        .send(out.ok_or_else(|| "outputFormat lost".to_owned()));
                }
            })
            .is_ok()
    }
}

/// Applies `program` (already known to compile) to each `{input, output}` object, bounded by
/// `timeout` for the whole batch. A program refused by [`screen`], a runtime error, a
/// timeout or an oversized result is an `Err` for the record(s) concerned.
pub async fn format_batch(program: &str, inputs: Vec<Value>, timeout: Duration) -> Results {
    let n = inputs.len();
    let program = effective(program).to_owned();
    if let Err(e) = screen(&program) {
        return vec![Err(e); n];
    }
    let Some(pool) = JqPool::get() else {
        return vec![Err("outputFormat evaluation could not start".into()); n];
    };
    let inputs: Vec<String> = inputs.iter().map(Value::to_string).collect();
    let (reply, rx) = tokio::sync::oneshot::channel();
    if pool
        .tx
        .send(Job {
            program,
            inputs,
            reply,
        })
        .is_err()
    {
        return vec![Err("outputFormat evaluation could not start".into()); n];
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(results))) => results,
        Ok(Ok(Err(e))) => vec![Err(e); n],
        Ok(Err(_)) => vec![Err("outputFormat evaluation failed".into()); n],
        Err(_) => {
            // The thread is left to finish on its own (the screen keeps such programs rare);
            // a fresh one takes its place.
            pool.add_thread();
            vec![Err("outputFormat evaluation timed out".into()); n]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compile_check() {
        assert!(compiles(".output"));
        assert!(compiles("{partner_id: .input.id, value: .output.token}"));
        assert!(!compiles("{partner_id: "));
        assert!(!compiles(".foo("));
    }

    #[test]
    fn screen_refuses_hostile() {
        assert!(screen("def f: f; f").is_err());
        assert!(screen("[range(1e9)]").is_err());
        assert!(screen("\"x\" * 100000000").is_err());
        assert!(screen("[repeat(1)]").is_err());
        assert!(screen("{a: .input.range, b: \"def\"}").is_ok());
        assert!(
            screen("{partner_id: .input.id, id_type: \"MOSIP UIN TOKEN\", value: .output.token}")
                .is_ok()
        );
    }

    #[tokio::test]
    async fn formats_in_order() {
        let inputs = vec![
            json!({"input": {"id": 1}, "output": {"vid": "v", "token": "t"}}),
            json!({"input": {"id": 2}, "output": {"vid": "w", "token": null}}),
        ];
        let r = format_batch(
            "{z: .input.id, a: .output.token}",
            inputs.clone(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r[0], Ok(Some(json!({"z": 1, "a": "t"}))));
        let keys: Vec<_> = r[1]
            .clone()
            .unwrap()
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["z", "a"]);
        let r = format_batch("", inputs.clone(), Duration::from_secs(5)).await;
        assert_eq!(r[0], Ok(Some(json!({"vid": "v", "token": "t"}))));
        let r = format_batch("empty", inputs.clone(), Duration::from_secs(5)).await;
        assert_eq!(r[0], Ok(None));
        let r = format_batch(
            ".input.id | error(\"boom\")",
            inputs,
            Duration::from_secs(5),
        )
        .await;
        assert!(r[0].is_err());
    }
}
