//! Gives memory that the allocator keeps after a large transient peak back to the system.
#![allow(unsafe_code)]

/// Returns glibc's free heap pages to the kernel (`malloc_trim`). A full sync builds and
/// frees hundreds of megabytes at 10k services; glibc keeps those pages mapped, so the
/// resident set would stay at the sync's peak until the next one. A no-op on other libcs.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim takes no pointers and only walks glibc's own heap under the
        // allocator's locks; it is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
        tracing::debug!(
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "returned freed memory"
        );
    }
}
