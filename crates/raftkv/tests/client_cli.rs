//! The client commands (`raftkv put|get|del|append|cas|list|status`) and
//! `raftkv bench` against a real cluster: what they print, with and without
//! `--json`, and the exit codes scripts rely on.

mod common;

use std::process::{Command, Output};

use common::{Cluster, BIN};
use serde_json::Value;

/// Runs `raftkv ARGS --endpoints ENDPOINTS`: exit code, stdout, stderr.
fn raftkv(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(BIN)
        .args(args)
        .args(["--endpoints", endpoints])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_for_people_and_programs_and_exit_as_documented() {
    let c = Cluster::start(3, &[]);
    c.agreed_leader(&[1, 2, 3]).await;
    // Any node will do: a follower's redirect leads the client to the leader.
    let e = &c.endpoints().join(",");

    assert_eq!(raftkv(e, &["put", "greeting", "hello"]).0, 0);
    let (code, out, _) = raftkv(e, &["get", "greeting"]);
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    let (code, out, _) = raftkv(e, &["put", "greeting", "hi", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["previous"], "hello");
    // The same over the HTTP API, for servers older than the binary protocol.
    let (code, out, _) = raftkv(e, &["get", "greeting", "--protocol", "http"]);
    assert_eq!((code, out.as_str()), (0, "hi\n"));
    let (code, _, err) = raftkv(e, &["get", "greeting", "--protocol", "carrier-pigeon"]);
    assert_eq!(code, 2, "a usage error: {err}");

    // "No" answers exit 1: a missing key, a cas that does not match.
    let (code, out, err) = raftkv(e, &["get", "missing"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = raftkv(e, &["get", "missing", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(json(&out)["value"], Value::Null);
    let (code, out, _) = raftkv(e, &["cas", "greeting", "--expected", "nope", "x"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not swapped: the value is \"hi\""), "{out}");
    let (code, out, _) = raftkv(e, &["cas", "greeting", "--expected", "hi", "bye", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["matched"], true);
    let (code, _, _) = raftkv(e, &["cas", "fresh", "--absent", "1"]);
    assert_eq!(code, 0);

    // Appends answer the new length; list shows pairs in key order.
    assert_eq!(raftkv(e, &["append", "log", "a;"]).1, "2\n");
    assert_eq!(raftkv(e, &["append", "log", "b;"]).1, "4\n");
    let (code, out, _) = raftkv(e, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(out, "fresh\t1\ngreeting\tbye\nlog\ta;b;\n");
    let v = json(&raftkv(e, &["list", "l", "--json"]).1);
    assert_eq!(v["pairs"][0]["value"], "a;b;");
    assert_eq!(v["more"], false);

    // Deleting, twice.
    assert_eq!(raftkv(e, &["del", "greeting"]).1, "deleted\n");
    assert_eq!(
        raftkv(e, &["del", "greeting"]).1,
        "deleted (it was absent)\n"
    );
    assert_eq!(raftkv(e, &["get", "greeting"]).0, 1);

    // Status: one line per node and the leader; JSON for programs.
    let (code, out, _) = raftkv(e, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("127.0.0.1")).count(),
        4,
        "{out}"
    );
    assert!(out.contains("leader: node "), "{out}");
    let v = json(&raftkv(e, &["status", "--json"]).1);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
    assert!(v["leader"]["id"].as_u64().is_some(), "{v}");

    // Failures: a refused request (4), nobody answering (6), bad flags (2).
    let long_key = "k".repeat(5000);
    let (code, _, err) = raftkv(e, &["put", &long_key, "v"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("key_too_large"), "{err}");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let (code, out, _) = raftkv(&dead, &["get", "k", "--timeout", "1", "--json"]);
    assert_eq!(code, 6);
    assert_eq!(json(&out)["error"], "unavailable");
    assert_eq!(raftkv(&dead, &["status"]).0, 1, "no leader known");
    assert_eq!(raftkv("not an address", &["get", "k"]).0, 2);
    assert_eq!(
        raftkv(e, &["cas", "k", "v"]).0,
        2,
        "cas needs --expected or --absent"
    );
}

#[test]
fn bench_runs_a_short_round_on_its_own_cluster() {
    // Shows that it works; its figures are not judged here.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "--clients",
            "1,4",
            "--secs",
            "0.5",
            "--warmup",
            "0.1",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 7 && w[0] == "raftkv" && w[1].parse::<u32>().is_ok())
        .collect();
    let clients: Vec<&str> = rows.iter().map(|w| w[1]).collect();
    assert_eq!(clients, ["1", "4"], "{stdout}");
    for row in rows {
        assert!(
            row[2].parse::<f64>().unwrap() > 0.0,
            "no write went through: {stdout}"
        );
    }
}
