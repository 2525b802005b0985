//! The HTTP API on a one-node cluster, in process, over real sockets: every
//! route, bytes in keys and values, the error answers, exactly-once writes
//! with session headers, and a restart from the data directory.

mod common;

use bytes::Bytes;
use common::{single, start_single};
use hyper::{Method, StatusCode};
use raftkv_server::http::encode_key;
use raftkv_server::{Server, StartError};

#[tokio::test]
async fn every_route_answers_and_bytes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = single(dir.path());
    cfg.max_body_bytes = 1024;
    let (server, api) = start_single(cfg).await;

    // PUT a raw value, GET it back raw and as JSON.
    let r = api.call(Method::PUT, "/v1/kv/greeting", &[], "hello").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["previous"], serde_json::Value::Null);
    let r = api.get("/v1/kv/greeting").await;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"hello"[..]));
    let r = api
        .call(
            Method::GET,
            "/v1/kv/greeting",
            &[("accept", "application/json")],
            "",
        )
        .await;
    assert_eq!(r.json()["value"], "hello");
    assert_eq!(r.json()["consistency"], "linearizable");

    // A key with '/', a space and non-UTF-8 bytes; a non-UTF-8 value.
    let key: &[u8] = b"dir/sub key\xff";
    let path = format!("/v1/kv/{}", encode_key(key));
    let value: &[u8] = b"\x00\xfe\xff";
    let r = api
        .call(Method::PUT, &path, &[], Bytes::from_static(value))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.call(Method::PUT, &path, &[], "v2").await;
    assert_eq!(r.json()["previous_b64"], "AP7/", "the old value, in base64");
    let r = api.get(&format!("{path}?consistency=stale")).await;
    assert_eq!(&r.body[..], b"v2");
    // An unescaped '/' is part of the key too.
    let r = api.call(Method::PUT, "/v1/kv/a/b", &[], "ab").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&api.get("/v1/kv/a%2Fb").await.body[..], b"ab");

    // List by prefix, with a limit.
    for k in ["p/1", "p/2", "p/3"] {
        api.call(Method::PUT, &format!("/v1/kv/{k}"), &[], k).await;
    }
    let r = api.get("/v1/kv?prefix=p%2F&limit=2").await;
    let v = r.json();
    assert_eq!(v["more"], true);
    assert_eq!(v["pairs"][0]["key"], "p/1");
    assert_eq!(v["pairs"][1]["value"], "p/2");
    assert_eq!(v["pairs"].as_array().unwrap().len(), 2);
    let r = api.get("/v1/kv?prefix=dir").await;
    assert_eq!(r.json()["pairs"][0]["key_b64"], "ZGlyL3N1YiBrZXn/");

    // Append and compare-and-swap.
    let post = |body: &'static str| api.call(Method::POST, "/v1/kv/n", &[], body);
    assert_eq!(
        post(r#"{"op":"append","value":"ab"}"#).await.json()["len"],
        2
    );
    assert_eq!(
        post(r#"{"op":"append","value_b64":"/w=="}"#).await.json()["len"],
        3
    );
    let r = post(r#"{"op":"cas","expected":"nope","new":"x"}"#).await;
    assert_eq!(r.json()["matched"], false);
    assert_eq!(r.json()["previous_b64"], "YWL/");
    let r = post(r#"{"op":"cas","expected_b64":"YWL/","new":"x"}"#).await;
    assert_eq!(r.json()["matched"], true);
    let r = api
        .call(
            Method::POST,
            "/v1/kv/fresh",
            &[],
            r#"{"op":"cas","new":"1"}"#,
        )
        .await;
    assert_eq!(
        r.json()["matched"],
        true,
        "no expected value: the key must be absent"
    );

    // DELETE, then 404.
    let r = api.call(Method::DELETE, "/v1/kv/n", &[], "").await;
    assert_eq!(
        (r.json()["deleted"].as_bool(), r.json()["previous"].as_str()),
        (Some(true), Some("x"))
    );
    let r = api.get("/v1/kv/n").await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("key_not_found"))
    );

    // Status and metrics.
    let s = api.get("/v1/status").await.json();
    assert_eq!(
        (s["id"].as_u64(), s["role"].as_str()),
        (Some(1), Some("leader"))
    );
    assert!(s["applied"].as_u64().unwrap() >= 10);
    assert_eq!(s["leader"]["id"], 1);
    let m = api.get("/metrics").await.text();
    for name in [
        "raftkv_proposals_total",
        "raftkv_fsync_seconds_bucket",
        "raftkv_term ",
        "raftkv_role 3",
        "raftkv_http_responses_total{code=\"200\"}",
    ] {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_node_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = single(dir.path());
    cfg.max_body_bytes = 1024;
    let (server, api) = start_single(cfg).await;
    let kind = |r: &raftkv_server::http_client::Response| {
        (
            r.status,
            r.json()["error"].as_str().unwrap_or("").to_string(),
        )
    };
    type Case<'a> = (
        Method,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Bytes,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/v1/kv/bad%zzkey",
            vec![],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_key",
        ),
        (
            Method::GET,
            "/v1/kv/k%4",
            vec![],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_key",
        ),
        (
            Method::POST,
            "/v1/kv/k",
            vec![],
            Bytes::from_static(b"{\"op\":"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            Method::POST,
            "/v1/kv/k",
            vec![],
            Bytes::from_static(b"{\"op\":\"append\",\"vaule\":\"x\"}"),
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
        (
            Method::POST,
            "/v1/kv/k",
            vec![],
            Bytes::from_static(b"{\"op\":\"explode\"}"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/kv/k",
            vec![],
            Bytes::from_static(b"{\"op\":\"append\",\"value\":\"a\",\"value_b64\":\"YQ==\"}"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/v1/kv/k",
            vec![],
            Bytes::from(vec![b'x'; 1025]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            Method::GET,
            "/v1/kv/k?consistency=eventual",
            vec![],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/kv?limit=many",
            vec![],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            Method::PUT,
            "/v1/kv/k",
            vec![("raftkv-session", "1")],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_header",
        ),
        (
            Method::PUT,
            "/v1/kv/k",
            vec![("raftkv-session", "x"), ("raftkv-seq", "1")],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_header",
        ),
        (
            Method::PUT,
            "/v1/kv/k",
            vec![("raftkv-session", "1"), ("raftkv-seq", "0")],
            Bytes::new(),
            StatusCode::BAD_REQUEST,
            "bad_header",
        ),
        (
            Method::PUT,
            "/v1/kv/k",
            vec![("raftkv-session", "999"), ("raftkv-seq", "1")],
            Bytes::new(),
            StatusCode::GONE,
            "session_expired",
        ),
        (
            Method::GET,
            "/nowhere",
            vec![],
            Bytes::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, headers, body, status, error) in cases {
        let r = api.call(method.clone(), path, &headers, body).await;
        assert_eq!(
            kind(&r),
            (status, error.to_string()),
            "{method} {path}: {}",
            r.text()
        );
    }
    // A key over the store's limit (4 KiB).
    let long = format!("/v1/kv/{}", "k".repeat(5000));
    let r = api.call(Method::PUT, &long, &[], "v").await;
    assert_eq!(
        kind(&r),
        (StatusCode::URI_TOO_LONG, "key_too_large".to_string())
    );
    // The node still serves.
    let r = api.call(Method::PUT, "/v1/kv/after", &[], "ok").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&api.get("/v1/kv/after").await.body[..], b"ok");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_session_makes_a_retried_write_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_single(single(dir.path())).await;
    let r = api.call(Method::POST, "/v1/sessions", &[], "").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let session = r.json()["session"].as_u64().unwrap().to_string();
    let append = r#"{"op":"append","value":"x"}"#;
    let with = |seq: &'static str| vec![("raftkv-session", session.as_str()), ("raftkv-seq", seq)];
    let first = api
        .call(Method::POST, "/v1/kv/log", &with("1"), append)
        .await;
    let retry = api
        .call(Method::POST, "/v1/kv/log", &with("1"), append)
        .await;
    assert_eq!(first.json()["len"], 1);
    assert_eq!(
        retry.json()["len"],
        1,
        "the retry is answered from the session table"
    );
    let next = api
        .call(Method::POST, "/v1/kv/log", &with("2"), append)
        .await;
    assert_eq!(next.json()["len"], 2);
    let stale = api
        .call(Method::POST, "/v1/kv/log", &with("1"), append)
        .await;
    assert_eq!(
        (stale.status, stale.json()["error"].as_str()),
        (StatusCode::CONFLICT, Some("stale_sequence"))
    );
    assert_eq!(&api.get("/v1/kv/log").await.body[..], b"xx");
    // Without the headers a write is plain: each retry applies again.
    for len in [3, 4] {
        let r = api.call(Method::POST, "/v1/kv/log", &[], append).await;
        assert_eq!(r.json()["len"], len);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_recovers_from_the_data_directory_and_checks_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = single(dir.path());
    cfg.snapshot_bytes = 2048;
    let (server, api) = start_single(cfg.clone()).await;
    for i in 0..60 {
        let r = api
            .call(Method::PUT, &format!("/v1/kv/k{i}"), &[], vec![b'v'; 100])
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // Snapshots are made on their own thread: wait for the first.
    common::wait_for("a snapshot", || async {
        let m = api.get("/metrics").await.text();
        (common::metric(&m, "raftkv_snapshots_taken_total") >= 1.0).then_some(())
    })
    .await;
    server.shutdown().await.unwrap();

    let (server, api) = start_single(cfg.clone()).await;
    for i in [0, 59] {
        let r = api.get(&format!("/v1/kv/k{i}")).await;
        assert_eq!(
            (r.status, r.body.len()),
            (StatusCode::OK, 100),
            "k{i} after the restart"
        );
    }
    let status = api.get("/v1/status").await.json();
    assert!(status["snapshot_index"].as_u64().unwrap() > 0, "{status}");
    // The WAL is locked while the node runs.
    let err = Server::start(cfg.clone())
        .await
        .err()
        .expect("a second node on one directory");
    assert!(
        matches!(err, StartError::Wal(_)) && err.is_data_dir(),
        "{err}"
    );
    server.shutdown().await.unwrap();

    let mut other = cfg.clone();
    other.cluster_id = "another".into();
    let err = Server::start(other).await.err().expect("refused");
    assert!(matches!(err, StartError::Identity(_)), "{err}");
    assert!(
        err.to_string()
            .contains("belongs to node 1 of cluster \"raftkv\""),
        "{err}"
    );
}
