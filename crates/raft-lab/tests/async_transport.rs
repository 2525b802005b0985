//! The async side of the API in real time: nodes made with `make_async` on
//! a one-thread executor, calling each other through an `AsyncTransport`
//! whose server side is `handle_async`. A share of the calls never finish;
//! the cluster must still elect a leader and agree, which it can only do if
//! no pending call holds back another message or blocks the executor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{BoxFuture, FutureExt, Shared};
use raft_lab::{
    make_async, ApplyMsg, AsyncTransport, Body, Index, MemPersister, Message, Node, Options,
    Spawner, StartError,
};
use rand::Rng;

const PATIENCE: Duration = Duration::from_secs(5);
/// The share of calls that hang until the end of the test.
const HANG: f64 = 0.3;

/// Where calls go: every server's node, and the switch that ends the hung calls.
struct Router {
    nodes: Mutex<Vec<Option<Node>>>,
    /// Completes (with an error) when the test drops the sender.
    release: Shared<oneshot::Receiver<()>>,
    hung: AtomicUsize,
    answered: AtomicUsize,
}

struct End {
    router: Arc<Router>,
    to: usize,
}

impl AsyncTransport for End {
    fn call(&self, msg: Message) -> BoxFuture<'static, Option<Message>> {
        let router = Arc::clone(&self.router);
        let node = router.nodes.lock().unwrap()[self.to].clone();
        let hang = rand::thread_rng().gen_bool(HANG);
        async move {
            if hang {
                router.hung.fetch_add(1, Ordering::SeqCst);
                let _ = router.release.clone().await;
                return None;
            }
            let reply = node?.handle_async(msg).await;
            router.answered.fetch_add(1, Ordering::SeqCst);
            reply
        }
        .boxed()
    }
}

/// One server's applied commands, by index.
type Applied = Arc<Mutex<BTreeMap<Index, Vec<u8>>>>;

/// Three nodes over the router, each with its applied commands.
struct Cluster {
    router: Arc<Router>,
    nodes: Vec<Node>,
    applied: Vec<Applied>,
    _release: oneshot::Sender<()>,
}

fn cluster(spawner: Spawner) -> Cluster {
    let (release_tx, release_rx) = oneshot::channel();
    let router = Arc::new(Router {
        nodes: Mutex::new(vec![None; 3]),
        release: release_rx.shared(),
        hung: AtomicUsize::new(0),
        answered: AtomicUsize::new(0),
    });
    let mut nodes = Vec::new();
    let mut applied = Vec::new();
    for me in 0..3 {
        let ends: Vec<Arc<dyn AsyncTransport>> = (0..3)
            .map(|to| {
                let router = Arc::clone(&router);
                Arc::new(End { router, to }) as Arc<dyn AsyncTransport>
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        let opts = Options::default();
        let node = make_async(ends, me, MemPersister::new(), tx, spawner.clone(), &opts)
            .expect("make_async");
        let log = Arc::new(Mutex::new(BTreeMap::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for msg in rx {
                if let ApplyMsg::Command { index, command, .. } = msg {
                    sink.lock().unwrap().insert(index, command);
                }
            }
        });
        router.nodes.lock().unwrap()[me] = Some(node.clone());
        nodes.push(node);
        applied.push(log);
    }
    Cluster {
        router,
        nodes,
        applied,
        _release: release_tx,
    }
}

impl Cluster {
    /// The lab's `one` with all three servers expected: retries on whoever
    /// leads, at most 10 s in all and 2 s per attempt.
    fn one(&self, command: &[u8]) -> Index {
        let deadline = Instant::now() + 2 * PATIENCE;
        while Instant::now() < deadline {
            let started = self
                .nodes
                .iter()
                .find_map(|n| n.start(command.to_vec()).ok());
            let Some((index, _)) = started else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let attempt = Instant::now() + Duration::from_secs(2);
            while Instant::now() < attempt {
                let agreed = self
                    .applied
                    .iter()
                    .all(|a| a.lock().unwrap().get(&index).map(Vec::as_slice) == Some(command));
                if agreed {
                    return index;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("{command:?} was not agreed by all three within 10 s");
    }

    fn finish(self) {
        for n in &self.nodes {
            n.kill();
        }
    }
}

/// Elects and agrees on commands with every server until at least 30 are
/// agreed and 40 calls have hung (forever) meanwhile — over six links, more
/// than a small fixed pool of callers per peer could survive, and each one
/// would block a thread of the one-thread executor if anything waited on it.
fn agree_despite_hung_calls(spawner: Spawner) {
    let c = cluster(spawner);
    let mut x = 0u64;
    while x < 30 || c.router.hung.load(Ordering::SeqCst) < 40 {
        let index = c.one(&x.to_le_bytes());
        assert_eq!(index, x + 1, "commands land in order");
        x += 1;
        assert!(x < 1000, "calls hardly ever hang: is HANG zero?");
    }
    let hung = c.router.hung.load(Ordering::SeqCst);
    let answered = c.router.answered.load(Ordering::SeqCst);
    println!("{x} commands agreed; {hung} calls hung for good, {answered} answered");
    c.finish();
}

#[test]
fn hung_async_calls_delay_nothing_on_a_one_thread_pool() {
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(1)
        .create()
        .expect("thread pool");
    agree_despite_hung_calls(Spawner::from_spawn(pool));
}

#[cfg(feature = "tokio")]
#[test]
fn hung_async_calls_delay_nothing_on_a_one_thread_tokio_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    agree_despite_hung_calls(Spawner::tokio(rt.handle().clone()));
}

#[test]
fn handle_async_needs_no_executor_and_ends_with_the_node() {
    let c = cluster(Spawner::from_spawn(
        futures::executor::ThreadPool::new().expect("thread pool"),
    ));
    let leader = {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(l) = c.nodes.iter().position(|n| n.get_state().1) {
                break l;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let follower = (leader + 1) % 3;
    let term = c.nodes[leader].get_state().0;
    // A leader needs one vote besides its own: wait until this follower has
    // heard of its term too.
    let deadline = Instant::now() + PATIENCE;
    while c.nodes[follower].get_state().0 < term {
        assert!(
            Instant::now() < deadline,
            "the follower never learned the term"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A stale AppendEntries from an old term gets its answer (the newer
    // term), awaited on this thread with no executor at all.
    let stale = Message {
        from: raft_lab::node_id(leader),
        to: raft_lab::node_id(follower),
        term: term - 1,
        body: Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
        },
    };
    let reply = futures::executor::block_on(c.nodes[follower].handle_async(stale.clone()))
        .expect("a reply to a stale request");
    assert!(reply.term >= term);
    c.nodes[follower].kill();
    assert_eq!(
        futures::executor::block_on(c.nodes[follower].handle_async(stale)),
        None
    );
    assert_eq!(c.nodes[follower].start(vec![1]), Err(StartError::Killed));
    c.finish();
}
