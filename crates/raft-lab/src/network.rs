//! An in-process network for tests (the lab's `labrpc`): each call goes
//! straight to the target's [`Handler`] — into its node's input channel —
//! and back, with a switch to cut a server off, the lab's faults (lost and
//! delayed messages, long reordering, lost calls that fail only after
//! seconds), extra delays, and RPC counters.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use raft_core::Message;

use crate::faults::Faults;
use crate::transport::{Handler, Transport};

/// A network of `n` servers, indexed like `peers`. All connected at first,
/// none registered, reliable, and a lost call (to or from a disconnected or
/// unregistered server) fails within 20 ms. Clones share the same network.
///
/// Each call runs on the caller's thread: a delay or a slow failure blocks
/// that call, and only that call, which is what the lab's network does to
/// catch a Raft that waits on its RPCs.
#[derive(Clone)]
pub struct ChannelNetwork {
    net: Arc<Net>,
}

struct Net {
    state: Mutex<NetState>,
}

struct NetState {
    servers: Vec<Option<Arc<dyn Handler>>>,
    connected: Vec<bool>,
    faults: Faults,
    /// Added before every request is delivered.
    delay: Duration,
    /// Per caller: how long the replies to its calls take to come back.
    reply_delay: Vec<Duration>,
    /// `calls[from][to]`: calls attempted on that link.
    calls: Vec<Vec<u64>>,
    /// Replies being held back by a reply delay right now.
    held_now: usize,
    /// Held-back replies handed to their caller in the end.
    held_delivered: u64,
    /// Calls waiting out a failure delay right now, and the most at once.
    failing_now: usize,
    failing_peak: usize,
}

