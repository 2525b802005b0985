//! The nemesis: one fault at a time, chosen from the seed, held for a
//! while, then healed; every step printed with its time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::Cluster;
use crate::proxy::{Link, LinkState};
use crate::NODES;

/// Which node a fault hits.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Whichever node leads when the fault starts.
    Leader,
    /// A node chosen from the seed.
    Node(u64),
}

/// A fault.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// kill -9, then start it again from its data directory.
    Kill(Target),
    /// SIGSTOP, then SIGCONT.
    Pause(Target),
    /// The node's links to and from every other node severed or stalled.
    Isolate(Target, LinkState),
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill-9",
            Fault::Pause(_) => "sigstop",
            Fault::Isolate(_, LinkState::Stalled) => "partition-stall",
            Fault::Isolate(..) => "partition-sever",
        }
    }
}

pub struct Nemesis {
    rng: StdRng,
    links: BTreeMap<(u64, u64), Arc<Link>>,
    base: Instant,
    /// Faults applied, by kind.
    counts: BTreeMap<&'static str, u32>,
    killed: Vec<u64>,
    paused: Vec<u64>,
}

impl Nemesis {
    pub fn new(seed: u64, links: BTreeMap<(u64, u64), Arc<Link>>, base: Instant) -> Nemesis {
        Nemesis {
            rng: StdRng::seed_from_u64(seed),
            links,
            base,
            counts: BTreeMap::new(),
            killed: Vec::new(),
            paused: Vec::new(),
        }
    }

    fn say(&self, what: String) {
        eprintln!(
            "[{:>6.2}s] nemesis: {what}",
            self.base.elapsed().as_secs_f64()
        );
    }

    fn choose(&mut self) -> Fault {
        let target = if self.rng.gen_bool(0.5) {
            Target::Leader
        } else {
            Target::Node(self.rng.gen_range(1..=NODES))
        };
        match self.rng.gen_range(0..4) {
            0 => Fault::Kill(target),
            1 => Fault::Pause(target),
            2 => Fault::Isolate(target, LinkState::Severed),
            _ => Fault::Isolate(target, LinkState::Stalled),
        }
    }

    /// The leader now (the highest term's), else node 1.
    async fn resolve(&mut self, c: &Cluster, t: Target) -> u64 {
        match t {
            Target::Node(id) => id,
            Target::Leader => {
                let mut best = None;
                for id in 1..=NODES {
                    let ask = tokio::time::timeout(Duration::from_millis(500), c.status(id));
                    let Ok(Some(s)) = ask.await else { continue };
                    if s["role"] == "leader" {
                        let term = s["term"].as_u64().unwrap_or(0);
                        if best.is_none_or(|(t, _)| term > t) {
                            best = Some((term, id));
                        }
                    }
                }
                best.map_or(1, |(_, id)| id)
            }
        }
    }

    /// Applies faults until `end`, each healed before the next.
    pub async fn run(&mut self, c: &mut Cluster, end: Instant) {
        // Let the clients start on a healthy cluster.
        tokio::time::sleep(Duration::from_millis(500)).await;
        while Instant::now() + Duration::from_millis(500) < end {
            let fault = self.choose();
            let hold = Duration::from_millis(self.rng.gen_range(500..2500));
            let rest = Duration::from_millis(self.rng.gen_range(300..1200));
            let target = match fault {
                Fault::Kill(t) | Fault::Pause(t) | Fault::Isolate(t, _) => t,
            };
            let id = self.resolve(c, target).await;
            *self.counts.entry(fault.kind()).or_default() += 1;
            self.say(format!(
                "{} node {id} ({target:?}) for {hold:?}",
                fault.kind()
            ));
            match fault {
                Fault::Kill(_) => {
                    c.kill9(id);
                    self.killed.push(id);
                }
                Fault::Pause(_) => {
                    signal(c, id, Signal::SIGSTOP);
                    self.paused.push(id);
                }
                Fault::Isolate(_, state) => self.isolate(id, state),
            }
            tokio::time::sleep(hold.min(end.saturating_duration_since(Instant::now()))).await;
            self.heal_all(c);
            tokio::time::sleep(rest).await;
        }
    }

    fn isolate(&self, id: u64, state: LinkState) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.set(state);
            }
        }
    }

    /// Ends every fault: links open, paused nodes continued, killed ones
    /// started again.
    pub fn heal_all(&mut self, c: &mut Cluster) {
        for link in self.links.values() {
            link.set(LinkState::Open);
        }
        for id in std::mem::take(&mut self.paused) {
            signal(c, id, Signal::SIGCONT);
        }
        for id in std::mem::take(&mut self.killed) {
            c.spawn(id);
        }
        self.say("healed".into());
    }

    /// The faults applied, by kind.
    pub fn mix(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        format!("mix: {}", parts.join(", "))
    }
}

fn signal(c: &Cluster, id: u64, sig: Signal) {
    let pid = c.procs[&id].id() as i32;
    kill(Pid::from_raw(pid), sig).unwrap();
}
