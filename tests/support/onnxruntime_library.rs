//! Where the tests and benches find libonnxruntime.so: `ORT_DYLIB_PATH`, else the PyPI wheel in
//! the model tooling's venv (model/run-tests.sh installs it). Shared by tests/integration and
//! benches/inference.rs through `#[path]`.

use std::path::PathBuf;

/// The library, or a panic saying how to get one (tests need it).
#[allow(dead_code)] // the benches use `find_onnxruntime_library`
pub fn onnxruntime_library() -> PathBuf {
    find_onnxruntime_library().unwrap_or_else(|| {
        panic!(
            "no libonnxruntime.so in /opt/edgewatch-model-venv or model/.venv: run model/run-tests.sh first \
             (it installs the onnxruntime wheel), or set ORT_DYLIB_PATH"
        )
    })
}

/// The library if there is one (the benches skip onnxruntime without it).
pub fn find_onnxruntime_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The two venvs model/run-tests.sh may use.
    for venv in [PathBuf::from("/opt/edgewatch-model-venv"), repo.join("model/.venv")] {
        let Ok(lib) = std::fs::read_dir(venv.join("lib")) else { continue };
        for py in lib.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("python3")) {
            let Ok(capi) = std::fs::read_dir(py.path().join("site-packages/onnxruntime/capi")) else { continue };
            if let Some(f) = capi.flatten().find(|f| f.file_name().to_string_lossy().starts_with("libonnxruntime.so")) {
                return Some(f.path());
            }
        }
    }
    None
}
