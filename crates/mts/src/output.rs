//! `outputFormat` (spec §3): a jq program applied to `{input, output}` of each record. Owns
//! what a program means for a batch of records: the fast path (an empty program and `.output`
//! need no jq at all), the static screen, and turning the pool's failures into record errors.
//! The evaluation itself, and its bounds, belong to [`crate::jq`]: it runs in worker processes
//! with memory, CPU, time and output limits. Owns no I/O.

use serde_json::Value;

use crate::jq::{Job, JqPool, Outcome};

/// Largest program text.
pub const MAX_PROGRAM_BYTES: usize = 16 * 1024;

/// The program used when `outputFormat` is empty.
pub fn effective(program: &str) -> &str {
    if program.trim().is_empty() {
        ".output"
    } else {
        program
    }
}

/// Whether the output of `program` is the `.output` object as it is, so no jq is needed: the
/// default, and the common case, must not pay for a round trip to a worker.
fn is_identity(program: &str) -> bool {
    matches!(effective(program).trim(), ".output")
}

/// Whether `program` parses and compiles (ATS-REQ-103 otherwise), checked by a worker: the
/// jaq parser recurses, so even parsing a hostile program must not happen in the server.
pub async fn compiles(pool: &JqPool, program: &str) -> bool {
    program.len() <= MAX_PROGRAM_BYTES && (is_identity(program) || pool.compiles(program).await)
}

/// Builtins (and syntax) that can loop or recurse without bound on a finite input, or build
/// unbounded data from a number. Filters of registries do not need them. This screen is not
/// the bound (a word list cannot make jq safe: `.+.` doubled 40 times passes it); it refuses
/// the obvious cases early, with a message that names the construct.
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

type Results = Vec<Outcome>;

/// Applies `program` (already known to compile) to each `{input, output}` object, in one job of
/// the pool bounded by its time limit for the whole batch. A program refused by [`screen`], a
/// runtime error, a timeout, a worker past its memory or CPU limit, or an oversized result is
/// an `Err` for the record(s) concerned.
pub async fn format_batch(pool: &JqPool, program: &str, inputs: Vec<Value>) -> Results {
    let n = inputs.len();
    if is_identity(program) {
        return inputs
            .into_iter()
            .map(|mut v| {
                Ok(Some(
                    v.get_mut("output").map(Value::take).unwrap_or(Value::Null),
                ))
            })
            .collect();
    }
    let program = effective(program).to_owned();
    if let Err(e) = screen(&program) {
        return vec![Err(e); n];
    }
    match pool.run(&Job { program, inputs }).await {
        Ok(Ok(results)) if results.len() == n => results,
        Ok(Ok(_)) => vec![Err("outputFormat evaluation failed".into()); n],
        Ok(Err(e)) => vec![Err(e); n],
        Err(e) => vec![Err(e.to_string()); n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_needs_no_jq() {
        assert!(is_identity(""));
        assert!(is_identity("  .output "));
        assert!(!is_identity(".output.token"));
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

    /// The fast path never reaches the pool: its worker program does not even exist.
    #[tokio::test]
    async fn identity_is_served_without_a_worker() {
        let pool = JqPool::new(crate::jq::JqSettings {
            worker_program: Some("/nonexistent/jq-worker".into()),
            ..Default::default()
        });
        let inputs = vec![
            json!({"input": {"id": 1}, "output": {"vid": "v", "status": "processed", "token": "t"}}),
            json!({"input": {"id": 2}, "output": {"vid": "w", "token": null}}),
        ];
        for program in ["", ".output", " .output\n"] {
            let r = format_batch(&pool, program, inputs.clone()).await;
            assert_eq!(r[0], Ok(Some(inputs[0]["output"].clone())));
            assert_eq!(r[1], Ok(Some(json!({"vid": "w", "token": null}))));
            let keys: Vec<_> = r[0]
                .clone()
                .unwrap()
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert_eq!(keys, ["vid", "status", "token"]);
            assert!(compiles(&pool, program).await);
        }
        // Anything else needs the worker, which cannot start here: an error, not a panic.
        let r = format_batch(&pool, ".output.token", inputs).await;
        assert!(
            r[0].as_ref().is_err_and(|e| e.contains("could not start")),
            "{r:?}"
        );
    }
}
