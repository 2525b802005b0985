//! Resident memory of a store of a million pairs (8-byte keys, 256-byte
//! values), applied through `Store::apply` in this process, against the raw
//! bytes: `cargo run --release -p raft-kv --example store_memory` (Linux:
//! reads VmRSS). Figures are in docs/BENCHMARKS.md.

use raft_kv::command::encode;
use raft_kv::{Op, Record, RecordBody, Store, StoreConfig};
/// This process's resident memory in MiB.
fn rss() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}
fn main() {
    let base = rss();
    let mut store = Store::new(StoreConfig::default());
    for i in 0..1_000_000u64 {
        let op = Op::Put {
            key: i.to_be_bytes().to_vec(),
            value: vec![7u8; 256],
        };
        let rec = Record {
            stamp_ms: i + 1,
            body: RecordBody::PlainWrite { op },
        };
        store.apply(i + 1, &encode(&rec)).unwrap();
    }
    let used = rss() - base;
    let raw = 1_000_000.0 * 264.0 / 1048576.0;
    println!(
        "resident {used:.1} MiB, raw {raw:.1} MiB, {:.2}x",
        used / raw
    );
}
