//! The onnxruntime backend (cargo feature `onnxruntime`), through `ort` with `load-dynamic`:
//! `libonnxruntime.so` is opened at run time, so builds neither download nor link it.
//!
//! The same contract as the tract path: one input with the manifest's name and shape, one output
//! with the manifest's name, and a dry run that must give `[1,F]` (backbone) or `[1,1]` (head).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::builder::SessionBuilder;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorRef, ValueType};

use super::{InferError, Onnx};
use crate::model::{FileSpec, ModelError};

/// ort keeps one library and one global environment per process, so the path it came from is
/// kept here: a second, different path is refused with a clear error instead of ignored.
/// A failed load inside ort is kept too (as its message): ort must not be asked again.
static RUNTIME: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);

/// ort's own resolution of a relative name: next to the executable if there, else as given (for
/// the dynamic loader's search path).
fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(path)));
    beside.filter(|p| p.exists()).unwrap_or_else(|| path.to_path_buf())
}

/// Opens the library and looks for onnxruntime's entry point before `ort` is asked to: ort
/// 2.0.0-rc.13 marks its library as loaded even when the load fails, and the next use in the
/// process then crashes, which would turn `backend = "auto"` on a host without the library into
/// a crash of any later attempt. Our handle is closed again; ort opens the same file.
fn precheck(path: &Path) -> Result<(), ModelError> {
    // SAFETY: loading a shared library runs its initialisers; this is the library the operator
    // named for onnxruntime, which ort is about to load anyway.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| library_error(path, with_sources(&e)))?;
    // SAFETY: only the symbol's presence is checked; it is not called.
    unsafe { lib.get::<unsafe extern "C" fn() -> *const std::ffi::c_void>(b"OrtGetApiBase") }
        .map_err(|_| library_error(path, "not an onnxruntime library (no `OrtGetApiBase`)"))?;
    Ok(())
}

/// What `ort` opens when neither the config nor `ORT_DYLIB_PATH` names a file (its own default):
/// next to the executable if there, else wherever the dynamic loader finds it.
const DEFAULT_LIBRARY: &str = "libonnxruntime.so";

fn library_error(path: &Path, msg: impl std::fmt::Display) -> ModelError {
    ModelError::Runtime { path: path.display().to_string(), msg: msg.to_string() }
}

/// The library to load: the config's path, else `ORT_DYLIB_PATH`, else the loader's search path.
fn library_path(configured: Option<&Path>) -> PathBuf {
    match configured {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("ORT_DYLIB_PATH") {
            Some(p) if !p.is_empty() => p.into(),
            _ => DEFAULT_LIBRARY.into(),
        },
    }
}

fn with_sources(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    msg
}

/// Loads the library once per process; later calls must name the same file.
fn environment(library: Option<&Path>) -> Result<PathBuf, ModelError> {
    let path = library_path(library);
    let mut runtime = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    match runtime.as_ref() {
        Some(Ok(loaded)) if loaded == &path => return Ok(path),
        Some(Ok(loaded)) => {
            return Err(library_error(
                &path,
                format_args!("this process already uses {} (one onnxruntime library per process)", loaded.display()),
            ))
        }
        Some(Err(msg)) => {
            return Err(library_error(&path, format_args!("an earlier load in this process failed: {msg}")))
        }
        None => {}
    }
    // Resolved once, so ort opens the very file the precheck opened.
    let resolved = resolve(&path);
    precheck(&resolved)?;
    // Called ourselves, since ort's implicit load panics when the library is missing.
    let builder = match ort::init_from(&resolved) {
        Ok(b) => b,
        Err(e) => {
            let msg = match e {
                // libloading's message is just "dlopen failed"; the loader's reason is in its source.
                ort::LoadDynamicError::Dlopen { error, .. } => with_sources(&error),
                e => e.to_string(),
            };
            *runtime = Some(Err(msg.clone()));
            return Err(library_error(&path, msg));
        }
    };
    // The global environment's options; sessions create it on first use.
    builder.with_name("edgewatch").commit();
    tracing::info!(library = %path.display(), "onnxruntime loaded");
    *runtime = Some(Ok(path.clone()));
    Ok(path)
}

/// One graph in an onnxruntime session. `Session::run` needs `&mut`, and clones of an `Engine`
/// share the session, hence the mutex (never contended: one inference thread).
#[derive(Clone)]
pub struct Graph {
    session: Arc<Mutex<Session>>,
}

