//! nftproxy-wire: the frames nftproxy and its nftables helper exchange over a pair of pipes.
//!
//! nftproxy does not link libnftables (GPL-2.0-only) into its own binary. A small helper
//! program, `nftproxy-nft`, links it and runs nft commands for its parent; the two talk
//! through the helper's stdin and stdout. What crosses the pipe is nft's own public input
//! and output (nft JSON or nft script in, nft's output or error text back), wrapped in the
//! frames defined here. Both sides use this crate, so it depends on std alone.
//!
//! # Frames
//!
//! Every frame is a 5-byte header followed by a payload:
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | request kind or response status |
//! | 1..5 | payload length, u32 big-endian, at most [`MAX_FRAME_LEN`] |
//! | 5.. | payload: UTF-8 text |
//!
//! Request kinds: `0x01` [`Request::Ping`] (empty payload), `0x02` [`Request::Run`] with an
//! nft script, `0x82` [`Request::Run`] with nft JSON (bit `0x80` is the JSON flag: input
//! and output are JSON, as with `nft -j`). The payload of a `Run` is the whole input of one
//! `nft_run_cmd_from_buffer` call, which libnftables commits as one netlink batch.
//!
//! A `Run` may also be streamed: its kind has bit `0x40` set, its header announces 0 bytes,
//! and the payload follows in chunks, each a u32 big-endian length and its bytes, ended by a
//! chunk of length 0 (see [`write_run_with`]). The parent sends a full ruleset that way
//! without holding its whole text.
//!
//! Response statuses: `0x00` [`Response::Ok`] with nft's output (for a listing, the JSON
//! document; often empty), `0x01` [`Response::Err`] with nft's error text.
//!
//! The parent writes one request and reads one response, in turn; the helper answers every
//! request in order and exits when its stdin reaches end of file between two frames.

mod stream;

use std::fmt;
use std::io::{self, Read, Write};

pub use stream::CHUNK_LEN;
use stream::{ChunkWriter, FLAG_STREAMED, read_chunks};

/// The largest payload either side writes or accepts: 1 GiB.
pub const MAX_FRAME_LEN: u32 = 1 << 30;

/// Bytes in a frame header: kind or status, then the u32 length.
pub const HEADER_LEN: usize = 5;

const KIND_PING: u8 = 0x01;
const KIND_RUN: u8 = 0x02;
const FLAG_JSON: u8 = 0x80;
const STATUS_OK: u8 = 0x00;
const STATUS_ERR: u8 = 0x01;

/// How the commands of a [`Request::Run`] are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// nft's script syntax (`nft -f`); output is nft's text.
    Script,
    /// nft's JSON (`nft -j -f`); output is JSON.
    Json,
}

/// What the parent asks of the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Answered with an empty [`Response::Ok`]: the helper is alive and in step.
    Ping,
    /// Run these commands as one nft batch (all or nothing).
    Run { format: Format, commands: String },
}

/// The helper's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The commands ran; nft's output (a listing, or empty).
    Ok(String),
    /// The commands did not run (nothing changed); nft's error text.
    Err(String),
}

/// Why a frame could not be written or read.
#[derive(Debug)]
pub enum WireError {
    /// Writing the frame to the pipe failed (`BrokenPipe` when the peer is gone).
    Write(io::Error),
    /// Reading from the pipe failed.
    Read(io::Error),
    /// The peer closed the pipe where a response was due (no byte of it arrived).
    Closed,
    /// The pipe ended in the middle of a frame.
    Truncated { expected: u64, got: u64 },
    /// A payload longer than [`MAX_FRAME_LEN`], written or announced.
    TooLarge { len: u64 },
    /// A request kind byte this version does not know.
    UnknownKind(u8),
    /// A response status byte this version does not know.
    UnknownStatus(u8),
    /// A ping announced a payload; pings carry none.
    PingPayload { len: u32 },
    /// The payload is not UTF-8.
    NotUtf8,
    /// A streamed request's header announced a length; its chunks carry the payload.
    StreamedLength { len: u32 },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Write(e) => write!(f, "cannot write a frame: {e}"),
            WireError::Read(e) => write!(f, "cannot read a frame: {e}"),
            WireError::Closed => write!(f, "the peer closed the pipe instead of answering"),
            WireError::Truncated { expected, got } => write!(
                f,
                "the pipe ended inside a frame: {got} of {expected} bytes arrived"
            ),
            WireError::TooLarge { len } => write!(
                f,
                "frame payload of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes"
            ),
            WireError::UnknownKind(b) => write!(f, "unknown request kind byte 0x{b:02x}"),
            WireError::UnknownStatus(b) => write!(f, "unknown response status byte 0x{b:02x}"),
            WireError::PingPayload { len } => {
                write!(
                    f,
                    "a ping must have no payload, this one announces {len} bytes"
                )
            }
            WireError::NotUtf8 => write!(f, "frame payload is not UTF-8"),
            WireError::StreamedLength { len } => write!(
                f,
                "a streamed request's header must announce 0 bytes, this one announces {len}"
            ),
        }
    }
}

