//! The checker on small hand-made histories: known-bad ones are rejected
//! with the right counterexample, known-good ones accepted.

use raft_kv::check::{check_kv, Budget, Exhausted, History, Verdict};
use raft_kv::{Op, OpResult};

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn get(k: &str) -> Op {
    Op::Get { key: b(k) }
}

fn put(k: &str, v: &str) -> Op {
    Op::Put {
        key: b(k),
        value: b(v),
    }
}

fn append(k: &str, v: &str) -> Op {
    Op::Append {
        key: b(k),
        value: b(v),
    }
}

fn delete(k: &str) -> Op {
    Op::Delete { key: b(k) }
}

fn cas(k: &str, expected: Option<&str>, new: &str) -> Op {
    Op::Cas {
        key: b(k),
        expected: expected.map(b),
        new: b(new),
    }
}

fn range(prefix: &str, limit: u32) -> Op {
    Op::Range {
        prefix: b(prefix),
        limit,
    }
}

fn value(v: Option<&str>) -> OpResult {
    OpResult::Value(v.map(b))
}

fn was(v: Option<&str>) -> OpResult {
    OpResult::Replaced(v.map(b))
}

fn len(len: u64) -> OpResult {
    OpResult::Appended { len }
}

fn cas_ok(previous: &str) -> OpResult {
    OpResult::Cas {
        matched: true,
        previous: Some(b(previous)),
    }
}

fn pairs(ps: &[(&str, &str)], more: bool) -> OpResult {
    OpResult::Range {
        pairs: ps.iter().map(|(k, v)| (b(k), b(v))).collect(),
        more,
    }
}

/// (client, call, return, op, answer); `None` return: outcome unknown.
type Row = (u64, u64, Option<u64>, Op, Option<OpResult>);

fn history(ops: Vec<Row>) -> History {
    let mut h = History::new();
    for (client, call, ret, op, out) in ops {
        let id = h.invoke(client, op, call);
        match (ret, out) {
            (Some(t), Some(out)) => h.complete(id, out, t),
            _ => h.unknown(id),
        }
    }
    h
}

fn verdict(h: &History) -> Verdict {
    check_kv(h, &Budget::steps(1_000_000))
}

fn assert_ok(h: &History) {
    let v = verdict(h);
    assert!(v.is_ok(), "expected linearizable, got {v:?}");
}

