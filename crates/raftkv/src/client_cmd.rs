//! `raftkv put|get|del|append|cas|list|status`: one call to a cluster
//! through `raftkv-client`, a friendly line for people, `--json` for
//! programs, and an exit code a script can test (see [`ClientExit`]).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::anyhow;
use bytes::Bytes;
use clap::{Args, Subcommand};
use raftkv_client::{Client, ClientConfig, Consistency, Error, Status};
use raftkv_server::http::put_bytes;
use serde_json::{json, Map, Value};

/// Where the CLI looks for endpoints when `--endpoints` is not given.
pub const ENDPOINTS_ENV: &str = "RAFTKV_ENDPOINTS";
/// The endpoint used when neither `--endpoints` nor the variable is set.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:8001";

/// Exit codes of the client commands. 0 and 1 are answers; the others say
/// why there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientExit {
    /// 0: done (`get` found the key, `cas` swapped, `status` saw a leader).
    Ok = 0,
    /// 1: the answer is "no": `get` found no such key, `cas` did not match,
    /// `status` found no leader.
    No = 1,
    /// 2: bad flags or endpoints (nothing was sent).
    Usage = 2,
    /// 4: the server refused the request (bad key, too large, ...), as
    /// `raftkv member` exits when the cluster refuses an admin call.
    Refused = 4,
    /// 5: a write may or may not have been applied (its answer was lost).
    Unknown = 5,
    /// 6: no node answered in time; a write was not applied.
    Unavailable = 6,
    /// 7: the leader's disk is full (507 nospace); reads still work.
    NoSpace = 7,
    /// 8: an answer the client does not understand.
    Protocol = 8,
}

/// Flags every client command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Client addresses of the cluster's nodes, comma-separated (any of
    /// them; the leader is found) [default: $RAFTKV_ENDPOINTS, else
    /// 127.0.0.1:8001].
    #[arg(long, short = 'e', value_name = "HOST:PORT,...")]
    pub endpoints: Option<String>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds, retries included.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// The protocol to speak: binary (native, the default) or http (for
    /// servers older than the binary protocol).
    #[arg(long, value_enum, default_value = "binary")]
    pub protocol: crate::bench::WireProtocol,
}

/// The client commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Set KEY to VALUE ("-": read the value from stdin).
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        common: Common,
    },
    /// Print KEY's value (exit 1 when absent).
    Get {
        key: String,
        #[command(flatten)]
        common: Common,
        /// Read the node's local state (may be behind; no leader needed).
        #[arg(long)]
        stale: bool,
    },
    /// Remove KEY.
    Del {
        key: String,
        #[command(flatten)]
        common: Common,
    },
    /// Append VALUE to KEY's value ("-": from stdin); prints the new length.
    Append {
        key: String,
        value: String,
        #[command(flatten)]
        common: Common,
    },
    /// Set KEY to NEW only if its value is EXPECTED (exit 1 when not).
    Cas {
        key: String,
        /// The value KEY must have.
        #[arg(long, required_unless_present = "absent")]
        expected: Option<String>,
        /// KEY must be absent instead.
        #[arg(long, conflicts_with = "expected")]
        absent: bool,
        new: String,
        #[command(flatten)]
        common: Common,
    },
    /// List keys (and values) starting with PREFIX, in key order.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        common: Common,
        /// At most this many (the server caps it at 1,000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Read the node's local state (may be behind; no leader needed).
        #[arg(long)]
        stale: bool,
    },
    /// Every node's role, term, leader and log positions.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

impl ClientCommand {
    fn common(&self) -> Common {
        match self {
            ClientCommand::Put { common, .. }
            | ClientCommand::Get { common, .. }
            | ClientCommand::Del { common, .. }
            | ClientCommand::Append { common, .. }
            | ClientCommand::Cas { common, .. }
            | ClientCommand::List { common, .. }
            | ClientCommand::Status { common } => common.clone(),
        }
    }
}

/// Runs one client command; returns its exit code.
pub fn run(cmd: ClientCommand) -> ClientExit {
    let common = cmd.common();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ClientExit::Unavailable;
        }
    };
    match rt.block_on(call(cmd, &common)) {
        Ok(out) => {
            emit(&out, common.json);
            out.exit
        }
        Err(Failed::Usage(e)) => {
            eprintln!("error: {e:#}");
            ClientExit::Usage
        }
        Err(Failed::Client(e)) => {
            let exit = exit_of(&e);
            if common.json {
                let mut m = Map::new();
                m.insert("error".into(), json!(e.kind().unwrap_or(kind_of(exit))));
                m.insert("message".into(), json!(e.to_string()));
                m.insert("exit".into(), json!(exit as i32));
                println!("{}", Value::Object(m));
            } else {
                eprintln!("error: {e}");
            }
            exit
        }
    }
}