impl std::error::Error for WireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WireError::Write(e) | WireError::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// Writes one request frame and flushes `w`.
pub fn write_request<W: Write>(w: &mut W, request: &Request) -> Result<(), WireError> {
    match request {
        Request::Ping => write_frame(w, KIND_PING, ""),
        Request::Run { format, commands } => write_frame(w, run_kind(*format), commands),
    }
}

/// Writes a [`Request::Run`] whose commands `render` writes piece by piece: they go out in
/// chunks of [`CHUNK_LEN`] bytes as they come, so the whole text is never held. The
/// reader gets the same [`Request::Run`] as from [`write_request`]. A failure of `render`
/// itself leaves the frame unfinished (the reader sees it truncated, never shortened).
pub fn write_run_with<W, F>(w: &mut W, format: Format, render: F) -> Result<(), WireError>
where
    W: Write,
    F: FnOnce(&mut dyn fmt::Write) -> fmt::Result,
{
    let mut chunks = ChunkWriter::start(w, run_kind(format))?;
    let rendered = render(&mut chunks);
    chunks.finish(rendered)
}

fn run_kind(format: Format) -> u8 {
    match format {
        Format::Script => KIND_RUN,
        Format::Json => KIND_RUN | FLAG_JSON,
    }
}

/// Reads one request frame; `Ok(None)` when the pipe ends cleanly between two frames.
pub fn read_request<R: Read>(r: &mut R) -> Result<Option<Request>, WireError> {
    let Some((kind, len)) = read_header(r)? else {
        return Ok(None);
    };
    let streamed = kind & FLAG_STREAMED != 0;
    if streamed && len != 0 {
        return Err(WireError::StreamedLength { len });
    }
    let format = match kind & !FLAG_STREAMED {
        KIND_PING if streamed => return Err(WireError::UnknownKind(kind)),
        KIND_PING if len == 0 => return Ok(Some(Request::Ping)),
        KIND_PING => return Err(WireError::PingPayload { len }),
        KIND_RUN => Format::Script,
        k if k == KIND_RUN | FLAG_JSON => Format::Json,
        _ => return Err(WireError::UnknownKind(kind)),
    };
    let commands = if streamed {
        read_chunks(r)?
    } else {
        read_payload(r, len)?
    };
    Ok(Some(Request::Run { format, commands }))
}

/// Writes one response frame and flushes `w`.
pub fn write_response<W: Write>(w: &mut W, response: &Response) -> Result<(), WireError> {
    match response {
        Response::Ok(output) => write_frame(w, STATUS_OK, output),
        Response::Err(message) => write_frame(w, STATUS_ERR, message),
    }
}

/// Reads one response frame; [`WireError::Closed`] when the pipe ends before it.
pub fn read_response<R: Read>(r: &mut R) -> Result<Response, WireError> {
    let (status, len) = read_header(r)?.ok_or(WireError::Closed)?;
    if status != STATUS_OK && status != STATUS_ERR {
        return Err(WireError::UnknownStatus(status));
    }
    let text = read_payload(r, len)?;
    Ok(if status == STATUS_OK {
        Response::Ok(text)
    } else {
        Response::Err(text)
    })
}

fn write_frame<W: Write>(w: &mut W, tag: u8, payload: &str) -> Result<(), WireError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len <= MAX_FRAME_LEN)
        .ok_or(WireError::TooLarge {
            len: payload.len() as u64,
        })?;
    let mut header = [0u8; HEADER_LEN];
    header[0] = tag;
    header[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&header).map_err(WireError::Write)?;
    w.write_all(payload.as_bytes()).map_err(WireError::Write)?;
    w.flush().map_err(WireError::Write)
}

/// The tag and payload length of the next frame; `None` at a clean end of file.
fn read_header<R: Read>(r: &mut R) -> Result<Option<(u8, u32)>, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(WireError::Truncated {
            expected: HEADER_LEN as u64,
            got: got as u64,
        });
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge {
            len: u64::from(len),
        });
    }
    Ok(Some((header[0], len)))
}

/// Reads exactly `len` payload bytes as UTF-8. The buffer grows as bytes arrive, so a
/// lying length costs nothing until the bytes are really there.
fn read_payload<R: Read>(r: &mut R, len: u32) -> Result<String, WireError> {
    let expected = u64::from(len);
    let mut payload = Vec::new();
    r.take(expected)
        .read_to_end(&mut payload)
        .map_err(WireError::Read)?;
    if payload.len() as u64 != expected {
        return Err(WireError::Truncated {
            expected: expected + HEADER_LEN as u64,
            got: payload.len() as u64 + HEADER_LEN as u64,
        });
    }
    String::from_utf8(payload).map_err(|_| WireError::NotUtf8)
}

/// Fills `buf` as far as the reader allows; returns how many bytes arrived before EOF.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, WireError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WireError::Read(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
