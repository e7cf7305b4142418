//! The fake API server on a thread of its own with its own runtime: for tests that run
//! `nftproxy run` in a network namespace, where the server must listen in that namespace.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::FakeApiServer;

/// A server running on a thread; stopped (and the thread joined) when dropped.
pub struct OnThread {
    pub server: Arc<FakeApiServer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OnThread {
    /// Starts the server on the thread that `spawn` starts with the closure it is given
    /// (`|f| ns.spawn(f)` for a namespace's thread); returns once it listens.
    pub fn start(spawn: impl FnOnce(Box<dyn FnOnce() + Send>) -> JoinHandle<()>) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = spawn(Box::new(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the fake API server");
            rt.block_on(async move {
                let server = Arc::new(FakeApiServer::start().await);
                ready_tx.send(Arc::clone(&server)).expect("the test waits");
                let _ = stopped.await;
            });
        }));
        let server = ready_rx.recv().expect("fake API server started");
        OnThread {
            server,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for OnThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
