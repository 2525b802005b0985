//! The time-ordered list of a partition's calls and returns that the
//! search scans, with O(1) lift and unlift (dancing links: an entry taken
//! out keeps its own links, so putting entries back in the reverse order
//! restores the list exactly).

/// The list's first (sentinel) entry.
pub(crate) const HEAD: usize = 0;

#[derive(Clone, Copy)]
pub(crate) enum Entry {
    Head,
    Call(usize),
    Return(usize),
    Tail,
}

/// The time-ordered list of calls and returns, with O(1) lift and unlift.
pub(crate) struct Entries {
    pub(crate) kind: Vec<Entry>,
    pub(crate) next: Vec<usize>,
    prev: Vec<usize>,
    pub(crate) call_of: Vec<usize>,
    ret_of: Vec<Option<usize>>,
}

impl Entries {
    /// `events`: (sort key, entry), any order.
    pub(crate) fn new(n_ops: usize, mut events: Vec<((u64, u8, usize), Entry)>) -> Self {
        events.sort_unstable_by_key(|e| e.0);
        let m = events.len();
        let mut kind = Vec::with_capacity(m + 2);
        kind.push(Entry::Head);
        kind.extend(events.into_iter().map(|e| e.1));
        kind.push(Entry::Tail);
        let mut call_of = vec![0; n_ops];
        let mut ret_of = vec![None; n_ops];
        for (i, k) in kind.iter().enumerate() {
            match *k {
                Entry::Call(p) => call_of[p] = i,
                Entry::Return(p) => ret_of[p] = Some(i),
                _ => {}
            }
        }
        Entries {
            next: (1..=m + 2).collect(),
            prev: (0..m + 2).map(|i| i.wrapping_sub(1)).collect(),
            kind,
            call_of,
            ret_of,
        }
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    /// Takes operation `p`'s call and return out of the list.
    pub(crate) fn lift(&mut self, p: usize) {
        self.unlink(self.call_of[p]);
        if let Some(r) = self.ret_of[p] {
            self.unlink(r);
        }
    }

    /// Puts them back (the reverse of [`Entries::lift`]).
    pub(crate) fn unlift(&mut self, p: usize) {
        if let Some(r) = self.ret_of[p] {
            self.relink(r);
        }
        self.relink(self.call_of[p]);
    }
}
