//! A fixed-size set of small integers: which operations are linearized.

/// A set of integers below a fixed bound, one bit each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// The empty set over `0..n`.
    pub(crate) fn new(n: usize) -> Self {
        Bitset {
            words: vec![0; n.div_ceil(64)],
        }
    }

    pub(crate) fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub(crate) fn remove(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// The words, 64 members each.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_contains() {
        let mut a = Bitset::new(130);
        let mut b = Bitset::new(130);
        assert_eq!(a.words().len(), 3);
        a.insert(3);
        a.insert(129);
        assert!(a.contains(129) && a.contains(3) && !a.contains(128));
        b.insert(129);
        b.insert(64);
        b.insert(3);
        b.remove(64);
        assert_eq!(a, b);
    }
}
