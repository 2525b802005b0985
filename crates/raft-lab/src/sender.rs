//! Outgoing calls. Every peer has a queue ([`PeerQueue`]) and a set of
//! callers: a message is taken by a caller that is not in a call, or a new
//! caller starts for it — a thread (kept a little while for the next call)
//! for a [`Transport`], a task on the given executor for an
//! [`AsyncTransport`]. So a call that hangs for seconds holds up only
//! itself; only when `max_calls` calls to one peer are all outstanding do
//! messages wait, and then the queue sheds superseded and oldest ones.
//! Each reply goes back to the driver as an input; the driver only ever
//! does a non-blocking push.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use raft_core::{Message, NodeId};

use crate::driver::Input;
use crate::queue::PeerQueue;
use crate::shared::Shared;
use crate::spawn::Spawner;
use crate::transport::{node_id, AsyncTransport, Transport};

/// How long an idle caller thread waits for the next message before it ends.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// The client ends a node calls its peers through.
#[derive(Clone)]
pub(crate) enum Ends {
    Blocking(Vec<Arc<dyn Transport>>),
    Async(Vec<Arc<dyn AsyncTransport>>, Spawner),
}

impl Ends {
    pub(crate) fn len(&self) -> usize {
        match self {
            Ends::Blocking(v) => v.len(),
            Ends::Async(v, _) => v.len(),
        }
    }
}

/// One peer's end, as a caller uses it.
#[derive(Clone)]
enum End {
    Blocking(Arc<dyn Transport>),
    Async(Arc<dyn AsyncTransport>, Spawner),
}

/// How many calls may be outstanding per peer, and how many messages may
/// wait beyond that.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SenderLimits {
    pub max_calls: usize,
    pub queue: usize,
}

/// Every peer's queue and callers.
pub(crate) struct Senders {
    me: usize,
    peers: BTreeMap<NodeId, Arc<Peer>>,
    input: Sender<Input>,
    shared: Arc<Shared>,
}

/// One peer: its end, its queue, and the count of its callers.
struct Peer {
    index: usize,
    end: End,
    max_calls: usize,
    state: Mutex<PeerState>,
    /// Wakes an idle caller thread when a message arrives.
    wake: Condvar,
}

#[derive(Debug)]
struct PeerState {
    queue: PeerQueue,
    /// Callers alive (threads or tasks).
    callers: usize,
    /// Callers alive and not in a call: each will look at the queue again
    /// before it waits or ends.
    free: usize,
    /// The node stopped: callers end.
    closed: bool,
}

impl Senders {
    /// Sets up a queue for every peer but `me`; no caller starts yet.
    pub(crate) fn new(
        me: usize,
        ends: &Ends,
        limits: SenderLimits,
        input: &Sender<Input>,
        shared: &Arc<Shared>,
    ) -> Self {
        let mut peers = BTreeMap::new();
        for index in (0..ends.len()).filter(|&i| i != me) {
            let end = match ends {
                Ends::Blocking(v) => End::Blocking(Arc::clone(&v[index])),
                Ends::Async(v, spawner) => End::Async(Arc::clone(&v[index]), spawner.clone()),
            };
            let peer = Peer {
                index,
                end,
                max_calls: limits.max_calls.max(1),
                state: Mutex::new(PeerState {
                    queue: PeerQueue::new(limits.queue),
                    callers: 0,
                    free: 0,
                    closed: false,
                }),
                wake: Condvar::new(),
            };
            peers.insert(node_id(index), Arc::new(peer));
        }
        Senders {
            me,
            peers,
            input: input.clone(),
            shared: Arc::clone(shared),
        }
    }

    /// Queues `msg` for its peer and makes sure a caller will take it,
    /// starting one if every caller is in a call. Never waits.
    pub(crate) fn send(&self, msg: Message) {
        let Some(peer) = self.peers.get(&msg.to) else {
            tracing::warn!(to = msg.to, "message to an unknown peer dropped");
            return;
        };
        let Some(caller) = peer.push(msg) else {
            return;
        };
        let (input, shared) = (self.input.clone(), Arc::clone(&self.shared));
        match &peer.end {
            End::Blocking(end) => {
                let end = Arc::clone(end);
                let spawned = std::thread::Builder::new()
                    .name(format!("raft-lab-{}-to-{}", self.me, peer.index))
                    .spawn(move || call_blocking(caller, end, input, shared));
                if let Err(e) = spawned {
                    // The caller was dropped with the closure: its slot is free
                    // again and the message waits for another caller.
                    tracing::warn!(error = %e, "cannot start a caller thread");
                }
            }
            End::Async(end, spawner) => {
                let end = Arc::clone(end);
                spawner.spawn(Box::pin(call_async(caller, end, input, shared)));
            }
        }
    }

