//! A failed check writes a self-contained HTML picture and names it in the
//! failure message. Pictures go to `RAFT_CHECK_DIR` when set (to keep them
//! for a look in a browser), else to a temp dir removed afterwards.

use raft_kv::check::report::PICTURE_DIR_ENV;
use raft_kv::check::{check_and_draw, Budget, CheckFailure, History, KvModel};
use raft_kv::{Op, OpResult};

fn stale_read() -> History {
    let k = || b"x".to_vec();
    let mut h = History::new();
    let a = h.invoke(
        1,
        Op::Put {
            key: k(),
            value: b"1".to_vec(),
        },
        0,
    );
    h.complete(a, OpResult::Replaced(None), 10_000);
    let c = h.invoke(3, Op::Get { key: k() }, 5_000);
    h.complete(c, OpResult::Value(Some(b"1".to_vec())), 12_000);
    let b = h.invoke(
        2,
        Op::Put {
            key: k(),
            value: b"2".to_vec(),
        },
        15_000,
    );
    h.complete(b, OpResult::Replaced(Some(b"1".to_vec())), 30_000);
    let u = h.invoke(
        4,
        Op::Append {
            key: k(),
            value: b"?".to_vec(),
        },
        16_000,
    );
    h.unknown(u);
    let d = h.invoke(1, Op::Get { key: k() }, 40_000);
    h.complete(d, OpResult::Value(Some(b"1".to_vec())), 55_000);
    let e = h.invoke(
        2,
        Op::Put {
            key: b"y".to_vec(),
            value: b"<b>&".to_vec(),
        },
        41_000,
    );
    h.complete(e, OpResult::Replaced(None), 42_000);
    h
}

#[test]
fn failed_check_writes_a_self_contained_picture() {
    let _tmp;
    if std::env::var_os(PICTURE_DIR_ENV).is_none() {
        _tmp = tempfile::tempdir().unwrap();
        // Only this test in this binary touches the variable.
        std::env::set_var(PICTURE_DIR_ENV, _tmp.path());
    }
    let h = stale_read();
    let err = check_and_draw(&KvModel, h.ops(), &Budget::default(), "stale read/1")
        .expect_err("a stale read is not linearizable");
    let msg = err.to_string();
    let CheckFailure::NotLinearizable {
        counterexample,
        picture,
        ..
    } = err
    else {
        panic!("expected not linearizable: {msg}");
    };
    assert_eq!(counterexample.partition.label, "key \"x\"");
    assert_eq!(counterexample.blocked, 4, "the second read of 1");
    assert!(
        msg.contains("cannot be placed next: client 1 get \"x\" → \"1\""),
        "{msg}"
    );
    assert!(msg.contains("there it would answer \"2\""), "{msg}");
    assert!(picture.ends_with("stale_read_1.html"), "{picture}");
    assert!(msg.contains(&picture));

    let page = std::fs::read_to_string(&picture).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a fetch).
    let no_ns = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in [
        "http://", "https://", "src=", "href=", "@import", "url(h", "url(/",
    ] {
        assert!(!no_ns.contains(needle), "found {needle}");
    }
    // A lane per clerk of the partition, the prefix numbered, the blocked op marked.
    for clerk in 1..=4 {
        assert!(
            page.contains(&format!(">clerk {clerk}</text>")),
            "lane {clerk}"
        );
    }
    assert!(page.contains(r#"id="op-4" class="op blocked""#));
    assert!(page.contains(r#"<tspan class="badge">#1 </tspan>"#));
    assert!(
        page.contains(r#"id="op-3" class="op open unknown""#),
        "the lost append, dashed"
    );
    // Key "y" is another partition: not drawn.
    assert!(!page.contains("&lt;b&gt;"));
    assert!(!page.contains("op-5"));
}
