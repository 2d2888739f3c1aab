//! `flowai_harness._internal`: the pyo3 glue over `flowai_engine`.
//!
//! Bytes in, bytes out, and one error mapping: every `EngineError` becomes the native
//! `EngineError(code, message, line)` exception, which `flowai_harness._native` turns into the
//! typed Python hierarchy. No decisions are made here; nothing but the engine is imported.

use flowai_engine::{engine, EngineError as CoreError, OutputKind, Spec, Thread};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

create_exception!(
    _internal,
    EngineError,
    PyException,
    "An engine rejection: args are (code, message, line or None)."
);

fn to_py(err: CoreError) -> PyErr {
    EngineError::new_err((err.code.as_str(), err.message, err.line))
}

fn snapshot_bytes<'py>(py: Python<'py>, thread: &Thread) -> Bound<'py, PyBytes> {
    // A snapshot holds only strings, numbers and raw JSON: serializing cannot fail.
    let bytes = serde_json::to_vec(&thread.snapshot()).expect("snapshots always serialize");
    PyBytes::new(py, &bytes)
}

/// Compile a runtime spec; returns the normalized spec JSON, with the engine's knowledge of
/// each agent (its tools, their schemas and the rules its calls run under) under `compiled`.
#[pyfunction]
fn compile_spec<'py>(py: Python<'py>, spec: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let spec = Spec::compile(spec).map_err(to_py)?;
    Ok(PyBytes::new(py, &spec.to_json()))
}

/// The names of the engine's built-in tools (reserved: no spec tool may take one).
#[pyfunction]
fn builtin_tool_names() -> Vec<&'static str> {
    flowai_engine::spec::BUILTIN_TOOLS.to_vec()
}

/// The toolkits a spec may name (the engine grants the tools of each; `catalog` is refused).
#[pyfunction]
fn toolkit_names() -> Vec<&'static str> {
    flowai_engine::spec::TOOLKITS.to_vec()
}

/// What an approval id names, `(thread_id, run_id, call_id)`, or None when it is not one.
#[pyfunction]
fn parse_approval_id(approval_id: &str) -> Option<(&str, &str, &str)> {
    flowai_engine::ids::parse_approval_id(approval_id)
        .map(|approval| (approval.thread_id, approval.run_id, approval.call_id))
}

/// Check a JSON value against a JSON Schema with the engine's validator.
#[pyfunction]
fn validate_json(schema: &[u8], value: &[u8]) -> PyResult<()> {
    flowai_engine::schema::check_json(schema, value).map_err(to_py)
}

/// Fold a newline-separated run log into fresh thread states (no spec, no decisions).
#[pyfunction]
fn replay(py: Python<'_>, log: &[u8]) -> PyResult<Replay> {
    let replay = py.detach(|| engine::replay(log)).map_err(to_py)?;
    Ok(Replay {
        threads: replay.threads,
        lines: replay.lines,
    })
}

/// Restore one thread from its snapshot and fold the log lines after it (covered lines are
/// skipped, so the whole log works too).
#[pyfunction]
#[pyo3(signature = (snapshot, tail, thread_id=None))]
fn replay_from(
    py: Python<'_>,
    snapshot: &[u8],
    tail: &[u8],
    thread_id: Option<&str>,
) -> PyResult<Replay> {
    let replay = py
        .detach(|| flowai_engine::snapshot::replay_from(snapshot, thread_id, tail))
        .map_err(to_py)?;
    Ok(Replay {
        threads: replay.threads,
        lines: replay.lines,
    })
}

#[pyclass(module = "flowai_harness._internal", frozen)]
struct Replay {
    threads: Vec<Thread>,
    lines: usize,
}

#[pymethods]
impl Replay {
    #[getter]
    fn lines(&self) -> usize {
        self.lines
    }

    fn thread_ids(&self) -> Vec<String> {
        self.threads.iter().map(|t| t.id.clone()).collect()
    }

    fn status(&self, thread_id: &str) -> Option<&'static str> {
        self.find(thread_id).map(|t| t.phase().as_str())
    }

    fn snapshot<'py>(&self, py: Python<'py>, thread_id: &str) -> Option<Bound<'py, PyBytes>> {
        self.find(thread_id).map(|t| snapshot_bytes(py, t))
    }

    /// The versioned snapshot of a thread (to restore later), covering what was folded.
    fn save<'py>(&self, py: Python<'py>, thread_id: &str) -> Option<Bound<'py, PyBytes>> {
        self.find(thread_id)
            .map(|t| PyBytes::new(py, &flowai_engine::snapshot::encode(t)))
    }

    fn last_seq(&self, thread_id: &str) -> Option<u64> {
        self.find(thread_id).map(|t| t.last_seq)
    }
}

impl Replay {
    fn find(&self, thread_id: &str) -> Option<&Thread> {
        self.threads.iter().find(|t| t.id == thread_id)
    }
}

#[pyclass(module = "flowai_harness._internal", name = "Engine")]
struct PyEngine {
    inner: engine::Engine,
}

#[pymethods]
impl PyEngine {
    #[new]
    fn new(config: &[u8]) -> PyResult<Self> {
        Ok(PyEngine {
            inner: engine::Engine::new(config).map_err(to_py)?,
        })
    }