    /// Messages dropped from the queues so far (superseded or shed).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.peers.values().map(|p| p.lock().queue.dropped()).sum()
    }
}

impl Drop for Senders {
    /// The driver stopped: idle callers end now, busy ones after their call.
    fn drop(&mut self) {
        for peer in self.peers.values() {
            peer.lock().closed = true;
            peer.wake.notify_all();
        }
    }
}

impl Peer {
    fn lock(&self) -> MutexGuard<'_, PeerState> {
        // Counters and a queue, never left half-updated: a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg`, then sheds the oldest messages past the queue's bound.
    /// Returns a new caller to start when the free callers are fewer than
    /// the waiting messages and `max_calls` allows another.
    fn push(self: &Arc<Self>, msg: Message) -> Option<Caller> {
        let mut s = self.lock();
        s.queue.push(msg);
        let start = s.queue.len() > s.free && s.callers < self.max_calls;
        if start {
            s.callers += 1;
            s.free += 1;
        }
        let taken = s.free;
        s.queue.shed(taken);
        drop(s);
        if start {
            return Some(Caller {
                peer: Arc::clone(self),
                busy: false,
                ended: false,
            });
        }
        self.wake.notify_one();
        None
    }
}

/// One caller's hold on its peer's counters. Dropping it (the caller ended,
/// or its thread or task never ran) gives the slot back.
struct Caller {
    peer: Arc<Peer>,
    /// In a call (not counted in `free`).
    busy: bool,
    /// Already taken off the counters.
    ended: bool,
}

