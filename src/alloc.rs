//! The allocators: jemalloc for Rust's own allocations, glibc's malloc (one arena) for the C and
//! C++ libraries (libjpeg-turbo, OpenH264, onnxruntime).
//!
//! Why jemalloc: tract allocates and frees every intermediate tensor of every frame (up to 4.8 MB
//! each at 224x224). glibc's heap held 42 MiB resident around a live heap of 14-20 MB (heaptrack),
//! so `detect`'s peak RSS on a width-1.0 224 model was 71.0 MiB (median); with jemalloc, one arena
//! and no thread caches, 61.8 MiB side by side at no more CPU (bench/detect-ab.sh, bench/README.md,
//! issue 21). Its size classes keep each frame's tensors in the same extents.

/// Rust's global allocator, in the library so the binary, its tests and the benches share it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it initialises (before `main`): one arena, because the inference
/// thread's tensors are most of what is allocated and a second arena would only hold freed pages
/// of its own; no thread caches, which hold freed tensors per thread (each lowers the peak; both
/// together most). `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a pointer to the first byte of a 'static NUL-terminated string.
    unsafe { &*JEMALLOC_OPTIONS.as_ptr() },
);
const JEMALLOC_OPTIONS: &std::ffi::CStr = c"narenas:1,tcache:false";

/// What the start-up log says about the allocator, e.g. "jemalloc (1 arena, no thread cache, 4
/// KiB pages)".
pub fn describe() -> String {
    let arenas = tikv_jemalloc_ctl::opt::narenas::read().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    let tcache = tikv_jemalloc_ctl::opt::tcache::read().unwrap_or(true);
    let page = page_size().map(|p| format!("{} KiB pages", p / 1024)).unwrap_or_else(|| "? pages".into());
    format!(
        "jemalloc ({arenas} arena{}, {}, {page})",
        if arenas == "1" { "" } else { "s" },
        if tcache { "thread caches" } else { "no thread cache" }
    )
}

/// The page size jemalloc was built for (`JEMALLOC_SYS_WITH_LG_PAGE`, .cargo/config.toml).
fn page_size() -> Option<usize> {
    // SAFETY: "arenas.page" is a read-only size_t.
    unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"arenas.page\0") }.ok()
}

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

/// Returns glibc's free heap pages to the kernel (`malloc_trim`), after a phase that freed much
/// more than it kept: loading the model (onnxruntime's allocations are glibc's). Elsewhere the
/// allocators' own trimming does.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rust_allocates_from_one_jemalloc_arena_without_thread_caches() {
        // A Box comes from the global allocator: jemalloc counts it once its stats are refreshed.
        let before = tikv_jemalloc_ctl::thread::allocatedp::read().unwrap().get();
        let b = std::hint::black_box(vec![7u8; 1 << 20]);
        let after = tikv_jemalloc_ctl::thread::allocatedp::read().unwrap().get();
        assert!(after - before >= 1 << 20, "1 MiB not allocated by jemalloc: {before} -> {after}");
        drop(b);
        if std::env::var_os("_RJEM_MALLOC_CONF").is_none() {
            assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1, "malloc_conf not applied");
            assert!(!tikv_jemalloc_ctl::opt::tcache::read().unwrap(), "malloc_conf not applied");
            assert_eq!(super::describe(), "jemalloc (1 arena, no thread cache, 4 KiB pages)");
        }
    }

    #[test]
    fn jemalloc_is_built_for_4_kib_pages() {
        // Pinned per target (.cargo/config.toml, the Nix package), not taken from the build
        // machine: a binary built on a 16 KiB page machine would hold more, and one built for 4 KiB
        // aborts on a 16 KiB kernel, which the node preflight's page_size check reports.
        assert_eq!(super::page_size(), Some(4096));
    }
}
