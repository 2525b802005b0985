//! The clients: random operations on a few keys through exactly-once
//! sessions, each call recorded for the checker.

use std::time::{Duration, Instant};

use raft_kv::check::{Operation, Outcome};
use raft_kv::{Op, OpResult};
use raftkv_client::{Client, Error, Session};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Registers: get, put and cas.
pub const REGISTERS: [&str; 3] = ["r0", "r1", "r2"];
/// Logs: get and append (each append a unique `token;`).
pub const APPEND_KEYS: [&str; 2] = ["a0", "a1"];
/// Lanes per client: a client takes a new lane (and a new session) after
/// an unknown outcome, as its old operation stays open for ever.
const LANES: u64 = 1_000;
/// The share of writes sent without the session: at-least-once calls that
/// are not retried once sent, so a lost answer is an unknown outcome.
const PLAIN: f64 = 0.25;

/// One client.
pub struct Workload {
    id: u64,
    lane: u64,
    rng: StdRng,
    client: Client,
    base: Instant,
    end: Instant,
    n: u64,
    /// The last value this client saw of each register (cas expects it).
    seen: [Option<Vec<u8>>; REGISTERS.len()],
    ops: Vec<Operation>,
}

impl Workload {
    pub fn new(id: u64, seed: u64, client: Client, base: Instant, end: Instant) -> Workload {
        Workload {
            id,
            lane: id * LANES,
            rng: StdRng::seed_from_u64(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            client,
            base,
            end,
            n: 0,
            seen: Default::default(),
            ops: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Opens a session, retrying until the workload ends.
    async fn session(&self) -> Option<Session> {
        while Instant::now() < self.end {
            if let Ok(s) = self.client.open_session().await {
                return Some(s);
            }
        }
        None
    }

    /// Runs until the end; the recorded operations.
    pub async fn run(mut self) -> Vec<Operation> {
        let Some(mut session) = self.session().await else {
            return self.ops;
        };
        while Instant::now() < self.end {
            let op = self.next_op();
            let plain = self.rng.gen_bool(PLAIN);
            let call = self.now();
            let result = self.apply(&mut session, &op, plain).await;
            let outcome = match result {
                Ok(output) => {
                    self.learn(&op, &output);
                    Outcome::Returned {
                        time: self.now(),
                        output,
                    }
                }
                // A read that failed did nothing; nor did a refused write.
                Err(e) if op.is_read() || !e.may_have_applied() => continue,
                Err(_) => Outcome::Unknown,
            };
            let unknown = outcome == Outcome::Unknown;
            self.ops.push(Operation {
                client: self.lane,
                call,
                input: op,
                outcome,
            });
            if unknown {
                self.lane += 1;
            }
            if unknown && !plain {
                match self.session().await {
                    Some(s) => session = s,
                    None => break,
                }
            }
            let pause = self.rng.gen_range(0..10);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self.ops
    }

    fn next_op(&mut self) -> Op {
        self.n += 1;
        let unique = format!("c{}.{}", self.id, self.n).into_bytes();
        let r = self.rng.gen_range(0..REGISTERS.len());
        let reg = REGISTERS[r].as_bytes().to_vec();
        let log = APPEND_KEYS[self.rng.gen_range(0..APPEND_KEYS.len())]
            .as_bytes()
            .to_vec();
        match self.rng.gen_range(0..10) {
            0..=1 => Op::Get { key: reg },
            2 => Op::Get { key: log },
            3..=4 => Op::Put {
                key: reg,
                value: unique,
            },
            5..=6 => Op::Cas {
                key: reg,
                expected: self.seen[r].clone(),
                new: unique,
            },
            _ => {
                let mut value = unique;
                value.push(b';');
                Op::Append { key: log, value }
            }
        }
    }

    /// Remembers the register values this client saw, for its next cas.
    fn learn(&mut self, op: &Op, out: &OpResult) {
        let Some(r) = REGISTERS.iter().position(|k| k.as_bytes() == op.key()) else {
            return;
        };
        self.seen[r] = match (op, out) {
            (Op::Get { .. }, OpResult::Value(v)) => v.clone(),
            (Op::Put { value, .. }, _) => Some(value.clone()),
            (Op::Cas { new, .. }, OpResult::Cas { matched: true, .. }) => Some(new.clone()),
            (Op::Cas { .. }, OpResult::Cas { previous, .. }) => previous.clone(),
            _ => return,
        };
    }

    /// Sends `op`, through the session unless `plain`.
    async fn apply(&self, s: &mut Session, op: &Op, plain: bool) -> Result<OpResult, Error> {
        let some = |b: Option<bytes::Bytes>| b.map(|b| b.to_vec());
        let c = &self.client;
        Ok(match op {
            Op::Get { key } => OpResult::Value(some(c.get(key).await?)),
            Op::Put { key, value } => OpResult::Replaced(some(if plain {
                c.put(key, value.clone()).await?
            } else {
                s.put(key, value.clone()).await?
            })),
            Op::Append { key, value } => OpResult::Appended {
                len: if plain {
                    c.append(key, value).await?
                } else {
                    s.append(key, value).await?
                },
            },
            Op::Cas { key, expected, new } => {
                let out = if plain {
                    c.cas(key, expected.as_deref(), new).await?
                } else {
                    s.cas(key, expected.as_deref(), new).await?
                };
                OpResult::Cas {
                    matched: out.matched,
                    previous: some(out.previous),
                }
            }
            Op::Delete { .. } | Op::Range { .. } => unreachable!("not generated"),
        })
    }
}

/// Counts of calls by kind and outcome.
pub fn summary(ops: &[Operation]) -> String {
    let mut ok = [0u32; 4];
    let mut unknown = [0u32; 4];
    for op in ops {
        let i = match op.input {
            Op::Get { .. } => 0,
            Op::Put { .. } => 1,
            Op::Cas { .. } => 2,
            _ => 3,
        };
        match op.outcome {
            Outcome::Returned { .. } => ok[i] += 1,
            _ => unknown[i] += 1,
        }
    }
    let names = ["get", "put", "cas", "append"];
    let parts: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n} {} ok/{} unknown", ok[i], unknown[i]))
        .collect();
    format!("{} calls recorded: {}", ops.len(), parts.join(", "))
}
