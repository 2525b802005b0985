//! How the node starts a task on the caller's executor: a [`Spawner`], so
//! that raft-lab needs no runtime of its own.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::task::{Spawn, SpawnExt};

/// Starts a future on some executor, for [`make_async`](crate::make_async)'s
/// calls. Build one from any [`futures::task::Spawn`] (such as
/// `futures::executor::ThreadPool`), from a closure, or, with the `tokio`
/// feature, from a tokio runtime handle. Cheap to clone.
#[derive(Clone)]
pub struct Spawner {
    spawn: Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>,
}

impl Spawner {
    /// A spawner that hands every future to `spawn`, which must run it to
    /// completion (or drop it when the executor shuts down).
    pub fn new(spawn: impl Fn(BoxFuture<'static, ()>) + Send + Sync + 'static) -> Self {
        Spawner {
            spawn: Arc::new(spawn),
        }
    }

    /// A spawner over a [`futures::task::Spawn`] executor. A spawn the
    /// executor refuses (it is shutting down) is logged and the call dropped,
    /// as a lost message.
    pub fn from_spawn<S: Spawn + Send + Sync + 'static>(executor: S) -> Self {
        Spawner::new(move |future| {
            if let Err(e) = executor.spawn(future) {
                tracing::warn!(error = %e, "executor refused a call; message dropped");
            }
        })
    }

    /// A spawner over a tokio runtime (`Handle::current()` inside one).
    #[cfg(feature = "tokio")]
    pub fn tokio(handle: tokio::runtime::Handle) -> Self {
        Spawner::new(move |future| {
            handle.spawn(future);
        })
    }

    /// Runs `future` on the executor.
    pub(crate) fn spawn(&self, future: BoxFuture<'static, ()>) {
        (self.spawn)(future)
    }
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Spawner")
    }
}
