//! What a simulated client calls, one call after another, until told to
//! stop: the lab's GenericTest client, a fixed script, or random operations
//! on a few hot keys. Decisions come from the run's seeded RNG.

use std::collections::{BTreeMap, VecDeque};

use raft_kv::{Key, KvError, Op, OpResult, Value};
use rand::Rng;

/// The value GenericTest's client `me` appends (or puts) as its `j`-th write.
pub fn lab_value(me: usize, j: u64) -> Vec<u8> {
    format!("x {me} {j} y").into_bytes()
}

/// A client's loop.
#[derive(Clone, Debug)]
pub enum Workload {
    /// The lab's GenericTest client `me`: first puts "" to its own key,
    /// then appends `x me j y` (half the time) or gets; with random keys it
    /// picks one of `keys` keys for each call and sometimes puts instead.
    Lab {
        /// The client's number (its key without random keys).
        me: usize,
        /// Keys to choose from with random keys (the lab: one per client).
        keys: usize,
        /// Pick a random key for each call.
        random_keys: bool,
        /// Writes so far (the lab's `j`).
        j: u64,
        /// Whether the first put is done.
        started: bool,
    },
    /// These operations, in order, then stop.
    Script(VecDeque<Op>),
    /// Random get, put, append, delete, cas and range on a few hot keys.
    Random(RandomOps),
}

impl Workload {
    /// GenericTest's client `me` among `clients`.
    pub fn lab(me: usize, clients: usize, random_keys: bool) -> Self {
        Workload::Lab {
            me,
            keys: clients,
            random_keys,
            j: 0,
            started: false,
        }
    }

    /// Numbers the writes of a [`Workload::Lab`] client from `j` on.
    pub fn numbered_from(mut self, from: u64) -> Self {
        if let Workload::Lab { j, .. } = &mut self {
            *j = from;
        }
        self
    }

    /// The next call, knowing how the last one ended; `None`: done.
    pub fn next(
        &mut self,
        rng: &mut impl Rng,
        last: Option<(&Op, &Result<OpResult, KvError>)>,
    ) -> Option<Op> {
        match self {
            Workload::Lab {
                me,
                keys,
                random_keys,
                j,
                started,
            } => {
                let key = |k: usize| k.to_string().into_bytes();
                if !*random_keys && !*started {
                    *started = true;
                    return Some(Op::Put {
                        key: key(*me),
                        value: Vec::new(),
                    });
                }
                let k = if *random_keys {
                    key(rng.gen_range(0..(*keys).max(1)))
                } else {
                    key(*me)
                };
                let value = lab_value(*me, *j);
                if rng.gen_range(0..1000) < 500 {
                    *j += 1;
                    Some(Op::Append { key: k, value })
                } else if *random_keys && rng.gen_range(0..1000) < 100 {
                    *j += 1;
                    Some(Op::Put { key: k, value })
                } else {
                    Some(Op::Get { key: k })
                }
            }
            Workload::Script(ops) => ops.pop_front(),
            Workload::Random(r) => {
                if let Some((op, result)) = last {
                    r.learn(op, result);
                }
                Some(r.next(rng))
            }
        }
    }
}

/// Random operations on hot keys `h/0`..: ranges over the prefix `h/`,
/// compare-and-swaps that expect what this client last saw.
#[derive(Clone, Debug)]
pub struct RandomOps {
    me: usize,
    keys: usize,
    reads_pct: u32,
    n: u64,
    /// What this client last saw (or wrote) at each key.
    seen: BTreeMap<Key, Option<Value>>,
}

impl RandomOps {
    /// Client `me` on `keys` hot keys; 40% of its calls read (gets and
    /// ranges), the rest are puts, appends, deletes and compare-and-swaps.
    pub fn new(me: usize, keys: usize) -> Self {
        RandomOps {
            me,
            keys: keys.max(1),
            reads_pct: 40,
            n: 0,
            seen: BTreeMap::new(),
        }
    }

    /// Makes `pct` percent of the calls reads.
    pub fn reads(mut self, pct: u32) -> Self {
        self.reads_pct = pct.min(100);
        self
    }

    fn learn(&mut self, op: &Op, result: &Result<OpResult, KvError>) {
        let seen = match (op, result) {
            (Op::Get { .. }, Ok(OpResult::Value(v))) => v.clone(),
            (Op::Put { value, .. }, Ok(_)) => Some(value.clone()),
            (Op::Delete { .. }, Ok(_)) => None,
            (Op::Cas { new, .. }, Ok(OpResult::Cas { matched: true, .. })) => Some(new.clone()),
            (Op::Cas { .. }, Ok(OpResult::Cas { previous, .. })) => previous.clone(),
            _ => return,
        };
        self.seen.insert(op.key().to_vec(), seen);
    }

    fn next(&mut self, rng: &mut impl Rng) -> Op {
        self.n += 1;
        let key = format!("h/{}", rng.gen_range(0..self.keys)).into_bytes();
        let value = format!("{}.{}", self.me, self.n).into_bytes();
        if rng.gen_range(0..100) < self.reads_pct {
            return match rng.gen_range(0..8) {
                0..=4 => Op::Get { key },
                _ => Op::Range {
                    prefix: b"h/".to_vec(),
                    limit: rng.gen_range(1..=self.keys as u32),
                },
            };
        }
        match rng.gen_range(0..12) {
            0..=2 => Op::Put { key, value },
            3..=6 => Op::Append { key, value },
            7..=8 => Op::Delete { key },
            _ => {
                let expected = match rng.gen_range(0..4) {
                    0 => None,
                    _ => self.seen.get(&key).cloned().flatten(),
                };
                Op::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_labs_client_puts_its_key_then_appends_numbered_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut w = Workload::lab(2, 5, false).numbered_from(7);
        let first = w.next(&mut rng, None);
        assert_eq!(
            first,
            Some(Op::Put {
                key: b"2".to_vec(),
                value: Vec::new()
            })
        );
        let appended: Vec<Vec<u8>> = (0..50)
            .filter_map(|_| match w.next(&mut rng, None) {
                Some(Op::Append { key, value }) if key == b"2" => Some(value),
                Some(Op::Get { key }) if key == b"2" => None,
                other => panic!("unexpected call {other:?}"),
            })
            .collect();
        assert!(appended.len() > 10);
        let wanted: Vec<Vec<u8>> = (7..)
            .take(appended.len())
            .map(|j| lab_value(2, j))
            .collect();
        assert_eq!(appended, wanted);
    }

    #[test]
    fn random_ops_expect_what_they_last_saw() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut w = Workload::Random(RandomOps::new(0, 1).reads(0));
        let get = Op::Get {
            key: b"h/0".to_vec(),
        };
        let seen = Ok(OpResult::Value(Some(b"v".to_vec())));
        let mut expected = Vec::new();
        for _ in 0..200 {
            if let Some(Op::Cas { expected: e, .. }) = w.next(&mut rng, Some((&get, &seen))) {
                expected.push(e);
            }
        }
        assert!(expected.contains(&None));
        assert!(expected.contains(&Some(b"v".to_vec())));
        assert!(expected
            .iter()
            .all(|e| e.is_none() || e.as_deref() == Some(&b"v"[..])));
    }

    #[test]
    fn a_script_ends() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let get = Op::Get { key: b"k".to_vec() };
        let mut w = Workload::Script([get.clone()].into());
        assert_eq!(w.next(&mut rng, None), Some(get));
        assert_eq!(w.next(&mut rng, None), None);
    }
}