    /// Feed a JSON array of input envelopes; returns `[(kind, thread_id, bytes), ...]` with
    /// kind 0 = run-log event, 1 = effect, 2 = rejection, 3 = duplicate (ignored input).
    fn handle_batch<'py>(&mut self, py: Python<'py>, batch: &[u8]) -> PyResult<Bound<'py, PyList>> {
        self.inner.handle_batch(batch).map_err(to_py)?;
        self.drain(py)
    }

    /// Feed separate input envelopes (each may be malformed: it becomes a rejection);
    /// returns what `handle_batch` returns.
    fn handle_many<'py>(
        &mut self,
        py: Python<'py>,
        inputs: Vec<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.inner.handle_many(inputs.iter().map(Vec::as_slice));
        self.drain(py)
    }
    /// Fold one run-log line (a thread seen for the first time must start at seq 1).
    fn apply(&mut self, line: &[u8]) -> PyResult<()> {
        self.inner.apply(line).map_err(to_py)
    }

    /// Fold a whole log of threads not held yet; returns how many threads it added. Runs
    /// without the GIL, so a service can fetch the next chunk while this one folds.
    fn load(&mut self, py: Python<'_>, log: &[u8]) -> PyResult<usize> {
        let engine = &mut self.inner;
        py.detach(|| engine.load(log)).map_err(to_py)
    }

    fn has_thread(&self, thread_id: &str) -> bool {
        self.inner.thread(thread_id).is_some()
    }

    fn status(&self, thread_id: &str) -> Option<&'static str> {
        self.inner.thread(thread_id).map(|t| t.phase().as_str())
    }

    fn snapshot<'py>(&self, py: Python<'py>, thread_id: &str) -> Option<Bound<'py, PyBytes>> {
        self.inner.thread(thread_id).map(|t| snapshot_bytes(py, t))
    }

    /// When `thread_id` next needs the time (an approval's deadline, a model retry or a model
    /// request's timeout), in ms, if it does.
    fn deadline(&self, thread_id: &str) -> Option<i64> {
        self.inner.deadline(thread_id)
    }

    /// Every thread whose deadline is at or before `now` (ms), earliest first.
    fn due(&self, now: i64) -> Vec<String> {
        self.inner.due(now).into_iter().map(str::to_owned).collect()
    }

    /// The earliest deadline of every thread held: `(thread_id, ms)`.
    fn next_deadline(&self) -> Option<(String, i64)> {
        self.inner
            .next_deadline()
            .map(|(thread, at)| (thread.to_owned(), at))
    }

    fn forget(&mut self, thread_id: &str) -> bool {
        self.inner.forget(thread_id)
    }

    /// The versioned snapshot of a held thread (`flowai_engine::snapshot`).
    fn save<'py>(&self, py: Python<'py>, thread_id: &str) -> Option<Bound<'py, PyBytes>> {
        self.inner.save(thread_id).map(|b| PyBytes::new(py, &b))
    }

    /// Hold the thread a snapshot carries (refused unless it is `thread_id`, when given);
    /// returns the seq it covers.
    #[pyo3(signature = (snapshot, thread_id=None))]
    fn restore(&mut self, snapshot: &[u8], thread_id: Option<&str>) -> PyResult<u64> {
        self.inner.restore(snapshot, thread_id).map_err(to_py)
    }

    /// Fold log lines after what is held (covered lines skipped); returns the lines folded.
    fn load_tail(&mut self, py: Python<'_>, log: &[u8]) -> PyResult<usize> {
        let engine = &mut self.inner;
        py.detach(|| engine.load_tail(log)).map_err(to_py)
    }

    /// Start a thread from another's log (`flowai_engine::fork`); returns what
    /// `handle_batch` returns: the new thread's events and, at a gate, its approval request.
    fn fork<'py>(
        &mut self,
        py: Python<'py>,
        input: &[u8],
        source_log: &[u8],
    ) -> PyResult<Bound<'py, PyList>> {
        self.inner.fork(input, source_log).map_err(to_py)?;
        self.drain(py)
    }

    /// The seq of the last event a held thread folded.
    fn last_seq(&self, thread_id: &str) -> Option<u64> {
        self.inner.thread(thread_id).map(|t| t.last_seq)
    }

    /// Every thread held, in no particular order.
    fn thread_ids(&self) -> Vec<String> {
        self.inner.thread_ids()
    }

    fn spec_json<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.spec().to_json())
    }
}

impl PyEngine {
    /// Everything the engine decided since the last drain, as Python tuples.
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for output in self.inner.drain_outputs() {
            let kind = match output.kind {
                OutputKind::Event => 0u8,
                OutputKind::Effect => 1,
                OutputKind::Rejection => 2,
                OutputKind::Duplicate => 3,
            };
            let item = PyTuple::new(
                py,
                [
                    kind.into_pyobject(py)?.into_any(),
                    output.thread_id.into_pyobject(py)?.into_any(),
                    PyBytes::new(py, &output.bytes).into_any(),
                ],
            )?;
            out.append(item)?;
        }
        Ok(out)
    }
}

#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", flowai_engine::VERSION)?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    m.add_class::<PyEngine>()?;
    m.add_class::<Replay>()?;
    m.add_function(wrap_pyfunction!(compile_spec, m)?)?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    m.add_function(wrap_pyfunction!(replay_from, m)?)?;
    m.add_function(wrap_pyfunction!(validate_json, m)?)?;
    m.add_function(wrap_pyfunction!(parse_approval_id, m)?)?;
    m.add_function(wrap_pyfunction!(builtin_tool_names, m)?)?;
    m.add_function(wrap_pyfunction!(toolkit_names, m)?)?;
    Ok(())
}
