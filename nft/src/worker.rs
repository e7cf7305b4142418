//! One libnftables context on a dedicated thread, serving requests from any thread in turn.
//!
//! A [`Context`] must stay on the thread that created it. [`Worker`] is the handle other
//! threads use: `run` sends the commands over a channel to the worker thread, which runs
//! them one request at a time (never interleaved) and sends the result back. The worker
//! thread is spawned by the thread that calls [`Worker::spawn`] and so starts in that
//! thread's network namespace, where its context's netlink socket is opened.

use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use crate::context::{Context, NftError};

/// One request for the worker thread: the commands and where to send the result.
struct Job {
    input: String,
    json: bool,
    reply: mpsc::SyncSender<Result<String, NftError>>,
}

/// Handle to the thread that owns the context. Dropping it stops the thread.
#[derive(Debug)]
pub struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread and creates its context there; fails if that fails.
    pub fn spawn() -> Result<Worker, NftError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::sync_channel::<Result<(), NftError>>(1);
        let thread = thread::Builder::new()
            .name("nftproxy-nft".into())
            .spawn(move || serve(queue, ready))
            .map_err(|_| NftError::WorkerGone)?;
        let worker = Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        match started.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(NftError::WorkerGone),
        }
    }

    /// Runs `input` on the worker's context (one batch) and waits for nft's output.
    pub fn run(&self, input: String, json: bool) -> Result<String, NftError> {
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or(NftError::WorkerGone)?;
        jobs.send(Job { input, json, reply })
            .map_err(|_| NftError::WorkerGone)?;
        result.recv().map_err(|_| NftError::WorkerGone)?
    }
}

/// The worker thread: create the context, report, then serve jobs until every handle is gone.
fn serve(queue: mpsc::Receiver<Job>, ready: mpsc::SyncSender<Result<(), NftError>>) {
    let mut context = match Context::new() {
        Ok(context) => context,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    for job in queue {
        let result = context.run(&job.input, job.json);
        // The requester may have given up waiting; the result is then dropped.
        let _ = job.reply.send(result);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the current job is done.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
