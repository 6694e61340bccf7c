//! `concurrency = 16`: requests in flight to the upstream. A semaphore with owned permits, so the
//! permit can travel inside the response body and be released only when the body is finished
//! (a slow download still occupies the upstream).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::{Code, Refusal};

/// One route's in-flight limit.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    sem: Arc<Semaphore>,
    max: u32,
}

/// Proof of an in-flight slot; dropping it frees the slot.
#[derive(Debug)]
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
}

impl ConcurrencyLimit {
    /// At most `max` in flight; `None` for 0.
    pub fn new(max: u32) -> Option<Self> {
        let n = usize::try_from(max).ok().filter(|n| *n > 0)?;
        Some(ConcurrencyLimit {
            sem: Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))),
            max,
        })
    }

    /// A slot now, or 503 `overloaded` with `Retry-After: 1`. Never waits: queueing here would
    /// only move the overload into the gateway's memory.
    pub fn try_acquire(&self) -> Result<InFlight, Refusal> {
        match Arc::clone(&self.sem).try_acquire_owned() {
            Ok(p) => Ok(InFlight { _permit: p }),
            Err(_) => Err(Refusal::new(
                Code::Overloaded,
                format!("the upstream already has {} requests in flight", self.max),
            )
            .retry_after(1)),
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}
