//! The binary's own behaviour: clear one-line errors and exit codes for bad
//! flags and foreign data directories, a config file, a clean stop on
//! SIGTERM, and `raftkv cluster` from start to Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{free_port, sigterm, wait_exit, wait_for, BIN, DEADLINE};
use hyper::{Method, StatusCode};
use raftkv_server::http_client::HttpClient;

/// Runs `raftkv args` to its end: exit code and stderr.
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["server", "--peers", "1=a:1/b:2", "--data-dir", d],
            "missing --id",
        ),
        (
            &["server", "--id", "1", "--peers", "1=a:1", "--data-dir", d],
            "bad peer entry",
        ),
        (
            &[
                "server",
                "--id",
                "4",
                "--peers",
                "1=a:1/b:2",
                "--data-dir",
                d,
            ],
            "not in the peer list",
        ),
        (
            &[
                "server",
                "--id",
                "1",
                "--peers",
                "1=a:1/b:2",
                "--data-dir",
                d,
                "--cluster-id",
                "",
            ],
            "bad cluster id",
        ),
        (
            &["server", "--config", "/nonexistent/raftkv.toml"],
            "cannot read",
        ),
        (&["cluster", "--nodes", "0"], "between 1 and 9"),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
    let (code, stderr) = run(&["server", "--bogus"]);
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn a_config_file_node_stops_on_sigterm_and_its_directory_refuses_another_id() {
    let dir = tempfile::tempdir().unwrap();
    let client = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("node.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "id = 1\ncluster_id = \"test\"\ndata_dir = {:?}\n\n[[peers]]\nid = 1\nraft = \"127.0.0.1:{}\"\nclient = \"{client}\"\n",
            data.to_str().unwrap(),
            free_port()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["server", "--config", config.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = HttpClient::new(Duration::from_secs(5));
    let url = format!("http://{client}/v1/kv/x");
    wait_for("the node to accept a write", || async {
        let r = http.send(Method::PUT, &url, &[], "1".into()).await.ok()?;
        (r.status == StatusCode::OK).then_some(())
    })
    .await;
    sigterm(&child);
    assert_eq!(wait_exit(&mut child).code(), Some(0));

    let peers = format!("2=127.0.0.1:{}/127.0.0.1:{}", free_port(), free_port());
    let (code, stderr) = run(&[
        "server",
        "--id",
        "2",
        "--peers",
        &peers,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("belongs to node 1 of cluster \"test\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn cluster_prints_endpoints_follows_the_leader_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["cluster", "--nodes", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let next = || rx.recv_timeout(DEADLINE).expect("output in time");
    while !lines.iter().any(|l: &String| l.contains("leader: node")) {
        lines.push(next());
    }
    let text = lines.join("\n");
    assert!(
        text.contains("raftkv cluster \"raftkv\": 3 nodes"),
        "{text}"
    );
    let curl = lines
        .iter()
        .find(|l| l.contains("curl -L -X PUT"))
        .expect("a curl line");
    let url = curl.split_whitespace().last().unwrap().to_string();
    let http = HttpClient::new(Duration::from_secs(5));
    let r = http
        .send_following(Method::PUT, &url, &[], "hello".into())
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = http.get(&url).await.unwrap();
    assert_eq!(&r.body[..], b"hello");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    // The reader thread forwards lines until the pipe closes: wait for that,
    // not for whatever it has forwarded by now.
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(DEADLINE) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
}
