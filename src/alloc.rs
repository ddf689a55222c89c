//! The C allocator's set-up, done once before any thread starts.

/// Limits glibc's malloc to one arena, unless `MALLOC_ARENA_MAX` already says how many.
///
/// glibc gives each new thread its own arena (up to 8 per core). The inference thread allocates
/// and frees every intermediate tensor of every frame while the tokio threads allocate small
/// buffers beside it, and each arena keeps its own freed pages resident. With one arena the peak
/// RSS of `detect` on a width-1.0 224x224 model fell from 90 to 75 MiB with tract and from 99 to
/// 87 MiB with onnxruntime, at no CPU cost (bench/detect-vs-python.sh, bench/README.md).
/// Allocation here is a few calls per frame per thread, so one arena's lock is never contended.
/// Call it first thing in `main`: arenas already handed to threads stay.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns the heap's free pages to the kernel (glibc's `malloc_trim`), after a phase that
/// freed much more than it kept: loading the model. Elsewhere the allocator's own trimming does.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
