//! The libnftables C API this crate uses, declared by hand from `nftables/libnftables.h` (1.0.6).
//!
//! Only what `Context` needs is declared. libnftables 1.0.6 has no `nft_ctx_input_set_flags`
//! (it arrived in 1.0.7 with `NFT_CTX_INPUT_JSON`): in 1.0.6, `nft_run_cmd_from_buffer` parses
//! its input as JSON whenever the *output* flag [`NFT_CTX_OUTPUT_JSON`] is set, and falls back
//! to the script parser when the input is not JSON at all. So one flag switches both
//! directions, exactly like `nft -j`.
#![allow(unsafe_code, non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint};

/// The opaque libnftables context (`struct nft_ctx`).
#[repr(C)]
#[derive(Debug)]
pub struct nft_ctx {
    _opaque: [u8; 0],
    // Not Send, not Sync, not Unpin: the context is only ever used through a pointer.
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

/// `NFT_CTX_DEFAULT`: the only flag `nft_ctx_new` knows; opens the netlink socket.
pub const NFT_CTX_DEFAULT: u32 = 0;

/// `NFT_CTX_OUTPUT_JSON` (`1 << 4`): JSON output, and (1.0.6) JSON input first.
pub const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;

// Linked by the build script (pkg-config emits `-lnftables`).
unsafe extern "C" {
    /// Allocates a context; with `NFT_CTX_DEFAULT` it also opens a netlink socket in the
    /// calling thread's network namespace.
    pub fn nft_ctx_new(flags: u32) -> *mut nft_ctx;
    /// Frees a context and everything it owns (buffers, cache, socket).
    pub fn nft_ctx_free(ctx: *mut nft_ctx);
    pub fn nft_ctx_output_get_flags(ctx: *mut nft_ctx) -> c_uint;
    pub fn nft_ctx_output_set_flags(ctx: *mut nft_ctx, flags: c_uint);
    /// Sends output into a buffer owned by the context instead of stdout; 0 on success.
    pub fn nft_ctx_buffer_output(ctx: *mut nft_ctx) -> c_int;
    /// Sends error messages into a buffer owned by the context instead of stderr.
    pub fn nft_ctx_buffer_error(ctx: *mut nft_ctx) -> c_int;
    /// The buffered output since the last call, NUL-terminated, owned by the context and
    /// valid until the next call into it; reading it rewinds the buffer.
    pub fn nft_ctx_get_output_buffer(ctx: *mut nft_ctx) -> *const c_char;
    /// Like [`nft_ctx_get_output_buffer`], for error messages.
    pub fn nft_ctx_get_error_buffer(ctx: *mut nft_ctx) -> *const c_char;
    /// Parses and runs `buf` (NUL-terminated) as one batch; 0 on success.
    pub fn nft_run_cmd_from_buffer(ctx: *mut nft_ctx, buf: *const c_char) -> c_int;
}
