//! Run requests written piece by piece: a payload sent in chunks as it is rendered, so the
//! sender never holds the whole text.
//!
//! A streamed request is a header with the [`FLAG_STREAMED`] bit set in its kind and a
//! length of 0, followed by chunks: each a u32 big-endian length and that many bytes,
//! ended by a chunk of length 0. The chunks together are the payload, at most
//! [`MAX_FRAME_LEN`] bytes of UTF-8 (a chunk may end inside a character).

use std::fmt;
use std::io::{Read, Write};

use crate::{HEADER_LEN, MAX_FRAME_LEN, WireError};

/// The kind bit of a streamed request.
pub(crate) const FLAG_STREAMED: u8 = 0x40;

/// Bytes the writer gathers before it sends a chunk.
pub const CHUNK_LEN: usize = 64 * 1024;

/// A `fmt::Write` that sends what it is given as chunks. Errors are kept, since
/// `fmt::Error` cannot carry them.
pub(crate) struct ChunkWriter<'w, W: Write> {
    out: &'w mut W,
    buffer: Vec<u8>,
    total: u64,
    error: Option<WireError>,
}

impl<'w, W: Write> ChunkWriter<'w, W> {
    /// Writes the header of a streamed request of `kind`.
    pub(crate) fn start(out: &'w mut W, kind: u8) -> Result<Self, WireError> {
        let mut header = [0u8; HEADER_LEN];
        header[0] = kind | FLAG_STREAMED;
        out.write_all(&header).map_err(WireError::Write)?;
        Ok(ChunkWriter {
            out,
            buffer: Vec::with_capacity(CHUNK_LEN),
            total: 0,
            error: None,
        })
    }

    fn send_chunk(&mut self) -> Result<(), WireError> {
        let len = u32::try_from(self.buffer.len()).map_err(|_| WireError::TooLarge {
            len: self.buffer.len() as u64,
        })?;
        self.out
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.out.write_all(&self.buffer))
            .map_err(WireError::Write)?;
        self.buffer.clear();
        Ok(())
    }

    /// Sends what is left and the end marker, and flushes; or the first error met.
    pub(crate) fn finish(mut self, rendered: fmt::Result) -> Result<(), WireError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        // A renderer's own failure (not ours): stop the frame where it is; the reader sees a
        // truncated frame, never a shorter payload that looks complete.
        rendered.map_err(|fmt::Error| {
            WireError::Write(std::io::Error::other("rendering the payload failed"))
        })?;
        if !self.buffer.is_empty() {
            self.send_chunk()?;
        }
        self.out
            .write_all(&0u32.to_be_bytes())
            .and_then(|()| self.out.flush())
            .map_err(WireError::Write)
    }
}

impl<W: Write> fmt::Write for ChunkWriter<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.error.is_some() {
            return Err(fmt::Error);
        }
        self.total += s.len() as u64;
        if self.total > u64::from(MAX_FRAME_LEN) {
            self.error = Some(WireError::TooLarge { len: self.total });
            return Err(fmt::Error);
        }
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let room = CHUNK_LEN - self.buffer.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buffer.extend_from_slice(now);
            rest = later;
            if self.buffer.len() == CHUNK_LEN
                && let Err(error) = self.send_chunk()
            {
                self.error = Some(error);
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// Reads the chunks of a streamed payload (after its header) as UTF-8.
pub(crate) fn read_chunks<R: Read>(r: &mut R) -> Result<String, WireError> {
    let mut payload = Vec::new();
    loop {
        let mut len = [0u8; 4];
        let got = crate::read_full(r, &mut len)?;
        if got < len.len() {
            return Err(WireError::Truncated {
                expected: payload.len() as u64 + 4,
                got: payload.len() as u64 + got as u64,
            });
        }
        let len = u32::from_be_bytes(len);
        if len == 0 {
            break;
        }
        let total = payload.len() as u64 + u64::from(len);
        if total > u64::from(MAX_FRAME_LEN) {
            return Err(WireError::TooLarge { len: total });
        }
        r.take(u64::from(len))
            .read_to_end(&mut payload)
            .map_err(WireError::Read)?;
        if payload.len() as u64 != total {
            return Err(WireError::Truncated {
                expected: total,
                got: payload.len() as u64,
            });
        }
    }
    String::from_utf8(payload).map_err(|_| WireError::NotUtf8)
}
