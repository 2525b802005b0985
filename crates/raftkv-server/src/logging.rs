//! Log lines that carry the node's id, term and role.
//!
//! Every task and the driver thread of a node run inside one `node` span
//! (field `id`). The driver keeps a [`NodeLabel`] with the current term and
//! role, attached to that span; [`LineFormat`] prints it with every line:
//!
//! ```text
//! 2026-05-01T10:00:00.123456Z  INFO node{id=1 term=4 role=leader}: raftkv_server::driver: became leader
//! ```
//!
//! (A span's recorded fields cannot be replaced, only appended to, so the
//! term and role live in the label instead of in span fields.)

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use raft_core::{NodeId, Role, Term};
use tracing::{Event, Span, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry};

/// A node's current term and role, shared by the driver (which updates it)
/// and the log formatter (which prints it).
#[derive(Debug)]
pub struct NodeLabel {
    id: NodeId,
    term: AtomicU64,
    role: AtomicU8,
}

impl NodeLabel {
    /// A follower in term 0.
    pub fn new(id: NodeId) -> Arc<Self> {
        Arc::new(NodeLabel {
            id,
            term: AtomicU64::new(0),
            role: AtomicU8::new(0),
        })
    }

    /// Records the node's term and role.
    pub fn set(&self, term: Term, role: Role) {
        self.term.store(term, Ordering::Relaxed);
        let r = match role {
            Role::Follower => 0,
            Role::PreCandidate => 1,
            Role::Candidate => 2,
            Role::Leader => 3,
        };
        self.role.store(r, Ordering::Relaxed);
    }
}

impl fmt::Display for NodeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role.load(Ordering::Relaxed) {
            0 => "follower",
            1 => "precandidate",
            2 => "candidate",
            _ => "leader",
        };
        let term = self.term.load(Ordering::Relaxed);
        write!(f, "id={} term={term} role={role}", self.id)
    }
}

/// The span a node's driver and tasks run in, with `label` attached for
/// [`LineFormat`]. Without a `tracing_subscriber` registry installed the
/// label is simply not printed.
pub fn node_span(label: &Arc<NodeLabel>) -> Span {
    let span = tracing::info_span!("node", id = label.id);
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<Registry>() {
            if let Some(span) = registry.span(id) {
                let mut ext = span.extensions_mut();
                if ext.get_mut::<Arc<NodeLabel>>().is_none() {
                    ext.insert(label.clone());
                }
            }
        }
    });
    span
}

/// One line per event: time, level, spans (a `node` span shows the label
/// instead of its fields), target, message and fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let meta = event.metadata();
        write!(writer, " {:>5} ", meta.level())?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                match ext.get::<Arc<NodeLabel>>() {
                    Some(label) => write!(writer, "{}{{{label}}}", span.name())?,
                    None => match ext.get::<FormattedFields<N>>() {
                        Some(f) if !f.is_empty() => write!(writer, "{}{{{f}}}", span.name())?,
                        _ => write!(writer, "{}", span.name())?,
                    },
                }
                writer.write_str(": ")?;
            }
        }
        write!(writer, "{}: ", meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the process-wide subscriber: [`LineFormat`] to stderr, the level
/// from `RUST_LOG` (default `info`). Does nothing if one is installed.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .event_format(LineFormat)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}