/// Both graphs, loaded from the bundle's bytes and checked against the contract; with the path
/// of the library that runs them.
pub(crate) fn load_pair(
    library: Option<&Path>,
    threads: usize,
    backbone: (&Onnx, &FileSpec, &[usize], &[usize]),
    head: (&Onnx, &FileSpec, &[usize], &[usize]),
) -> Result<(PathBuf, Graph, Graph), ModelError> {
    let path = environment(library)?;
    let b = load_graph(threads, backbone.0, backbone.1, "backbone", backbone.2, backbone.3)?;
    let h = load_graph(threads, head.0, head.1, "head", head.2, head.3)?;
    Ok((path, b, h))
}

fn new_session(threads: usize, src: &Onnx) -> Result<Session, String> {
    let s = |e: ort::Error<SessionBuilder>| e.to_string();
    let mut builder = Session::builder()
        .map_err(|e| e.to_string())?
        .with_intra_threads(threads)
        .map_err(s)?
        .with_inter_threads(1)
        .map_err(s)?
        // Spinning pool threads would burn the cores kept free for capture and encoding.
        .with_intra_op_spinning(false)
        .map_err(s)?;
    match src {
        Onnx::Bytes(bytes) => builder.commit_from_memory(bytes),
        Onnx::File(path) => builder.commit_from_file(path),
    }
    .map_err(|e| e.to_string())
}

fn load_graph(
    threads: usize,
    src: &Onnx,
    spec: &FileSpec,
    what: &str,
    shape: &[usize],
    out_shape: &[usize],
) -> Result<Graph, ModelError> {
    let contract = |msg: String| ModelError::Contract { what: format!("{what} ({})", spec.file), msg };
    let session = new_session(threads, src);
    // onnxruntime read the file itself: check that it is still the file the bundle verified
    // (before a parse error, so a changed file says so).
    if let Onnx::File(path) = src {
        let actual = crate::model::sha256_file(path)
            .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        spec.check_digest(actual)?;
    }
    let session = session.map_err(|e| contract(format!("not a loadable ONNX graph (onnxruntime): {e}")))?;

    let inputs = session.inputs();
    if inputs.len() != 1 {
        return Err(contract(format!("expected 1 input, found {}", inputs.len())));
    }
    let in_name = inputs[0].name();
    if in_name != spec.input {
        return Err(contract(format!("input is named `{in_name}`, the manifest says `{}`", spec.input)));
    }
    // Fixed dims must match the manifest; symbolic ones (-1) are bound by the dry run below.
    match inputs[0].dtype() {
        ValueType::Tensor { ty: ort::value::TensorElementType::Float32, shape: dims, .. } => {
            if dims.len() != shape.len() || dims.iter().zip(shape).any(|(d, s)| *d >= 0 && *d != *s as i64) {
                return Err(contract(format!("input shape is {dims:?}, the manifest implies {shape:?}")));
            }
        }
        other => return Err(contract(format!("input is {other}, the contract needs a float32 tensor"))),
    }
    let outputs = session.outputs();
    if outputs.len() != 1 {
        return Err(contract(format!("expected 1 output, found {}", outputs.len())));
    }
    let out_name = outputs[0].name();
    if out_name != spec.output {
        return Err(contract(format!("output is named `{out_name}`, the manifest says `{}`", spec.output)));
    }

    // Output dims are often symbolic in the metadata, so one run on zeros decides.
    let graph = Graph { session: Arc::new(Mutex::new(session)) };
    let zeros = vec![0f32; shape.iter().product()];
    let (got, _) = graph.run(shape, &zeros).map_err(|e| contract(format!("dry run on {shape:?} failed: {e}")))?;
    if got != out_shape {
        return Err(contract(format!("output shape is {got:?}, the contract needs {out_shape:?}")));
    }
    Ok(graph)
}

impl Graph {
    /// Runs the graph on one f32 tensor; returns the output's shape and values.
    pub fn run(&self, shape: &[usize], data: &[f32]) -> Result<(Vec<usize>, Vec<f32>), InferError> {
        let err = |e: ort::Error| InferError::Onnxruntime(e.to_string());
        let input = TensorRef::from_array_view((shape.to_vec(), data)).map_err(err)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run([SessionInputValue::from(input)]).map_err(err)?;
        let (out_shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        Ok((out_shape.iter().map(|d| *d as usize).collect(), values.to_vec()))
    }
}