enum Failed {
    Usage(anyhow::Error),
    Client(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        match e {
            Error::NoEndpoints | Error::BadEndpoint(_) => Failed::Usage(e.into()),
            e => Failed::Client(e),
        }
    }
}

/// What a command prints and how it exits.
struct Output {
    /// Bytes for stdout in the friendly form (a newline is added).
    text: Vec<u8>,
    json: Value,
    exit: ClientExit,
}

fn emit(out: &Output, json: bool) {
    let mut stdout = std::io::stdout().lock();
    let _ = if json {
        writeln!(stdout, "{}", out.json)
    } else if out.text.is_empty() {
        Ok(())
    } else {
        stdout
            .write_all(&out.text)
            .and_then(|()| stdout.write_all(b"\n"))
    };
}

/// The exit code for a failed call.
pub fn exit_of(e: &Error) -> ClientExit {
    match e {
        Error::NoEndpoints | Error::BadEndpoint(_) => ClientExit::Usage,
        Error::Unavailable { .. } => ClientExit::Unavailable,
        Error::OutcomeUnknown(_) | Error::SessionExpired(_) => ClientExit::Unknown,
        Error::NoSpace(_) => ClientExit::NoSpace,
        Error::Rejected { .. } => ClientExit::Refused,
        Error::Protocol(_) => ClientExit::Protocol,
    }
}

fn kind_of(exit: ClientExit) -> &'static str {
    match exit {
        ClientExit::Unavailable => "unavailable",
        ClientExit::Unknown => "outcome_unknown",
        ClientExit::Protocol => "protocol",
        _ => "error",
    }
}