/// Asserts the history is rejected and returns (prefix, blocked).
fn assert_illegal(h: &History) -> (Vec<usize>, usize) {
    match verdict(h) {
        Verdict::Illegal(cx) => (cx.prefix, cx.blocked),
        v => panic!("expected not linearizable, got {v:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&History::new());
}

#[test]
fn read_of_a_value_before_its_write_began() {
    let h = history(vec![
        (1, 0, Some(10), get("x"), Some(value(Some("1")))),
        (2, 20, Some(30), put("x", "1"), Some(was(None))),
    ]);
    assert_eq!(assert_illegal(&h), (vec![], 0));
}

#[test]
fn acknowledged_append_lost() {
    let h = history(vec![
        (1, 0, Some(10), append("x", "a"), Some(len(1))),
        (2, 20, Some(30), append("x", "b"), Some(len(2))),
        (3, 40, Some(50), get("x"), Some(value(Some("b")))),
    ]);
    assert_eq!(assert_illegal(&h), (vec![0, 1], 2));
}

#[test]
fn acknowledged_append_then_read_of_nothing() {
    let h = history(vec![
        (1, 0, Some(10), append("x", "a"), Some(len(1))),
        (2, 20, Some(30), get("x"), Some(value(None))),
    ]);
    assert_illegal(&h);
}

#[test]
fn cas_that_matched_twice() {
    let h = history(vec![
        (1, 0, Some(10), put("x", "0"), Some(was(None))),
        (2, 20, Some(40), cas("x", Some("0"), "1"), Some(cas_ok("0"))),
        (3, 25, Some(45), cas("x", Some("0"), "2"), Some(cas_ok("0"))),
    ]);
    let (prefix, blocked) = assert_illegal(&h);
    assert_eq!(prefix.len(), 2, "one of the two cas fits after the put");
    assert!(blocked == 1 || blocked == 2);
}

#[test]
fn stale_read_after_a_newer_write_returned() {
    let h = history(vec![
        (1, 0, Some(10), put("x", "1"), Some(was(None))),
        (1, 20, Some(30), put("x", "2"), Some(was(Some("1")))),
        (2, 40, Some(50), get("x"), Some(value(Some("1")))),
    ]);
    assert_eq!(assert_illegal(&h), (vec![0, 1], 2));
}

#[test]
fn put_that_answers_the_wrong_replaced_value() {
    let h = history(vec![
        (1, 0, Some(10), put("x", "1"), Some(was(None))),
        (2, 20, Some(30), put("x", "2"), Some(was(None))),
    ]);
    assert_illegal(&h);
}

#[test]
fn read_after_delete_returned_sees_the_old_value() {
    let h = history(vec![
        (1, 0, Some(10), put("x", "1"), Some(was(None))),
        (1, 20, Some(30), delete("x"), Some(was(Some("1")))),
        (2, 40, Some(50), get("x"), Some(value(Some("1")))),
    ]);
    assert_illegal(&h);
}

#[test]
fn cas_answer_contradicting_itself() {
    // Matched, but the previous value is not the expected one.
    let h = history(vec![(
        1,
        0,
        Some(10),
        cas("x", None, "1"),
        Some(OpResult::Cas {
            matched: true,
            previous: Some(b("0")),
        }),
    )]);
    assert_illegal(&h);
}

#[test]
fn two_readers_see_concurrent_writes_in_opposite_orders() {
    let h = history(vec![
        // Two writes whose answers were lost: each takes effect once, at most.
        (1, 0, None, put("x", "1"), None),
        (2, 0, None, put("x", "2"), None),
        (3, 10, Some(20), get("x"), Some(value(Some("1")))),
        (3, 30, Some(40), get("x"), Some(value(Some("2")))),
        (4, 10, Some(20), get("x"), Some(value(Some("2")))),
        (4, 30, Some(40), get("x"), Some(value(Some("1")))),
    ]);
    assert_illegal(&h);
}

#[test]
fn range_that_saw_keys_that_never_coexisted() {
    // Each key alone is fine; together the range's answer never existed.
    let h = history(vec![
        (1, 0, Some(10), put("a", "1"), Some(was(None))),
        (1, 20, Some(30), delete("a"), Some(was(Some("1")))),
        (1, 40, Some(50), put("b", "1"), Some(was(None))),
        (
            2,
            0,
            Some(60),
            range("", 10),
            Some(pairs(&[("a", "1"), ("b", "1")], false)),
        ),
    ]);
    assert_illegal(&h);
}

#[test]
fn range_with_a_wrong_more_flag() {
    let h = history(vec![
        (1, 0, Some(10), put("a", "1"), Some(was(None))),
        (1, 20, Some(30), put("b", "2"), Some(was(None))),
        (
            2,
            40,
            Some(50),
            range("", 1),
            Some(pairs(&[("a", "1")], false)),
        ),
    ]);
    assert_illegal(&h);
}

#[test]
fn unknown_write_cannot_take_effect_before_its_call() {
    let h = history(vec![
        (1, 0, Some(10), get("x"), Some(value(Some("1")))),
        (2, 20, None, put("x", "1"), None),
    ]);
    assert_illegal(&h);
}

#[test]
fn unknown_write_does_not_explain_a_value_never_written() {
    let h = history(vec![
        (1, 0, None, put("x", "y"), None),
        (2, 10, Some(20), get("x"), Some(value(Some("z")))),
    ]);
    assert_illegal(&h);
}

#[test]
fn later_call_may_take_effect_first() {
    // put 1 is called first but takes effect after put 2: its answer says so.
    let h = history(vec![
        (1, 0, Some(100), put("x", "1"), Some(was(Some("2")))),
        (2, 10, Some(20), put("x", "2"), Some(was(None))),
        (3, 30, Some(40), get("x"), Some(value(Some("2")))),
        (3, 110, Some(120), get("x"), Some(value(Some("1")))),
    ]);
    match verdict(&h) {
        Verdict::Ok(orders) => {
            assert_eq!(orders.len(), 1);
            assert_eq!(orders[0].1, vec![1, 2, 0, 3]);
        }
        v => panic!("expected linearizable, got {v:?}"),
    }
}

#[test]
fn concurrent_cas_one_wins() {
    let h = history(vec![
        (1, 0, Some(10), put("x", "0"), Some(was(None))),
        (2, 20, Some(40), cas("x", Some("0"), "1"), Some(cas_ok("0"))),
        (
            3,
            25,
            Some(45),
            cas("x", Some("0"), "2"),
            Some(OpResult::Cas {
                matched: false,
                previous: Some(b("1")),
            }),
        ),
        (4, 50, Some(60), get("x"), Some(value(Some("1")))),
    ]);
    assert_ok(&h);
}

#[test]
fn unknown_write_takes_effect_late() {
    // Clerk 1's put times out; it is applied after clerk 2's put returned.
    let h = history(vec![
        (1, 0, None, put("x", "1"), None),
        (2, 10, Some(20), put("x", "2"), Some(was(None))),
        (3, 30, Some(40), get("x"), Some(value(Some("2")))),
        (3, 50, Some(60), get("x"), Some(value(Some("1")))),
        (3, 70, Some(80), append("x", "!"), Some(len(2))),
    ]);
    assert_ok(&h);
}

#[test]
fn unknown_append_applied_after_its_clerk_moved_on() {
    let h = history(vec![
        (1, 0, None, append("x", "a"), None),
        (1, 10, Some(20), append("x", "b"), Some(len(1))),
        (2, 30, Some(40), get("x"), Some(value(Some("ba")))),
    ]);
    assert_ok(&h);
}

#[test]
fn unknown_write_that_never_took_effect() {
    let h = history(vec![
        (1, 0, None, put("x", "1"), None),
        (2, 100, Some(110), get("x"), Some(value(None))),
        (2, 120, Some(130), put("x", "2"), Some(was(None))),
    ]);
    assert_ok(&h);
}

#[test]
fn operation_never_completed_counts_as_unknown() {
    let mut h = History::new();
    let id = h.invoke(1, put("x", "1"), 0);
    let r = h.invoke(2, get("x"), 10);
    h.complete(r, value(Some("1")), 20);
    assert!(h.ops()[id].output().is_none());
    assert_ok(&h);
}

#[test]
fn touching_intervals_are_concurrent() {
    // The get is called at the instant the put returns: either order fits.
    let h = history(vec![
        (1, 0, Some(10), put("x", "1"), Some(was(None))),
        (2, 10, Some(20), get("x"), Some(value(None))),
    ]);
    assert_ok(&h);
}

#[test]
fn range_sees_one_instant_across_keys() {
    let h = history(vec![
        (1, 0, Some(10), put("a", "1"), Some(was(None))),
        (1, 20, Some(30), delete("a"), Some(was(Some("1")))),
        (2, 5, Some(15), put("b", "1"), Some(was(None))),
        (
            3,
            0,
            Some(40),
            range("", 1),
            Some(pairs(&[("a", "1")], true)),
        ),
        (
            3,
            50,
            Some(60),
            range("", 5),
            Some(pairs(&[("b", "1"), ("other", "z")], false)),
        ),
        (4, 0, Some(1), put("other", "z"), Some(was(None))),
    ]);
    match verdict(&h) {
        Verdict::Ok(parts) => {
            let labels: Vec<&str> = parts.iter().map(|(p, _)| p.label.as_str()).collect();
            assert_eq!(labels, ["3 keys \"a\", \"b\", \"other\""]);
        }
        v => panic!("expected linearizable, got {v:?}"),
    }
}

#[test]
fn keys_without_ranges_are_checked_apart() {
    let h = history(vec![
        (1, 0, Some(10), put("a", "1"), Some(was(None))),
        (2, 0, Some(10), put("b", "1"), Some(was(None))),
        (3, 0, Some(10), range("c", 3), Some(pairs(&[], false))),
    ]);
    match verdict(&h) {
        Verdict::Ok(parts) => {
            let labels: Vec<&str> = parts.iter().map(|(p, _)| p.label.as_str()).collect();
            assert_eq!(labels, ["key \"a\"", "key \"b\"", "range \"c\"* (no key)"]);
        }
        v => panic!("expected linearizable, got {v:?}"),
    }
}

#[test]
fn exhausted_budget_is_unknown() {
    let h = raft_kv::check::synth::kv_run(
        7,
        &raft_kv::check::synth::RunConfig {
            clients: 8,
            ops: 400,
            keys: 1,
            ..Default::default()
        },
    );
    match check_kv(&h, &Budget::steps(50)) {
        Verdict::Unknown(out) => {
            assert_eq!(out.limit, Exhausted::Steps(50));
            assert_eq!((out.checked, out.partitions), (0, 1));
        }
        v => panic!("expected unknown, got {v:?}"),
    }
    // A deadline already passed is noticed at the first time check.
    match check_kv(&h, &Budget::time(std::time::Duration::ZERO)) {
        Verdict::Unknown(out) => assert_eq!(out.limit, Exhausted::Time(std::time::Duration::ZERO)),
        v => panic!("expected unknown, got {v:?}"),
    }
    let tiny_memo = Budget {
        memo_bytes: Some(1),
        ..Budget::default()
    };
    match check_kv(&h, &tiny_memo) {
        Verdict::Unknown(out) => assert_eq!(out.limit, Exhausted::Memo(1)),
        v => panic!("expected unknown, got {v:?}"),
    }
    let v = check_kv(&h, &Budget::default());
    if let Verdict::Illegal(cx) = &v {
        panic!(
            "{}",
            raft_kv::check::report::explain(&raft_kv::check::KvModel, h.ops(), cx)
        );
    }
    assert!(v.is_ok(), "{v:?}");
}
