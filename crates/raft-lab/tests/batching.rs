//! The driver takes every waiting input before the next Ready: requests
//! that pile up while it is busy are answered after one save, each caller
//! with the reply to its own request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use raft_lab::{
    make_with, AppendReply, Body, Entry, MemPersister, Message, Options, Persister, Transport,
};

/// A peer that never answers.
struct Silent;

impl Transport for Silent {
    fn call(&self, _: Message) -> Option<Message> {
        None
    }
}

/// A persister that counts saves and can hold them until released.
#[derive(Default)]
struct Gate {
    inner: MemPersister,
    saves: AtomicUsize,
    closed: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.opened.notify_all();
    }
}

impl Persister for Gate {
    fn save(&self, state: &[u8], snapshot: Option<&[u8]>) -> std::io::Result<()> {
        let mut closed = self.closed.lock().unwrap();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(state, snapshot)
    }
    fn read_raft_state(&self) -> std::io::Result<Vec<u8>> {
        self.inner.read_raft_state()
    }
    fn read_snapshot(&self) -> std::io::Result<Vec<u8>> {
        self.inner.read_snapshot()
    }
    fn raft_state_size(&self) -> usize {
        self.inner.raft_state_size()
    }
    fn snapshot_size(&self) -> usize {
        self.inner.snapshot_size()
    }
}

/// AppendEntries from server 1 (id 2) in term 1 carrying entries 1..=last.
fn append_through(last: u64) -> Message {
    Message {
        from: 2,
        to: 1,
        term: 1,
        body: Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: (1..=last).map(|i| Entry::normal(i, 1, vec![])).collect(),
            leader_commit: 0,
        },
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn requests_waiting_together_share_one_save_and_each_gets_its_reply() {
    let gate = Arc::new(Gate::default());
    let peers: Vec<Arc<dyn Transport>> = vec![Arc::new(Silent), Arc::new(Silent), Arc::new(Silent)];
    let options = Options {
        driver_timeout: Duration::from_secs(30),
        ..Options::default()
    };
    let (tx, _rx) = std::sync::mpsc::channel();
    let node = make_with(peers, 0, Arc::clone(&gate), tx, &options).expect("make");
    let first = node.handle(append_through(1)).expect("a reply");
    assert!(matches!(
        first.body,
        Body::AppendEntriesReply(AppendReply::Success { match_index: 1 })
    ));

    // Hold the driver in a save, let 20 requests pile up behind it.
    gate.set_closed(true);
    let before = gate.saves.load(Ordering::SeqCst);
    let sent = AtomicUsize::new(0);
    let replies: Vec<(u64, Option<Message>)> = std::thread::scope(|s| {
        let blocker = s.spawn(|| node.handle(append_through(2)));
        wait_until("the driver to block in a save", || {
            gate.waiting.load(Ordering::SeqCst) == 1
        });
        let callers: Vec<_> = (3..23u64)
            .map(|last| {
                let (node, sent) = (&node, &sent);
                s.spawn(move || {
                    sent.fetch_add(1, Ordering::SeqCst);
                    (last, node.handle(append_through(last)))
                })
            })
            .collect();
        // A caller counts itself just before it sends: one may still be on
        // its way when the gate opens, which the bound on saves allows for.
        wait_until("every caller to send", || sent.load(Ordering::SeqCst) == 20);
        gate.set_closed(false);
        let mut replies = vec![(2, blocker.join().unwrap())];
        replies.extend(callers.into_iter().map(|h| h.join().unwrap()));
        replies
    });

    // Each caller got the reply to its own request: its own last index.
    for (last, reply) in &replies {
        let reply = reply
            .as_ref()
            .unwrap_or_else(|| panic!("no reply for {last}"));
        assert_eq!(reply.to, 2);
        assert!(
            matches!(
                reply.body,
                Body::AppendEntriesReply(AppendReply::Success { match_index }) if match_index == *last
            ),
            "request through {last} got {reply:?}"
        );
    }
    // One save for the blocked request, one for the batch behind it (a few
    // more if some sends came late).
    let saves = gate.saves.load(Ordering::SeqCst) - before;
    assert!((2..=5).contains(&saves), "{saves} saves for 21 requests");
    assert_eq!(node.status().last_index, 22);
    node.kill();
}
