//! The few calls the service makes on its raft-core node, as a trait, so
//! that the service never owns the node and tests can drive it with a stand-in.

use raft_core::{Error, Index, Node, NodeId, Storage, Term};

/// What [`Service`](crate::Service) needs from a Raft node.
pub trait RaftNode {
    /// Appends a command to the leader's log (§5.3); its index and term.
    fn propose(&mut self, data: Vec<u8>) -> Result<(Index, Term), Error>;
    /// Asks for a linearizable read point for the read `ctx` (thesis §6.4);
    /// `(ctx, index)` comes back later as a read state.
    fn read_index(&mut self, ctx: u64) -> Result<(), Error>;
    /// Whether this node is the leader.
    fn is_leader(&self) -> bool;
    /// The current term.
    fn term(&self) -> Term;
    /// The leader this node knows of in its term.
    fn leader(&self) -> Option<NodeId>;
}

impl<S: Storage> RaftNode for Node<S> {
    fn propose(&mut self, data: Vec<u8>) -> Result<(Index, Term), Error> {
        Node::propose(self, data)
    }

    fn read_index(&mut self, ctx: u64) -> Result<(), Error> {
        Node::read_index(self, ctx)
    }

    fn is_leader(&self) -> bool {
        Node::is_leader(self)
    }

    fn term(&self) -> Term {
        Node::term(self)
    }

    fn leader(&self) -> Option<NodeId> {
        Node::leader(self)
    }
}
