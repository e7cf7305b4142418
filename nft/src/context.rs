//! A safe owner of one libnftables context: run nft commands, get nft's output or its error.
//!
//! libnftables keeps process-wide state besides the context (an interface cache, one-time
//! library initialisation) and is not thread-safe. So every call into it takes one global
//! lock, and a [`Context`] is neither `Send` nor `Sync`: it lives and dies on the thread that
//! created it (see [`crate::worker`] for a context on a dedicated thread). The netlink socket
//! is opened when the context is created, in the creating thread's network namespace, and
//! every command it runs goes to that namespace.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ffi;

/// Serialises every call into libnftables in this process.
static LIBNFTABLES: Mutex<()> = Mutex::new(());

fn library() -> MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic while holding the lock leaves nothing inconsistent.
    LIBNFTABLES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why nft commands did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NftError {
    /// `nft_ctx_new` returned no context.
    #[error("libnftables could not create a context")]
    CreateContext,
    /// libnftables could not redirect its output or errors into a buffer.
    #[error("libnftables could not buffer its {what}")]
    BufferOutput { what: &'static str },
    /// The input holds a NUL byte, which would silently cut it short in C.
    #[error("nft input contains a NUL byte at offset {offset}")]
    NulInInput { offset: usize },
    /// nft refused the commands (parse, evaluation or kernel error); nothing changed.
    #[error("nft refused the commands: {message}")]
    Refused { message: String },
    /// The worker thread that owns the context is gone.
    #[error("the libnftables worker thread is gone")]
    WorkerGone,
}

/// One libnftables context with buffered output and errors.
#[derive(Debug)]
pub struct Context {
    ctx: NonNull<ffi::nft_ctx>,
    /// The output flags set at creation; `run` adds the JSON flag when asked.
    base_flags: std::ffi::c_uint,
    /// Keeps `Context` `!Send` and `!Sync` whatever the pointer type says.
    _not_send: PhantomData<*mut ()>,
}

impl Context {
    /// Creates a context whose netlink socket is in the calling thread's network namespace.
    pub fn new() -> Result<Context, NftError> {
        let _lock = library();
        // SAFETY: nft_ctx_new takes no pointers; it returns a new context that we own (or
        // NULL), released exactly once, by `Drop` or below.
        let raw = unsafe { ffi::nft_ctx_new(ffi::NFT_CTX_DEFAULT) };
        let ctx = NonNull::new(raw).ok_or(NftError::CreateContext)?;
        // From here on, `context`'s Drop frees the context on every early return.
        let mut context = Context {
            ctx,
            base_flags: 0,
            _not_send: PhantomData,
        };
        // SAFETY: `ctx` is the live context created above and owned by `context`; the
        // buffers these calls set up are owned by the context and freed with it.
        let (out, err) = unsafe {
            (
                ffi::nft_ctx_buffer_output(ctx.as_ptr()),
                ffi::nft_ctx_buffer_error(ctx.as_ptr()),
            )
        };
        if out != 0 {
            return Err(NftError::BufferOutput { what: "output" });
        }
        if err != 0 {
            return Err(NftError::BufferOutput {
                what: "error messages",
            });
        }
        // SAFETY: `ctx` is live and owned by `context`.
        context.base_flags =
            unsafe { ffi::nft_ctx_output_get_flags(ctx.as_ptr()) } & !ffi::NFT_CTX_OUTPUT_JSON;
        Ok(context)
    }

    /// Runs `input` as one batch (all or nothing) and returns nft's output (a listing, or
    /// empty). With `json`, input and output are nft JSON, as with `nft -j`.
    pub fn run(&mut self, input: &str, json: bool) -> Result<String, NftError> {
        let input = CString::new(input).map_err(|e| NftError::NulInInput {
            offset: e.nul_position(),
        })?;
        let flags = if json {
            self.base_flags | ffi::NFT_CTX_OUTPUT_JSON
        } else {
            self.base_flags
        };
        let _lock = library();
        let ctx = self.ctx.as_ptr();
        // SAFETY: `ctx` is live for as long as `self`; `input` is a NUL-terminated string
        // that outlives the call and that libnftables only reads (it copies it first).
        let rc = unsafe {
            ffi::nft_ctx_output_set_flags(ctx, flags);
            ffi::nft_run_cmd_from_buffer(ctx, input.as_ptr())
        };
        // Both buffers are read after every run: reading one rewinds it, so the next run
        // starts with empty buffers whatever this one wrote.
        // SAFETY: the returned pointers are NULL or NUL-terminated strings owned by `ctx`,
        // valid until the next call into it; `copied` copies them out before that.
        let (output, errors) = unsafe {
            (
                copied(ffi::nft_ctx_get_output_buffer(ctx)),
                copied(ffi::nft_ctx_get_error_buffer(ctx)),
            )
        };
        if rc == 0 {
            Ok(output)
        } else {
            Err(NftError::Refused {
                message: refusal_message(errors, rc),
            })
        }
    }
}

/// Compile-time proof that `Context` is neither `Send` nor `Sync`: if it were either, one of
/// the `Ambiguous…` traits below would apply a second time and the call would not compile.
const _: fn() = || {
    trait AmbiguousIfSend<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    <Context as AmbiguousIfSend<_>>::check();
    <Context as AmbiguousIfSync<_>>::check();
};

/// nft's error text, or a placeholder naming the return code when nft wrote none.
fn refusal_message(errors: String, rc: i32) -> String {
    let trimmed = errors.trim_end();
    if trimmed.is_empty() {
        format!("nft_run_cmd_from_buffer returned {rc} without an error message")
    } else {
        trimmed.to_owned()
    }
}

/// Copies a C string owned by libnftables into an owned `String` (lossily: nft may print
/// bytes that are not UTF-8, e.g. from a comment another tool wrote).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn copied(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller: a valid NUL-terminated string for this call.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

impl Drop for Context {
    fn drop(&mut self) {
        let _lock = library();
        // SAFETY: `self.ctx` was returned by nft_ctx_new, is owned by this value alone and is
        // freed exactly once, here; no pointer into it (buffers) outlives `self`.
        unsafe { ffi::nft_ctx_free(self.ctx.as_ptr()) }
    }
}
