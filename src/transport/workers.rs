//! Thread-per-core data plane: one single-threaded tokio runtime per worker thread. Each worker
//! accepts on its own copy of the listening socket and serves what it accepts (see
//! `transport::Listener::run`), handing a new connection to the least loaded worker only when it
//! holds more than one connection over it; everything the connection does after that — its
//! requests, the upstream connections it uses (see `conn::worker_index`), their timers — runs on
//! that one thread.
//!
//! Why not tokio's work-stealing runtime: a proxied request wakes three tasks (the caller's
//! connection, the pooled upstream connection, the caller's connection again). Spread over
//! threads, each wake is a futex call, and idle workers spin looking for work to steal. Measured
//! on the 2-core bench machine, that cost more CPU than the rest of a pass-through request
//! (`bench/run`, README "Performance"). A connection cannot move once served, so one busy
//! connection stays on its worker, which is the trade-off every thread-per-core proxy (nginx,
//! HAProxy, Envoy) makes.

use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::watch;

/// The data-plane worker threads.
#[derive(Debug)]
pub struct Workers {
    /// Never empty.
    handles: Vec<Handle>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Start `n` workers (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::with_capacity(n.max(1));
        let mut threads = Vec::with_capacity(n.max(1));
        for i in 1..=n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("portcullis-w{i}-blocking"))
                .build()?;
            handles.push(rt.handle().clone());
            let mut stop_rx = stop_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-w{i}"))
                .spawn(move || {
                    crate::conn::set_worker_index(i);
                    rt.block_on(async move {
                        while !*stop_rx.borrow_and_update() {
                            if stop_rx.changed().await.is_err() {
                                break;
                            }
                        }
                    });
                    // Dropping the runtime cancels the connections still on it (those past the
                    // drain deadline).
                })?;
            threads.push(thread);
        }
        if handles.is_empty() {
            return Err(std::io::Error::other("no worker started"));
        }
        Ok(Workers {
            handles,
            stop,
            threads,
        })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never true: there is always at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The workers' runtimes, in order (the first is worker 1).
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stop every worker and wait for its thread to end. Call from outside the workers.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Not joined here: a drop may happen on any thread, even a worker's own.
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests;
