//! Loads the ONNX Runtime shared library once per process.
//!
//! `ort` is built with `load-dynamic`: nothing is linked or downloaded at build time, and
//! the library (from the PyPI `onnxruntime` wheel, fetched by `make assets`) is opened
//! here. A missing or wrong file is an error that names the path and the fix. The load is
//! not retried through `ort::Error`, whose construction would try to load the library again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::environment::Environment;
use ort::logging::LogLevel;
use parking_lot::Mutex;

use super::InferenceError;

/// Where `make assets` puts the library, relative to the working directory.
pub const DEFAULT_LIBRARY: &str = ".cache/onnxruntime/libonnxruntime.so.1.32.0";
/// Environment variable naming the library (the same one `ort` documents).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

const FIX: &str = "run `make assets` (it unpacks libonnxruntime.so.1.32.0 from the PyPI \
                   onnxruntime wheel into .cache/onnxruntime/), or point ORT_DYLIB_PATH or \
                   inference.runtime_path at an ONNX Runtime 1.32 libonnxruntime.so";

/// The loaded library and the environment sessions are built in.
pub struct Runtime {
    /// The file the library was loaded from.
    pub path: PathBuf,
    /// ONNX Runtime's version string.
    pub version: String,
    /// The process-wide `ort` environment.
    pub environment: Environment,
}

static LOADED: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The library to load: the configured path, else `$ORT_DYLIB_PATH`, else the default.
pub fn resolve_library(configured: &str) -> PathBuf {
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    match std::env::var_os(LIBRARY_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_LIBRARY),
    }
}

/// Loads the library at `path` (once per process) and returns the shared runtime.
///
/// The library can only be loaded once: a later call with another path gets the one
/// already loaded, and says so in the log.
pub fn load(path: &Path) -> Result<Arc<Runtime>, InferenceError> {
    let mut loaded = LOADED.lock();
    if let Some(runtime) = loaded.as_ref() {
        if runtime.path != absolute(path) {
            tracing::warn!(
                requested = %path.display(),
                loaded = %runtime.path.display(),
                "ONNX Runtime is already loaded; using the loaded library"
            );
        }
        return Ok(runtime.clone());
    }
    let path = absolute(path);
    if !path.is_file() {
        return Err(InferenceError::Runtime(format!(
            "ONNX Runtime library not found at {}: {FIX}",
            path.display()
        )));
    }
    let builder = match ort::init_from(&path) {
        Ok(builder) => builder,
        Err(error) => {
            return Err(InferenceError::Runtime(format!(
                "cannot load ONNX Runtime from {}: {error}; {FIX}",
                path.display()
            )))
        }
    };
    let environment = builder.with_name("synopticon").build().map_err(|e| {
        InferenceError::Runtime(format!(
            "ONNX Runtime from {} loaded but could not start: {e}",
            path.display()
        ))
    })?;
    // ONNX Runtime warns on stderr about harmless model quirks (CenterFace lists its
    // weights among the graph inputs); our own log says what matters.
    environment.set_log_level(LogLevel::Error);
    // The wheel's file name carries the version (libonnxruntime.so.1.32.0); the build
    // string carries the branch it was built from.
    let version = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(".so.").map(|(_, v)| v.to_string()))
        .unwrap_or_else(|| ort::info().trim().to_string());
    tracing::info!(path = %path.display(), %version, "ONNX Runtime loaded");
    let runtime = Arc::new(Runtime {
        path,
        version,
        environment,
    });
    *loaded = Some(runtime.clone());
    Ok(runtime)
}

/// The library loaded so far, if any.
pub fn loaded() -> Option<Arc<Runtime>> {
    LOADED.lock().clone()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_the_path_and_the_fix() {
        let error = load(Path::new("/nonexistent/libonnxruntime.so")).err();
        let Some(InferenceError::Runtime(message)) = error else {
            panic!("expected a runtime error, got {error:?}");
        };
        assert!(
            message.contains("/nonexistent/libonnxruntime.so"),
            "{message}"
        );
        assert!(message.contains("make assets"), "{message}");
    }

    #[test]
    fn a_file_that_is_not_onnx_runtime_is_refused_without_a_panic() {
        let dir = std::env::temp_dir().join(format!("synopticon-ort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let fake = dir.join("libonnxruntime.so");
        std::fs::write(&fake, b"not a shared library").expect("write");
        let error = load(&fake).err();
        let Some(InferenceError::Runtime(message)) = error else {
            panic!("expected a runtime error, got {error:?}");
        };
        assert!(message.contains("cannot load ONNX Runtime"), "{message}");
        assert!(
            message.contains(fake.to_str().unwrap_or_default()),
            "{message}"
        );
    }
}