impl ChannelNetwork {
    /// A network with room for `n` servers.
    pub fn new(n: usize) -> Self {
        ChannelNetwork {
            net: Arc::new(Net {
                state: Mutex::new(NetState {
                    servers: vec![None; n],
                    connected: vec![true; n],
                    faults: Faults::default(),
                    delay: Duration::ZERO,
                    reply_delay: vec![Duration::ZERO; n],
                    calls: vec![vec![0; n]; n],
                    held_now: 0,
                    held_delivered: 0,
                    failing_now: 0,
                    failing_peak: 0,
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.net.lock()
    }

    /// The client end from server `from` to server `to`.
    pub fn end(&self, from: usize, to: usize) -> Arc<dyn Transport> {
        Arc::new(End {
            net: Arc::clone(&self.net),
            from,
            to,
        })
    }

    /// The `peers` vector for server `me`: one end to every server.
    pub fn ends(&self, me: usize) -> Vec<Arc<dyn Transport>> {
        let n = self.lock().servers.len();
        (0..n).map(|to| self.end(me, to)).collect()
    }

    /// Routes calls for server `i` to `handler` (replacing a previous one,
    /// as after a restart). Usually `handler` is the server's `Node`.
    pub fn register(&self, i: usize, handler: impl Handler + 'static) {
        if let Some(slot) = self.lock().servers.get_mut(i) {
            *slot = Some(Arc::new(handler));
        }
    }

    /// Forgets server `i`'s handler: calls to it fail, as to a crashed server.
    pub fn unregister(&self, i: usize) {
        if let Some(slot) = self.lock().servers.get_mut(i) {
            *slot = None;
        }
    }

    /// Lets server `i` send and receive again.
    pub fn connect(&self, i: usize) {
        self.set_connected(i, true);
    }

    /// Cuts server `i` off: its calls and calls to it fail (after the
    /// failure delay), and a reply to a call in flight is lost.
    pub fn disconnect(&self, i: usize) {
        self.set_connected(i, false);
    }

    fn set_connected(&self, i: usize, on: bool) {
        if let Some(c) = self.lock().connected.get_mut(i) {
            *c = on;
        }
    }

    /// Whether server `i` is connected.
    pub fn is_connected(&self, i: usize) -> bool {
        self.lock().connected.get(i).copied().unwrap_or(false)
    }

    /// The lab's unreliable network (`setunreliable`): every request waits
    /// a random 0–26 ms, then requests and replies are each lost with
    /// probability 0.1; a lost one fails after the failure delay.
    pub fn set_unreliable(&self, on: bool) {
        self.lock().faults.unreliable = on;
    }

    /// The lab's long reordering: two thirds of the replies are held back
    /// 200–2,200 ms (mostly near the short end), so they arrive out of
    /// order and often into later terms.
    pub fn set_long_reordering(&self, on: bool) {
        self.lock().faults.long_reordering = on;
    }

    /// A lost call — a lost request or reply, a call to or from a
    /// disconnected server, or to one not registered — reports failure
    /// (`None`) after a random delay up to `max`. The lab uses up to 7 s
    /// ([`LONG_DELAYS`](Self::LONG_DELAYS)) to catch a Raft that sends its
    /// RPCs synchronously; the default is 20 ms.
    pub fn set_failure_delay(&self, max: Duration) {
        self.lock().faults.failure_delay = max;
    }

    /// labrpc's `LongDelays`: lost calls fail after up to 7 s.
    pub const LONG_DELAYS: Duration = Duration::from_secs(7);

    /// Calls waiting out a failure delay right now.
    pub fn failing_calls(&self) -> usize {
        self.lock().failing_now
    }

    /// The most calls that were waiting out a failure delay at once.
    pub fn peak_failing_calls(&self) -> usize {
        self.lock().failing_peak
    }

    /// Delays every request by `d` before delivery.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Holds back the replies to calls made by server `i` for `d`: they reach
    /// it late (for calls starting from now on).
    pub fn set_reply_delay(&self, i: usize, d: Duration) {
        if let Some(r) = self.lock().reply_delay.get_mut(i) {
            *r = d;
        }
    }

    /// Replies held back by [`set_reply_delay`](Self::set_reply_delay) right now.
    pub fn held_replies(&self) -> usize {
        self.lock().held_now
    }

    /// Held-back replies that reached their caller in the end (late).
    pub fn late_replies_delivered(&self) -> u64 {
        self.lock().held_delivered
    }

    /// Calls server `from` attempted to server `to`.
    pub fn calls_between(&self, from: usize, to: usize) -> u64 {
        let s = self.lock();
        s.calls
            .get(from)
            .and_then(|row| row.get(to))
            .copied()
            .unwrap_or(0)
    }

    /// Calls server `i` attempted, to anyone.
    pub fn rpc_count(&self, i: usize) -> u64 {
        self.lock().calls.get(i).map_or(0, |row| row.iter().sum())
    }

    /// Calls attempted on the whole network.
    pub fn total_rpcs(&self) -> u64 {
        self.lock().calls.iter().flatten().sum()
    }
}

impl Net {
    fn lock(&self) -> MutexGuard<'_, NetState> {
        // Counters and flags only: a poisoned lock still holds usable values.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn linked(s: &NetState, a: usize, b: usize) -> bool {
        s.connected.get(a).copied().unwrap_or(false) && s.connected.get(b).copied().unwrap_or(false)
    }
}

/// One direction of one link.
struct End {
    net: Arc<Net>,
    from: usize,
    to: usize,
}

impl End {
    /// A lost call: report failure only after the failure delay.
    fn fail(&self, faults: &Faults) -> Option<Message> {
        let after = faults.failure_after();
        {
            let mut s = self.net.lock();
            s.failing_now += 1;
            s.failing_peak = s.failing_peak.max(s.failing_now);
        }
        std::thread::sleep(after);
        self.net.lock().failing_now -= 1;
        None
    }
}

impl Transport for End {
    fn call(&self, msg: Message) -> Option<Message> {
        // Look up under the lock, then deliver without it.
        let (target, faults, delay) = {
            let mut s = self.net.lock();
            if let Some(c) = s
                .calls
                .get_mut(self.from)
                .and_then(|row| row.get_mut(self.to))
            {
                *c += 1;
            }
            let target = match Net::linked(&s, self.from, self.to) {
                true => s.servers.get(self.to).cloned().flatten(),
                false => None,
            };
            (target, s.faults, s.delay)
        };
        let Some(target) = target else {
            return self.fail(&faults);
        };
        if let Some(d) = faults.short_delay() {
            std::thread::sleep(d);
        }
        if faults.lose() {
            return self.fail(&faults);
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        // The handler's `None` (no reply, or a stopped server) comes back at once.
        let reply = target.handle(msg)?;
        // labrpc loses the reply if either side is cut off by now.
        let (linked, faults) = {
            let s = self.net.lock();
            (Net::linked(&s, self.from, self.to), s.faults)
        };
        if !linked || faults.lose() {
            return self.fail(&faults);
        }
        if let Some(d) = faults.reorder_delay() {
            std::thread::sleep(d);
        }
        let hold = {
            let mut s = self.net.lock();
            let d = s.reply_delay.get(self.from).copied().unwrap_or_default();
            let hold = (!d.is_zero()).then_some(d);
            s.held_now += usize::from(hold.is_some());
            hold
        };
        let Some(d) = hold else {
            return Some(reply);
        };
        std::thread::sleep(d);
        let mut s = self.net.lock();
        let linked = Net::linked(&s, self.from, self.to);
        s.held_now -= 1;
        s.held_delivered += u64::from(linked);
        linked.then_some(reply)
    }
}