impl Caller {
    /// Ends the previous call and takes the next message; waits up to
    /// `keep_alive` for one. `None`: the caller ends (its slot is released
    /// under the same lock that saw the queue empty, so no message is left
    /// without a caller).
    fn next(&mut self, keep_alive: Duration) -> Option<Message> {
        let deadline = Instant::now() + keep_alive;
        let mut s = self.peer.lock();
        if self.busy {
            self.busy = false;
            s.free += 1;
        }
        loop {
            if !s.closed {
                if let Some(msg) = s.queue.pop() {
                    self.busy = true;
                    s.free -= 1;
                    return Some(msg);
                }
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                s.callers -= 1;
                s.free -= 1;
                self.ended = true;
                return None;
            }
            s = match self.peer.wake.wait_timeout(s, deadline - now) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        if !self.ended {
            let mut s = self.peer.lock();
            s.callers -= 1;
            if !self.busy {
                s.free -= 1;
            }
        }
    }
}

/// A caller thread: one blocking call at a time, then the next message.
fn call_blocking(
    mut caller: Caller,
    end: Arc<dyn Transport>,
    input: Sender<Input>,
    shared: Arc<Shared>,
) {
    while let Some(msg) = caller.next(KEEP_ALIVE) {
        if shared.is_killed() {
            return;
        }
        let to = msg.to;
        let reply = end.call(msg);
        if !deliver(to, reply, &input, &shared) {
            return;
        }
    }
}

/// A caller task: the same, awaiting each call. It never waits for more
/// messages (a task is cheap to start again).
async fn call_async(
    mut caller: Caller,
    end: Arc<dyn AsyncTransport>,
    input: Sender<Input>,
    shared: Arc<Shared>,
) {
    while let Some(msg) = caller.next(Duration::ZERO) {
        if shared.is_killed() {
            return;
        }
        let to = msg.to;
        let reply = end.call(msg).await;
        if !deliver(to, reply, &input, &shared) {
            return;
        }
    }
}

/// Hands a reply (if any) to the driver; `false` once the node has stopped.
fn deliver(to: NodeId, reply: Option<Message>, input: &Sender<Input>, shared: &Shared) -> bool {
    if shared.is_killed() {
        return false;
    }
    let Some(r) = reply else { return true };
    if r.from != to {
        tracing::warn!(
            from = r.from,
            expected = to,
            "reply from the wrong peer dropped"
        );
        return true;
    }
    input.send(Input::Reply(r)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;
    use raft_core::{AppendReply, Body};

    /// A transport whose calls to the peer block until released, for the
    /// first `hang` calls; later calls answer at once.
    struct Hanging {
        hang: usize,
        calls: Mutex<usize>,
        release: (Mutex<bool>, Condvar),
    }

    impl Hanging {
        fn new(hang: usize) -> Arc<Self> {
            Arc::new(Hanging {
                hang,
                calls: Mutex::new(0),
                release: (Mutex::new(false), Condvar::new()),
            })
        }

        fn release(&self) {
            *self.release.0.lock().unwrap() = true;
            self.release.1.notify_all();
        }
    }

    impl Transport for Hanging {
        fn call(&self, msg: Message) -> Option<Message> {
            let n = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            if n <= self.hang {
                let mut released = self.release.0.lock().unwrap();
                while !*released {
                    released = self.release.1.wait(released).unwrap();
                }
                return None;
            }
            Some(reply_to(&msg))
        }
    }

    /// Answers with the sender's term, and `prev_log_index` as match index.
    fn reply_to(msg: &Message) -> Message {
        let match_index = match &msg.body {
            Body::AppendEntries { prev_log_index, .. } => *prev_log_index,
            _ => 0,
        };
        Message {
            from: msg.to,
            to: msg.from,
            term: msg.term,
            body: Body::AppendEntriesReply(AppendReply::Success { match_index }),
        }
    }

    /// AppendEntries of term 1 with one entry after `prev`: none of these
    /// supersedes another.
    fn entries(prev: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::AppendEntries {
                prev_log_index: prev,
                prev_log_term: 1,
                entries: vec![raft_core::Entry::normal(prev + 1, 1, vec![])],
                leader_commit: 0,
            },
        }
    }

    fn heartbeat(term: u64) -> Message {
        Message {
            from: 1,
            to: 2,
            term,
            body: Body::AppendEntries {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![],
                leader_commit: 0,
            },
        }
    }

    fn senders(end: Arc<Hanging>, limits: SenderLimits) -> (Senders, Receiver<Input>, Arc<Shared>) {
        let ends = Ends::Blocking(vec![end.clone(), end]);
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        (Senders::new(0, &ends, limits, &tx, &shared), rx, shared)
    }

    fn reply(rx: &Receiver<Input>) -> Message {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Input::Reply(m)) => m,
            Ok(_) => panic!("not a reply"),
            Err(e) => panic!("no reply: {e}"),
        }
    }

    fn reply_term(rx: &Receiver<Input>) -> u64 {
        reply(rx).term
    }

    #[test]
    fn hanging_calls_hold_back_nothing() {
        let end = Hanging::new(50);
        let limits = SenderLimits {
            max_calls: 1000,
            queue: 4,
        };
        let (senders, rx, shared) = senders(end.clone(), limits);
        for prev in 1..=50 {
            senders.send(entries(prev));
        }
        // Fifty calls hang; the next message still goes out at once
        // (callers may take the messages in any order).
        senders.send(entries(51));
        let r = reply(&rx);
        assert!(matches!(
            r.body,
            Body::AppendEntriesReply(AppendReply::Success {
                match_index: 1..=51
            })
        ));
        assert_eq!(senders.dropped(), 0, "nothing was shed");
        // One caller per hanging call, plus the one that answered (or one of
        // the fifty, had it found the queue empty before its call).
        let callers = senders.peers[&2].lock().callers;
        assert!((50..=51).contains(&callers), "{callers} callers");
        end.release();
        shared.kill();
    }

    #[test]
    fn at_the_cap_the_queue_keeps_the_newest() {
        let end = Hanging::new(2);
        let limits = SenderLimits {
            max_calls: 2,
            queue: 2,
        };
        let (senders, rx, shared) = senders(end.clone(), limits);
        senders.send(entries(1));
        senders.send(entries(2));
        let peer = Arc::clone(&senders.peers[&2]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while peer.lock().free > 0 || peer.lock().queue.len() > 0 {
            assert!(Instant::now() < deadline, "calls did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Both callers hang: newer heartbeats replace older ones in the queue.
        for term in 3..=9 {
            senders.send(heartbeat(term));
        }
        assert_eq!(peer.lock().queue.len(), 1);
        end.release();
        assert_eq!(reply_term(&rx), 9);
        shared.kill();
    }

    #[test]
    fn idle_callers_end_and_closing_ends_them() {
        let end = Hanging::new(0);
        let limits = SenderLimits {
            max_calls: 8,
            queue: 8,
        };
        let (senders, rx, _shared) = senders(end, limits);
        let peer = Arc::clone(&senders.peers[&2]);
        let wait_free = || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while peer.lock().free == 0 {
                assert!(Instant::now() < deadline, "the caller stayed busy");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        senders.send(heartbeat(1));
        assert_eq!(reply_term(&rx), 1);
        wait_free();
        // The idle caller takes the next message; no other starts.
        senders.send(heartbeat(2));
        assert_eq!(reply_term(&rx), 2);
        assert_eq!(peer.lock().callers, 1);
        drop(senders);
        let deadline = Instant::now() + Duration::from_secs(5);
        while peer.lock().callers > 0 {
            assert!(Instant::now() < deadline, "caller did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
