//! The search's memo of configurations already explored (Lowe 2016, §3:
//! the cache of (linearized set, state) pairs), extended for operations
//! whose outcome is unknown.
//!
//! A configuration is (K, s, U): the linearized operations with a known
//! answer, the model state, and the linearized operations with an unknown
//! answer. (K, s, U) is as good as any (K, s, U') with U ⊆ U': an unknown
//! operation constrains nobody, so whatever the search can do after placing
//! more of them it can do by leaving them out. The memo therefore prunes a
//! configuration when it holds the same K and s with a subset of its U.
//! Without unknown operations this is exactly Lowe's cache.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::bitset::Bitset;

/// A fast non-cryptographic hasher (the multiply-rotate scheme of rustc's
/// FxHash); the memo hashes one state per step.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Passes an already mixed `u64` through.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, _: &[u8]) {
        unreachable!("IdHasher hashes u64 keys only")
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash of `state`.
pub(crate) fn hash_state<S: Hash>(state: &S) -> u64 {
    let mut h = FastHasher::default();
    state.hash(&mut h);
    h.finish()
}

/// A random-looking 64-bit value for operation `i` (Zobrist hashing: the
/// hash of a set is the XOR of its members' values, updated in O(1)).
pub(crate) fn zobrist(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const NONE: u32 = u32::MAX;

struct Node<S> {
    state: S,
    /// The next node with the same hash key.
    next: u32,
    /// The first of this node's unknown-outcome sets (a list through `u_next`).
    first_u: u32,
}

/// Explored configurations. Bitsets live in two flat arenas (one slice of
/// words per node or set), so a million entries are a few big allocations,
/// not millions of small ones.
pub(crate) struct Memo<S> {
    /// Hash of (K, s) → first node with it.
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    nodes: Vec<Node<S>>,
    /// Node i's K: `known[i * wk..][..wk]`.
    known: Vec<u64>,
    wk: usize,
    /// Set j: `unknown[j * wu..][..wu]`, next set of its node `u_next[j]`.
    unknown: Vec<u64>,
    u_next: Vec<u32>,
    wu: usize,
}

impl<S: Clone + Eq + Hash> Memo<S> {
    /// A memo for `n_known` answered and `n_unknown` unknown operations.
    pub(crate) fn new(n_known: usize, n_unknown: usize) -> Self {
        Memo {
            index: HashMap::default(),
            nodes: Vec::new(),
            known: Vec::new(),
            wk: Bitset::new(n_known).words().len(),
            unknown: Vec::new(),
            u_next: Vec::new(),
            wu: Bitset::new(n_unknown).words().len(),
        }
    }

    fn add_unknown(&mut self, set: &Bitset, next: u32) -> u32 {
        self.unknown.extend_from_slice(set.words());
        self.u_next.push(next);
        (self.u_next.len() - 1) as u32
    }

    /// Records (known, state, unknown) and returns true, or returns false if
    /// it (or a configuration at least as good) was seen before.
    /// `known_hash` is the Zobrist hash of `known`.
    pub(crate) fn visit(
        &mut self,
        known_hash: u64,
        known: &Bitset,
        state: &S,
        unknown: &Bitset,
    ) -> bool {
        let key = known_hash ^ hash_state(state).rotate_left(17);
        let (wk, wu) = (self.wk, self.wu);
        let first = self.index.get(&key).copied().unwrap_or(NONE);
        let mut id = first;
        while id != NONE {
            let i = id as usize;
            if self.known[i * wk..][..wk] == *known.words() && self.nodes[i].state == *state {
                let mut j = self.nodes[i].first_u;
                while j != NONE {
                    let seen = &self.unknown[j as usize * wu..][..wu];
                    if seen.iter().zip(unknown.words()).all(|(a, b)| a & !b == 0) {
                        return false;
                    }
                    j = self.u_next[j as usize];
                }
                let head = self.nodes[i].first_u;
                self.nodes[i].first_u = self.add_unknown(unknown, head);
                return true;
            }
            id = self.nodes[i].next;
        }
        let first_u = self.add_unknown(unknown, NONE);
        self.known.extend_from_slice(known.words());
        self.nodes.push(Node {
            state: state.clone(),
            next: first,
            first_u,
        });
        self.index.insert(key, (self.nodes.len() - 1) as u32);
        true
    }

    /// Configurations stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.u_next.len()
    }

    /// Memory held, in bytes (states counted by their inline size only).
    pub(crate) fn bytes(&self) -> usize {
        let words = self.known.capacity() + self.unknown.capacity();
        let index = self.index.capacity() * (8 + 4);
        words * 8
            + self.nodes.capacity() * std::mem::size_of::<Node<S>>()
            + self.u_next.capacity() * 4
            + index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_same_and_dominated_configurations() {
        let mut memo = Memo::new(4, 3);
        let mut k = Bitset::new(4);
        k.insert(1);
        let h = zobrist(1);
        let mut u0 = Bitset::new(3);
        let mut u1 = u0.clone();
        u1.insert(2);
        assert!(memo.visit(h, &k, &7u32, &u1));
        assert!(!memo.visit(h, &k, &7u32, &u1), "same configuration");
        assert!(memo.visit(h, &k, &8u32, &u1), "other state");
        assert!(memo.visit(h, &k, &7u32, &u0), "fewer unknowns placed");
        u0.insert(0);
        u0.insert(2);
        assert!(!memo.visit(h, &k, &7u32, &u0), "a superset is dominated");
        assert_eq!(memo.len(), 3);
    }
}