/// The endpoints from the flag, the environment, or the default.
fn endpoints(common: &Common) -> Vec<String> {
    let list = common
        .endpoints
        .clone()
        .or_else(|| std::env::var(ENDPOINTS_ENV).ok())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A value argument: the text itself, or stdin for "-".
fn value_arg(v: &str) -> Result<Bytes, Failed> {
    if v != "-" {
        return Ok(Bytes::copy_from_slice(v.as_bytes()));
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| Failed::Usage(anyhow!("cannot read the value from stdin: {e}")))?;
    Ok(buf.into())
}

fn obj(build: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut m = Map::new();
    build(&mut m);
    Value::Object(m)
}

/// Bytes shown to a person: as they are when printable, escaped otherwise.
fn shown(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

async fn call(cmd: ClientCommand, common: &Common) -> Result<Output, Failed> {
    if !(common.timeout > 0.0 && common.timeout.is_finite()) {
        return Err(Failed::Usage(anyhow!(
            "--timeout must be a positive number"
        )));
    }
    let total = Duration::from_secs_f64(common.timeout);
    let cfg = ClientConfig {
        attempt_timeout: total.min(Duration::from_secs(5)),
        call_timeout: total,
        protocol: common.protocol.client(),
        ..ClientConfig::default()
    };
    let client = Client::with_config(endpoints(common), cfg)?;
    let ok = ClientExit::Ok;
    Ok(match cmd {
        ClientCommand::Put { key, value, .. } => {
            let previous = client.put(&key, value_arg(&value)?).await?;
            Output {
                text: b"OK".to_vec(),
                json: obj(|m| put_bytes(m, "previous", previous.as_deref())),
                exit: ok,
            }
        }
        ClientCommand::Get { key, stale, .. } => {
            let c = if stale {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            };
            match client.get_with(&key, c).await? {
                Some(v) => Output {
                    text: v.to_vec(),
                    json: obj(|m| put_bytes(m, "value", Some(&v))),
                    exit: ok,
                },
                None => {
                    eprintln!("{key}: not found");
                    Output {
                        text: Vec::new(),
                        json: json!({ "value": null }),
                        exit: ClientExit::No,
                    }
                }
            }
        }
        ClientCommand::Del { key, .. } => {
            let previous = client.delete(&key).await?;
            let text = match &previous {
                Some(_) => "deleted",
                None => "deleted (it was absent)",
            };
            Output {
                text: text.as_bytes().to_vec(),
                json: obj(|m| put_bytes(m, "previous", previous.as_deref())),
                exit: ok,
            }
        }
        ClientCommand::Append { key, value, .. } => {
            let len = client.append(&key, value_arg(&value)?).await?;
            Output {
                text: len.to_string().into_bytes(),
                json: json!({ "len": len }),
                exit: ok,
            }
        }
        ClientCommand::Cas {
            key, expected, new, ..
        } => {
            let expected = expected.map(|e| e.into_bytes());
            let out = client
                .cas(&key, expected.as_deref(), new.as_bytes())
                .await?;
            let text = match (out.matched, &out.previous) {
                (true, _) => "swapped".to_string(),
                (false, Some(p)) => format!("not swapped: the value is \"{}\"", shown(p)),
                (false, None) => "not swapped: the key is absent".to_string(),
            };
            Output {
                text: text.into_bytes(),
                json: obj(|m| {
                    m.insert("matched".into(), json!(out.matched));
                    put_bytes(m, "previous", out.previous.as_deref());
                }),
                exit: if out.matched { ok } else { ClientExit::No },
            }
        }
        ClientCommand::List {
            prefix,
            limit,
            stale,
            ..
        } => {
            let client = if stale {
                let cfg = ClientConfig {
                    consistency: Consistency::Stale,
                    ..client.config().clone()
                };
                Client::with_config(client.endpoints(), cfg)?
            } else {
                client
            };
            let page = client.list(&prefix, limit).await?;
            let mut text = Vec::new();
            for (k, v) in &page.pairs {
                text.extend_from_slice(format!("{}\t{}\n", shown(k), shown(v)).as_bytes());
            }
            if page.more {
                text.extend_from_slice(b"... (more: raise --limit)\n");
            }
            text.pop();
            let pairs: Vec<Value> = page
                .pairs
                .iter()
                .map(|(k, v)| {
                    obj(|m| {
                        put_bytes(m, "key", Some(k));
                        put_bytes(m, "value", Some(v));
                    })
                })
                .collect();
            Output {
                text,
                json: json!({ "pairs": pairs, "more": page.more }),
                exit: ok,
            }
        }
        ClientCommand::Status { .. } => status(&client).await,
    })
}

/// `status`: one line per endpoint, and whether a leader is known.
async fn status(client: &Client) -> Output {
    let all = client.cluster_status().await;
    let leader = all
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .filter_map(|s| Some((s.term, s.leader.clone()?)))
        .max_by_key(|(term, _)| *term)
        .map(|(_, l)| l);
    let mut text = format!(
        "{:<22} {:>3} {:<12} {:>6} {:>9} {:>9} {:>9} {:>9}\n",
        "endpoint", "id", "role", "term", "commit", "applied", "last", "snapshot"
    );
    let mut nodes = Vec::new();
    for (endpoint, s) in &all {
        match s {
            Ok(s) => {
                text.push_str(&line(endpoint, s));
                nodes.push(json!({ "endpoint": endpoint, "status": s }));
            }
            Err(e) => {
                text.push_str(&format!("{endpoint:<22} unreachable: {e}\n"));
                nodes.push(json!({ "endpoint": endpoint, "error": e.to_string() }));
            }
        }
    }
    match &leader {
        Some(l) => text.push_str(&format!("leader: node {} at {}", l.id, l.client)),
        None => text.push_str("leader: none known"),
    }
    Output {
        text: text.into_bytes(),
        json: json!({ "leader": leader, "nodes": nodes }),
        exit: if leader.is_some() {
            ClientExit::Ok
        } else {
            ClientExit::No
        },
    }
}

fn line(endpoint: &str, s: &Status) -> String {
    let mut l = format!(
        "{endpoint:<22} {:>3} {:<12} {:>6} {:>9} {:>9} {:>9} {:>9}",
        s.id, s.role, s.term, s.commit, s.applied, s.last_index, s.snapshot_index
    );
    if s.no_space {
        l.push_str("  NO SPACE (refusing writes)");
    }
    l.push('\n');
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_exit_code() {
        let cases = [
            (Error::NoEndpoints, 2),
            (
                Error::Unavailable {
                    attempts: 1,
                    elapsed: Duration::ZERO,
                    last: String::new(),
                },
                6,
            ),
            (Error::OutcomeUnknown(String::new()), 5),
            (Error::SessionExpired(1), 5),
            (
                Error::Rejected {
                    status: 400,
                    kind: "bad_key".into(),
                    message: String::new(),
                },
                4,
            ),
            (Error::NoSpace(String::new()), 7),
            (Error::Protocol(String::new()), 8),
        ];
        for (e, code) in cases {
            assert_eq!(exit_of(&e) as i32, code, "{e}");
        }
    }

    #[test]
    fn bytes_are_shown_escaped() {
        assert_eq!(shown(b"a b"), "a b");
        assert_eq!(shown(b"\x00\n\xff"), "\\x00\\n\\xff");
    }
}
