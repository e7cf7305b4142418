//! nftproxy-nft: runs nft commands for nftproxy; requests on stdin, responses on stdout.
//!
//! nftproxy starts this program and owns its pipes; it is not meant to be run by hand.
//! Each request frame (see the `nftproxy-wire` crate) is answered with one response frame,
//! in order, through one libnftables context that lives for the whole process. At end of
//! file on stdin the program exits 0. Only frames are written to stdout: file descriptor 1
//! is pointed at stderr at startup, so that nothing else (libnftables included) can write
//! into the frame stream. Fatal errors go to stderr, and the exit status is then non-zero:
//! 1 when the context cannot be created or stdout is gone, 2 on a malformed request.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::os::fd::AsFd;
use std::process::ExitCode;

use nftproxy_nft::{NftError, Worker};
use nftproxy_wire::{Format, Request, Response, read_request, write_response};

fn main() -> ExitCode {
    let frames = match private_stdout() {
        Ok(frames) => frames,
        Err(e) => return fatal(1, format_args!("cannot set up stdout: {e}")),
    };
    let worker = match Worker::spawn() {
        Ok(worker) => worker,
        Err(e) => return fatal(1, format_args!("{e}")),
    };
    let mut input = BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut output = BufWriter::with_capacity(1 << 16, frames);
    loop {
        let request = match read_request(&mut input) {
            Ok(Some(request)) => request,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fatal(2, format_args!("bad request: {e}")),
        };
        let large = matches!(&request, Request::Run { commands, .. } if commands.len() >= LARGE);
        let (response, gone) = answer(&worker, request);
        if large {
            release_freed();
        }
        if let Err(e) = write_response(&mut output, &response) {
            return fatal(1, format_args!("cannot answer: {e}"));
        }
        if gone {
            return fatal(1, format_args!("{}", NftError::WorkerGone));
        }
    }
}

/// Requests of this many bytes and more are followed by [`release_freed`]: libnftables
/// parses a full sync of 10k services into about 500 MiB, nearly all of it freed after.
const LARGE: usize = 1 << 20;

/// Returns glibc's free heap pages to the kernel, so that the helper does not keep the
/// peak of its largest request resident for the rest of its life.
fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own heap under the
    // allocator's locks; the libnftables worker thread may allocate concurrently.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The response to one request, and whether the worker is gone (then the program exits).
fn answer(worker: &Worker, request: Request) -> (Response, bool) {
    match request {
        Request::Ping => (Response::Ok(String::new()), false),
        Request::Run { format, commands } => match worker.run(commands, format == Format::Json) {
            Ok(output) => (Response::Ok(output), false),
            Err(NftError::Refused { message }) => (Response::Err(message), false),
            Err(e @ NftError::WorkerGone) => (Response::Err(e.to_string()), true),
            Err(e) => (Response::Err(e.to_string()), false),
        },
    }
}

fn fatal(code: u8, message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("nftproxy-nft: {message}");
    ExitCode::from(code)
}

/// A private duplicate of stdout for the frames; fd 1 itself then points at stderr.
fn private_stdout() -> io::Result<File> {
    let frames = io::stdout().as_fd().try_clone_to_owned()?;
    // SAFETY: dup2 reads no memory of ours; it atomically makes fd 1 a copy of fd 2. Both
    // are the process's standard descriptors, open for its whole life; no Rust object
    // owns fd 1 (std's `Stdout` only borrows it), and the frames keep their own duplicate.
    let rc = unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(frames))
}
