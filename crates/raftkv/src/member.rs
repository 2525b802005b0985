//! `raftkv member list|add-learner|promote|remove` and `raftkv
//! transfer-leader`: change a running cluster's membership and leadership
//! through any of its nodes (changes reach the leader by redirect).
//!
//! Exit codes: 0 done (also when it was already so); 1 the cluster did not
//! answer in time, or the outcome is unknown; 2 bad flags; 4 the cluster
//! refused (unknown node, an id retired, a learner that never caught up).

use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use raftkv_client::{Client, ClientConfig, Error, Members, Transfer};

use crate::Failure;

/// Flags every admin command takes.
#[derive(Args, Debug)]
pub struct Target {
    /// Client addresses of any of the cluster's nodes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8001")]
    pub endpoints: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds (a learner may need a while to
    /// catch up before it can be promoted).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

/// `raftkv member ...`.
#[derive(Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

/// What to do with the membership.
#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List voters and learners (as the leader sees them).
    List(#[command(flatten)] Target),
    /// Add a node as a learner: it receives the log but does not vote.
    AddLearner {
        /// The new node's id (never used before in this cluster).
        id: u64,
        /// Its Raft address, HOST:PORT.
        #[arg(long)]
        raft: String,
        /// Its client (HTTP) address, HOST:PORT.
        #[arg(long)]
        client: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make learners voters once caught up (several ids: one joint change).
    Promote {
        /// The learners' ids.
        #[arg(required = true)]
        ids: Vec<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove members (several ids: one joint change).
    Remove {
        /// The members' ids.
        #[arg(required = true)]
        ids: Vec<u64>,
        #[command(flatten)]
        target: Target,
    },
}

/// `raftkv transfer-leader`.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The voter to hand leadership to (default: the most caught-up one).
    #[arg(long)]
    pub to: Option<u64>,
    #[command(flatten)]
    pub target: Target,
}

/// Runs a `member` command.
pub fn run(args: MemberArgs) -> Result<(), Failure> {
    match args.command {
        MemberCommand::List(t) => with_client(&t, |c| async move {
            let m = c.members().await?;
            Ok(shown(&m, list_text(&m)))
        }),
        MemberCommand::AddLearner {
            id,
            raft,
            client,
            target: t,
        } => with_client(&t, |c| async move {
            let m = c.add_learner(id, &raft, &client).await?;
            let what = if m.changed {
                format!("node {id} added as a learner")
            } else {
                format!("node {id} already is a member at these addresses; nothing changed")
            };
            Ok(shown(&m, format!("{what}\n{}", summary(&m))))
        }),
        MemberCommand::Promote { ids, target: t } => with_client(&t, |c| async move {
            let m = c.promote(&ids).await?;
            let what = if m.changed {
                format!("promoted {} to voter", list(&ids))
            } else {
                format!("{} already voting; nothing changed", list(&ids))
            };
            Ok(shown(&m, format!("{what}\n{}", summary(&m))))
        }),
        MemberCommand::Remove { ids, target: t } => with_client(&t, |c| async move {
            let m = c.remove(&ids).await?;
            let what = if m.changed {
                format!("removed {}", list(&ids))
            } else {
                format!("{} already removed; nothing changed", list(&ids))
            };
            Ok(shown(&m, format!("{what}\n{}", summary(&m))))
        }),
    }
}

/// Runs `transfer-leader`.
pub fn transfer(args: TransferArgs) -> Result<(), Failure> {
    let t = args.target;
    with_client(&t, |c| async move {
        let r: Transfer = c.transfer_leader(args.to).await?;
        let text = if r.changed {
            format!(
                "leadership moved from node {} to node {} (term {})",
                r.from, r.to, r.term
            )
        } else {
            format!(
                "node {} already leads (term {}); nothing changed",
                r.to, r.term
            )
        };
        Ok(shown(&r, text))
    })
}

/// Builds the client, runs `f` on a small runtime, and sorts its error into
/// an exit code.
fn with_client<F, Fut>(t: &Target, f: F) -> Result<(), Failure>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Shown, Error>>,
{
    let cfg = ClientConfig {
        call_timeout: Duration::from_secs(t.timeout.max(1)),
        attempt_timeout: Duration::from_secs(t.timeout.clamp(1, 12)),
        ..ClientConfig::default()
    };
    let client =
        Client::with_config(&t.endpoints, cfg).map_err(|e| Failure::Usage(anyhow!("{e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    match rt.block_on(f(client)) {
        Ok((json, text)) => {
            if t.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                );
            } else {
                println!("{text}");
            }
            Ok(())
        }
        Err(e @ Error::Rejected { .. }) => Err(Failure::Refused(anyhow!("{e}"))),
        Err(e) => Err(Failure::Runtime(anyhow!("{e}"))),
    }
}

/// An answer: as JSON (`--json`), and as text for people.
type Shown = (serde_json::Value, String);

fn shown<T: serde::Serialize>(value: &T, text: String) -> Shown {
    (serde_json::to_value(value).unwrap_or_default(), text)
}

fn list(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(|i| format!("node {i}")).collect();
    ids.join(", ")
}

fn ids(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(",")
    }
}

/// One line: voters, learners, and a joint change if one is under way.
fn summary(m: &Members) -> String {
    let mut s = format!(
        "voters {}; learners {}",
        ids(&m.voter_ids()),
        ids(&m.learner_ids())
    );
    if m.joint {
        s.push_str(&format!(
            "; joint change under way from voters {}",
            ids(&m.voters_outgoing)
        ));
    }
    s
}

/// The table `member list` prints.
fn list_text(m: &Members) -> String {
    let leader = match &m.leader {
        Some(l) => format!("leader node {} at {}", l.id, l.client),
        None => "no leader known".into(),
    };
    let mut out = format!(
        "cluster {:?} ({leader}; as node {} sees it)\n",
        m.cluster_id, m.node
    );
    out.push_str(&format!(
        "{:<6}{:<9}{:<24}{:<24}{}\n",
        "ID", "ROLE", "RAFT", "CLIENT", "MATCH"
    ));
    let rows = m
        .voters
        .iter()
        .map(|v| (v, "voter"))
        .chain(m.learners.iter().map(|l| (l, "learner")));
    for (member, role) in rows {
        let role = if m.leader.as_ref().is_some_and(|l| l.id == member.id) {
            "leader"
        } else {
            role
        };
        let matched = member
            .match_index
            .map_or_else(|| "-".to_string(), |i| i.to_string());
        out.push_str(&format!(
            "{:<6}{:<9}{:<24}{:<24}{}\n",
            member.id, role, member.raft, member.client, matched
        ));
    }
    if m.joint {
        out.push_str(&format!(
            "joint change under way: old voters {}, new voters {}\n",
            ids(&m.voters_outgoing),
            ids(&m.voter_ids())
        ));
    }
    out.trim_end().to_string()
}
