//! The model against the semantics of `op.rs`, exhaustively over small states.

use super::*;

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Every state over a few keys, each absent or set to one of two values.
fn states() -> Vec<KvState> {
    let keys = ["a", "ab", "b"];
    let mut all = vec![KvState::default()];
    for k in keys {
        let mut next = Vec::new();
        for s in &all {
            next.push(s.clone());
            for v in ["1", "22"] {
                let mut t = s.clone();
                t.set(k.as_bytes(), v.as_bytes().into());
                next.push(t);
            }
        }
        all = next;
    }
    all
}

fn ops() -> Vec<Op> {
    let mut ops = Vec::new();
    for k in ["a", "ab", "c"] {
        ops.push(Op::Get { key: b(k) });
        ops.push(Op::Put {
            key: b(k),
            value: b("1"),
        });
        ops.push(Op::Append {
            key: b(k),
            value: b("x"),
        });
        ops.push(Op::Delete { key: b(k) });
        for expected in [None, Some(b("1"))] {
            ops.push(Op::Cas {
                key: b(k),
                expected,
                new: b("22"),
            });
        }
    }
    for prefix in ["", "a", "ab", "c"] {
        for limit in 0..4 {
            ops.push(Op::Range {
                prefix: b(prefix),
                limit,
            });
        }
    }
    ops
}

/// The true answer and some wrong ones.
fn answers(out: &OpResult) -> Vec<OpResult> {
    let mut wrong = match out.clone() {
        OpResult::Value(v) | OpResult::Replaced(v) => vec![
            OpResult::Value(v.clone()),
            OpResult::Value(None),
            OpResult::Value(Some(b("1"))),
            OpResult::Replaced(v),
            OpResult::Replaced(Some(b("22"))),
        ],
        OpResult::Appended { len } => (0..4)
            .map(|d| OpResult::Appended { len: len + d - 1 })
            .collect(),
        OpResult::Cas { matched, previous } => vec![
            OpResult::Cas {
                matched: !matched,
                previous: previous.clone(),
            },
            OpResult::Cas {
                matched,
                previous: None,
            },
            OpResult::Cas {
                matched,
                previous: Some(b("1")),
            },
        ],
        OpResult::Range { pairs, more } => {
            let mut v = vec![OpResult::Range {
                pairs: pairs.clone(),
                more: !more,
            }];
            let mut fewer = pairs.clone();
            if fewer.pop().is_some() {
                v.push(OpResult::Range {
                    pairs: fewer.clone(),
                    more,
                });
                v.push(OpResult::Range {
                    pairs: fewer,
                    more: true,
                });
            }
            let mut extra = pairs;
            extra.push((b("zz"), b("1")));
            v.push(OpResult::Range { pairs: extra, more });
            v
        }
    };
    wrong.push(out.clone());
    wrong
}

#[test]
fn step_accepts_exactly_the_answer_apply_gives() {
    for state in states() {
        for op in ops() {
            let mut after = state.clone();
            let truth = after.apply(&op);
            assert_eq!(KvModel.step(&state, &op, None), Some(after.clone()));
            for out in answers(&truth) {
                let got = KvModel.step(&state, &op, Some(&out));
                let want = (out == truth).then(|| after.clone());
                assert_eq!(got, want, "{state:?} {op:?} answered {out:?}");
                if got.is_some() && KvModel.is_stutter(&op, &out) {
                    assert_eq!(after, state, "{op:?} {out:?} is no stutter");
                }
            }
        }
    }
}

#[test]
fn equal_contents_have_equal_digests() {
    let mut a = KvState::default();
    let mut b = KvState::default();
    for op in ops() {
        a.apply(&op);
    }
    // Rebuild a's contents directly, in another order.
    for (k, v) in a.pairs.iter().rev() {
        b.set(k, v.clone());
    }
    assert_eq!(a, b);
    assert_eq!(a.digest, b.digest);
    b.remove(b"a");
    b.remove(b"ab");
    b.remove(b"c");
    assert_eq!(b.digest, KvState::default().digest);
}

#[test]
fn range_answers_in_key_order_up_to_the_limit() {
    let mut s = KvState::default();
    for k in ["b", "a", "ab", "c"] {
        s.apply(&Op::Put {
            key: b(k),
            value: b(k),
        });
    }
    let got = s.apply(&Op::Range {
        prefix: b("a"),
        limit: 1,
    });
    assert_eq!(
        got,
        OpResult::Range {
            pairs: vec![(b("a"), b("a"))],
            more: true
        }
    );
    let got = s.apply(&Op::Range {
        prefix: b(""),
        limit: 9,
    });
    let keys: Vec<Vec<u8>> = match got {
        OpResult::Range { pairs, more: false } => pairs.into_iter().map(|p| p.0).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, [b("a"), b("ab"), b("b"), b("c")]);
    assert_eq!(
        s.apply(&Op::Append {
            key: b("new"),
            value: b("xy")
        }),
        OpResult::Appended { len: 2 }
    );
    assert_eq!(s.get(b"new"), Some(&b"xy"[..]));
}
