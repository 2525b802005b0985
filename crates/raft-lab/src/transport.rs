//! The two halves of an RPC system, as the node sees them: a client end that
//! carries a request to one peer and brings back its reply (blocking or
//! async), and the server side that answers requests.

use futures::future::BoxFuture;
use raft_core::{Message, NodeId};

/// The client side of an RPC connection to one peer (the lab's
/// `labrpc.ClientEnd`). Implement it over your own RPC system.
///
/// `call` sends `msg` (a RequestVote, AppendEntries or InstallSnapshot, or
/// occasionally a one-way message) to the peer, which hands it to its
/// [`Node::handle`](crate::Node::handle), and returns that call's result:
/// `Some(reply)`, or `None` when there is none (lost request or reply,
/// timeout, peer down, or the peer chose not to answer). Like the lab's
/// `Call`, it may block for as long as the RPC system takes — the lab's
/// network reports a lost call only after seconds. The node makes every
/// call on a thread of its own (threads are reused, never shared by two
/// calls at once), never while holding a lock, so a slow call delays
/// nothing else: up to [`Options::max_calls_per_peer`](crate::Options)
/// calls may be outstanding to one peer. A reply arriving late is harmless.
///
/// With an async RPC client, implement [`AsyncTransport`] instead and make
/// the node with [`make_async`](crate::make_async).
pub trait Transport: Send + Sync {
    /// One round trip: deliver `msg` to `msg.to`, return its reply.
    fn call(&self, msg: Message) -> Option<Message>;
}

/// [`Transport`] for an async RPC client: `call` returns a future of the
/// reply, which the node runs as a task of its own on the executor given to
/// [`make_async`](crate::make_async). The same rules hold: `None` for no
/// reply, any delay allowed, a pending call delays nothing else. The future
/// must not block its thread (use your runtime's timers and sockets).
pub trait AsyncTransport: Send + Sync {
    /// One round trip: deliver `msg` to `msg.to`, resolve to its reply.
    fn call(&self, msg: Message) -> BoxFuture<'static, Option<Message>>;
}

/// The server side: something that answers one request with its reply.
/// [`Node`](crate::Node) implements it; an RPC server calls it for every
/// request that arrives and sends the result back as the response. An async
/// server calls [`Node::handle_async`](crate::Node::handle_async) instead.
pub trait Handler: Send + Sync {
    /// Handles one incoming message; `None` means "no reply".
    fn handle(&self, msg: Message) -> Option<Message>;
}

/// The raft-core id of the server at `index` in `peers` (`index + 1`: the
/// core reserves 0 for "nobody"). `Message::from` and `Message::to` hold these.
pub fn node_id(index: usize) -> NodeId {
    index as NodeId + 1
}

/// The `peers` index of the server with raft-core id `id` (the inverse of
/// [`node_id`]); `None` for the reserved id 0.
pub fn peer_index(id: NodeId) -> Option<usize> {
    usize::try_from(id.checked_sub(1)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(node_id(0), 1);
        assert_eq!(peer_index(node_id(7)), Some(7));
        assert_eq!(peer_index(0), None);
    }
}
