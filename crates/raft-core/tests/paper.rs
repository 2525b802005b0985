//! Tests tying single rules of the Raft paper (Figure 2, §5, §7, thesis §9.6
//! and §6.2) to the node's behaviour, one message at a time. Each test
//! quotes the sentence it checks and ends with its section. Whole-cluster
//! scenarios under faults live in raft-sim.

mod common;

use common::{drain, msg};
use raft_core::{
    persist, AppendReply, Body, Config, Entry, Error, MemStorage, Message, Node, Role, Snapshot,
    SnapshotMeta, Storage,
};

fn config(id: u64, n: u64) -> Config {
    let mut c = Config::new(id, (1..=n).collect());
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c
}

fn node(id: u64, n: u64) -> Node<MemStorage> {
    Node::new(config(id, n), MemStorage::new()).unwrap()
}

/// A node whose log holds entries with the given terms at indices 1.., in `term`.
fn node_with_log(id: u64, n: u64, terms: &[u64], term: u64) -> Node<MemStorage> {
    let mut s = MemStorage::new();
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry::normal(i as u64 + 1, t, vec![i as u8]))
        .collect();
    s.append(&entries).unwrap();
    s.set_hard_state(&raft_core::HardState {
        term,
        vote: None,
        commit: 0,
    })
    .unwrap();
    Node::new(config(id, n), s).unwrap()
}

fn vote_req(from: u64, to: u64, term: u64, last_index: u64, last_term: u64) -> Message {
    msg(
        from,
        to,
        term,
        Body::RequestVote {
            last_log_index: last_index,
            last_log_term: last_term,
            pre_vote: false,
            transfer: false,
        },
    )
}

fn append(
    from: u64,
    to: u64,
    term: u64,
    prev: (u64, u64),
    entries: &[(u64, u64)],
    commit: u64,
) -> Message {
    msg(
        from,
        to,
        term,
        Body::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries: entries
                .iter()
                .map(|&(i, t)| Entry::normal(i, t, vec![i as u8]))
                .collect(),
            leader_commit: commit,
        },
    )
}

fn granted(msgs: &[Message]) -> Option<bool> {
    msgs.iter().find_map(|m| match m.body {
        Body::RequestVoteReply { granted, .. } => Some(granted),
        _ => None,
    })
}

fn append_reply(msgs: &[Message]) -> Option<AppendReply> {
    msgs.iter().find_map(|m| match m.body {
        Body::AppendEntriesReply(r) => Some(r),
        _ => None,
    })
}

/// Ticks `n` until it becomes a (pre)candidate and returns what it sent.
fn tick_until_campaign(n: &mut Node<MemStorage>) -> Vec<Message> {
    for _ in 0..100 {
        n.tick().unwrap();
        if n.role() != Role::Follower {
            return drain(n);
        }
    }
    panic!("node never campaigned");
}

/// Elects node 1 of an `n`-node cluster by hand and returns it.
fn elect(n: u64) -> Node<MemStorage> {
    elect_with(node(1, n), 2..=n)
}

/// Makes node 1 leader: it campaigns, and `voters` grant its PreVote and vote.
fn elect_with(
    mut leader: Node<MemStorage>,
    voters: impl Iterator<Item = u64> + Clone,
) -> Node<MemStorage> {
    let pre_term = tick_until_campaign(&mut leader)[0].term;
    for (pre_vote, voter) in voters
        .clone()
        .map(|v| (true, v))
        .chain(voters.map(|v| (false, v)))
    {
        let term = if pre_vote { pre_term } else { leader.term() };
        let reply = msg(
            voter,
            1,
            term,
            Body::RequestVoteReply {
                granted: true,
                pre_vote,
            },
        );
        leader.step(reply).unwrap();
        drain(&mut leader);
    }
    assert!(leader.is_leader());
    leader
}

/// "Reply false if term < currentTerm." (Figure 2, RequestVote RPC) — §5.1
#[test]
fn vote_refused_for_stale_term() {
    let mut n = node_with_log(1, 3, &[], 5);
    n.step(vote_req(2, 1, 4, 0, 0)).unwrap();
    let out = drain(&mut n);
    assert_eq!(granted(&out), Some(false));
    assert_eq!(
        out[0].term, 5,
        "the refusal carries our term so the candidate steps down"
    );
}

/// "Each server will vote for at most one candidate in a given term, on a
/// first-come-first-served basis." — §5.2. Figure 2: persistent state is
/// "updated on stable storage before responding to RPCs".
#[test]
fn at_most_one_vote_per_term_and_persisted_before_reply() {
    let mut n = node(1, 3);
    n.step(vote_req(2, 1, 1, 0, 0)).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(
        rd.hard_state.unwrap().vote,
        Some(2),
        "vote is in the same Ready as the reply"
    );
    assert_eq!(granted(&rd.messages), Some(true));
    persist(n.storage_mut(), &rd).unwrap();
    n.advance();
    n.step(vote_req(3, 1, 1, 0, 0)).unwrap();
    assert_eq!(
        granted(&drain(&mut n)),
        Some(false),
        "second candidate in the same term"
    );
    n.step(vote_req(2, 1, 1, 0, 0)).unwrap();
    assert_eq!(
        granted(&drain(&mut n)),
        Some(true),
        "a repeated request from the same candidate"
    );
    // The vote survives a restart.
    let storage = n.into_storage();
    let mut n = Node::new(config(1, 3), storage).unwrap();
    n.step(vote_req(3, 1, 1, 0, 0)).unwrap();
    assert_eq!(granted(&drain(&mut n)), Some(false));
}

/// "If the logs have last entries with different terms, then the log with
/// the later term is more up-to-date. If the logs end with the same term,
/// then whichever log is longer is more up-to-date." — §5.4.1
#[test]
fn vote_only_for_up_to_date_log() {
    // §5.4.1: compare last terms, then last indices.
    for (cand_index, cand_term, want) in [(3, 2, true), (2, 2, false), (9, 1, false), (1, 3, true)]
    {
        let mut n = node_with_log(1, 3, &[1, 1, 2], 2);
        n.step(vote_req(2, 1, 3, cand_index, cand_term)).unwrap();
        assert_eq!(
            granted(&drain(&mut n)),
            Some(want),
            "candidate ({cand_index}, {cand_term})"
        );
    }
}

/// "If RPC request or response contains term T > currentTerm: set
/// currentTerm = T, convert to follower." (Figure 2, Rules for Servers) — §5.1
#[test]
fn higher_term_makes_follower_and_clears_vote() {
    let mut leader = elect(3);
    let term = leader.term();
    leader.step(append(2, 1, term + 3, (0, 0), &[], 0)).unwrap();
    let st = leader.status();
    assert_eq!(
        (st.role, st.term, st.vote, st.leader),
        (Role::Follower, term + 3, None, Some(2))
    );
}

/// "Terms act as a logical clock in Raft, and they allow servers to detect
/// obsolete information such as stale leaders." — §5.1
#[test]
fn stale_replies_are_ignored_after_stepping_down() {
    let mut leader = elect(3);
    let term = leader.term();
    leader.propose(b"a".to_vec()).unwrap();
    drain(&mut leader);
    // Node 3 has moved on to a later term.
    leader.step(append(3, 1, term + 1, (0, 0), &[], 0)).unwrap();
    drain(&mut leader);
    assert_eq!(leader.role(), Role::Follower);
    // A success reply from the old term arrives late: it must change nothing.
    let before = leader.status();
    let late = msg(
        2,
        1,
        term,
        Body::AppendEntriesReply(AppendReply::Success { match_index: 1 }),
    );
    leader.step(late).unwrap();
    assert_eq!(leader.status(), before);
    assert!(drain(&mut leader).is_empty());
}

/// "Reply false if log doesn't contain an entry at prevLogIndex whose term
/// matches prevLogTerm." (Figure 2, AppendEntries RPC) — §5.3
#[test]
fn empty_append_entries_run_the_consistency_check() {
    let mut n = node_with_log(1, 3, &[1, 1], 2);
    n.step(append(2, 1, 2, (3, 2), &[], 3)).unwrap();
    let r = append_reply(&drain(&mut n)).unwrap();
    assert_eq!(
        r,
        AppendReply::Conflict {
            prev_log_index: 3,
            conflict_term: None,
            conflict_index: 3
        },
        "too short: the hint is one past our last index"
    );
    assert_eq!(
        n.status().commit,
        0,
        "a failed check must not advance commit"
    );
}

/// "When rejecting an AppendEntries request, the follower can include the
/// term of the conflicting entry and the first index it stores for that
/// term." — §5.3
#[test]
fn conflict_hint_names_term_and_its_first_index() {
    let mut n = node_with_log(1, 3, &[1, 2, 2, 2], 3);
    n.step(append(2, 1, 3, (4, 3), &[], 0)).unwrap();
    let r = append_reply(&drain(&mut n)).unwrap();
    assert_eq!(
        r,
        AppendReply::Conflict {
            prev_log_index: 4,
            conflict_term: Some(2),
            conflict_index: 2
        }
    );
}

/// "If an existing entry conflicts with a new one (same index but different
/// terms), delete the existing entry and all that follow it." (Figure 2,
/// AppendEntries RPC) — §5.3
#[test]
fn truncates_only_on_real_conflict() {
    let mut n = node_with_log(1, 3, &[1, 1, 1, 1], 1);
    // An older, shorter AppendEntries arrives late: nothing is removed.
    n.step(append(2, 1, 1, (1, 1), &[(2, 1)], 0)).unwrap();
    assert_eq!(
        append_reply(&drain(&mut n)),
        Some(AppendReply::Success { match_index: 2 })
    );
    assert_eq!(n.last_index(), 4);
    // A real conflict at index 3 removes 3.. and appends the new entries.
    n.step(append(2, 1, 2, (2, 1), &[(3, 2)], 0)).unwrap();
    drain(&mut n);
    assert_eq!(n.last_index(), 3);
    assert_eq!(n.term_at(3), Some(2));
    assert_eq!(n.storage().last_index(), 3, "storage truncated too");
}

/// "Append any new entries not already in the log" (Figure 2,
/// AppendEntries receiver) — §5.3. An AppendEntries that starts below the
/// follower's commit index (a late or resent one) still appends every entry
/// past what the follower holds, and the match covers them all.
#[test]
fn entries_starting_below_the_commit_index_are_appended_past_it() {
    let mut n = node_with_log(1, 3, &[1, 1, 1], 1);
    n.step(append(2, 1, 1, (3, 1), &[], 2)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, 2);
    let entries = [(2, 1), (3, 1), (4, 1), (5, 1)];
    n.step(append(2, 1, 1, (1, 1), &entries, 2)).unwrap();
    assert_eq!(
        append_reply(&drain(&mut n)),
        Some(AppendReply::Success { match_index: 5 })
    );
    assert_eq!((n.last_index(), n.term_at(4)), (5, Some(1)));
}

/// "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index
/// of last new entry)." (Figure 2, AppendEntries RPC) — §5.3
#[test]
fn follower_commit_is_min_of_leader_commit_and_last_new_entry() {
    let mut n = node_with_log(1, 3, &[1, 1, 1, 1, 1], 1);
    // Only entries through 2 are known to match the leader's log.
    n.step(append(2, 1, 1, (1, 1), &[(2, 1)], 5)).unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, 2);
}

/// "If commitIndex > lastApplied: increment lastApplied, apply
/// log[lastApplied] to state machine." (Figure 2, Rules for Servers) — §5.3
#[test]
fn committed_entries_are_handed_out_once_in_order() {
    let mut n = node(1, 3);
    n.step(append(2, 1, 1, (0, 0), &[(1, 1), (2, 1), (3, 1)], 2))
        .unwrap();
    let rd = n.ready().unwrap();
    persist(n.storage_mut(), &rd).unwrap();
    assert_eq!(
        rd.committed_entries
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    n.advance();
    n.step(append(2, 1, 1, (3, 1), &[], 3)).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(
        rd.committed_entries
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        [3]
    );
}

/// "Raft never commits log entries from previous terms by counting replicas.
/// Only log entries from the leader's current term are committed by counting
/// replicas." — §5.4.2
#[test]
fn leader_commits_only_current_term_entries_by_counting() {
    // Figure 8: node 1 leads term 4 with an old term-2 entry at index 2.
    let mut n = elect_with(node_with_log(1, 3, &[1, 2], 3), [2].into_iter());
    let term = n.term();
    // A majority holds index 2 (of term 2): not committed by counting.
    n.step(msg(
        2,
        1,
        term,
        Body::AppendEntriesReply(AppendReply::Success { match_index: 2 }),
    ))
    .unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, 0);
    // Once an entry of the current term is on a majority, both commit.
    let (idx, _) = n.propose(b"x".to_vec()).unwrap();
    drain(&mut n);
    n.step(msg(
        2,
        1,
        term,
        Body::AppendEntriesReply(AppendReply::Success { match_index: idx }),
    ))
    .unwrap();
    drain(&mut n);
    assert_eq!(n.status().commit, idx);
}

/// "One AppendEntries RPC will be required for each term with conflicting
/// entries, rather than one RPC per entry." — §5.3
#[test]
fn leader_backtracks_a_whole_term_per_rejection() {
    // A fresh leader with terms [1,1,1,4,4,5,5]; where it probes follower 2
    // next after that follower's rejection.
    let probe_after = |reply: AppendReply| {
        let mut leader = elect_with(
            node_with_log(1, 3, &[1, 1, 1, 4, 4, 5, 5], 5),
            [2].into_iter(),
        );
        let term = leader.term();
        leader
            .step(msg(2, 1, term, Body::AppendEntriesReply(reply)))
            .unwrap();
        let next = drain(&mut leader)
            .iter()
            .find_map(|m| match &m.body {
                Body::AppendEntries { prev_log_index, .. } if m.to == 2 => Some(*prev_log_index),
                _ => None,
            })
            .unwrap();
        (leader, next)
    };
    // Follower 2 holds terms [1,1,1,2,2,2,2]: it rejects prev=7 with term 2 from index 4.
    let (mut leader, next) = probe_after(AppendReply::Conflict {
        prev_log_index: 7,
        conflict_term: Some(2),
        conflict_index: 4,
    });
    assert_eq!(
        next, 3,
        "leader has no term 2: it jumps to the follower's first index of it"
    );
    // Follower 2 holds terms [1,1,1,4,4,4,4]: the leader holds term 4
    // through index 5, so it probes right after that.
    let (_, next) = probe_after(AppendReply::Conflict {
        prev_log_index: 7,
        conflict_term: Some(4),
        conflict_index: 4,
    });
    assert_eq!(next, 5, "just after the leader's last entry of term 4");
    let term = leader.term();
    // Bogus replies never panic and never move below index 1.
    for r in [
        AppendReply::Conflict {
            prev_log_index: 3,
            conflict_term: Some(9),
            conflict_index: 0,
        },
        AppendReply::Success { match_index: 99 },
        AppendReply::Conflict {
            prev_log_index: 0,
            conflict_term: None,
            conflict_index: 0,
        },
    ] {
        leader
            .step(msg(2, 1, term, Body::AppendEntriesReply(r)))
            .unwrap();
        for m in drain(&mut leader) {
            if let Body::AppendEntries { prev_log_index, .. } = m.body {
                assert!(prev_log_index + 1 >= 1);
            }
        }
    }
}

/// "A candidate would first ask other servers whether its log was
/// up-to-date enough to get their vote. Only if the candidate believed it
/// could get votes from a majority of the cluster would it increment its
/// term and start a normal election." — thesis §9.6
#[test]
fn pre_vote_does_not_raise_terms() {
    // A node with a stale log keeps timing out: its PreVotes are refused and
    // nobody's term moves (thesis §9.6).
    let mut stale = node_with_log(3, 3, &[1], 2);
    let mut up = node_with_log(1, 3, &[1, 2], 2);
    for _ in 0..3 {
        let reqs = tick_until_campaign(&mut stale);
        assert_eq!(stale.term(), 2, "PreCandidate keeps its term");
        for m in reqs.into_iter().filter(|m| m.to == 1) {
            up.step(m).unwrap();
        }
        let replies = drain(&mut up);
        assert_eq!(granted(&replies), Some(false));
        assert_eq!(up.term(), 2);
        for r in replies {
            // Node 2 holds the same log as node 1 and refuses alike.
            let mut twin = r.clone();
            twin.from = 2;
            stale.step(r).unwrap();
            stale.step(twin).unwrap();
        }
        assert_eq!(stale.role(), Role::Follower, "a majority refused");
    }
}

/// "A candidate would first ask other servers whether its log was
/// up-to-date enough to get their vote." — thesis §9.6. A PreVote asks about
/// the next term: one for a term the voter is already in could only lead to
/// an election the voter refuses, so it is not granted however good the log.
#[test]
fn pre_vote_is_granted_only_for_a_term_past_the_voters() {
    let pre_vote = |term| {
        msg(
            3,
            2,
            term,
            Body::RequestVote {
                last_log_index: 1,
                last_log_term: 1,
                pre_vote: true,
                transfer: false,
            },
        )
    };
    let mut f = node_with_log(2, 3, &[1], 2);
    f.step(pre_vote(2)).unwrap();
    assert_eq!(
        granted(&drain(&mut f)),
        Some(false),
        "term 2 is already here"
    );
    f.step(pre_vote(3)).unwrap();
    assert_eq!(granted(&drain(&mut f)), Some(true), "term 3 would be new");
    assert_eq!(f.term(), 2, "a PreVote never moves the voter's term");
}

/// "A candidate would first ask other servers whether its log was
/// up-to-date enough to get their vote." — thesis §9.6. Only answers to that
/// question count in a PreVote round: a late refusal of a real vote from an
/// earlier candidacy in the same term must not end it.
#[test]
fn a_late_real_vote_refusal_does_not_end_a_pre_vote_round() {
    let mut n = node(1, 3);
    let pre_term = tick_until_campaign(&mut n)[0].term;
    assert_eq!(n.role(), Role::PreCandidate);
    let term = n.term();
    let reply = |from, term, granted, pre_vote| {
        msg(from, 1, term, Body::RequestVoteReply { granted, pre_vote })
    };
    n.step(reply(2, term, false, false)).unwrap();
    n.step(reply(3, term, false, true)).unwrap();
    assert_eq!(
        n.role(),
        Role::PreCandidate,
        "only node 3 refused this round"
    );
    n.step(reply(2, pre_term, true, true)).unwrap();
    drain(&mut n);
    assert_eq!((n.role(), n.term()), (Role::Candidate, pre_term));
}

/// "If the AppendEntries RPC is from a leader whose term is at least as
/// large as the candidate's current term, then the candidate recognizes the
/// leader as legitimate and returns to follower state." — §5.2. So does a
/// PreCandidate, and so does a heartbeat.
#[test]
fn a_candidate_hearing_its_terms_leader_returns_to_follower() {
    let heartbeat = |term| msg(2, 1, term, Body::Heartbeat { commit: 0, ctx: 0 });
    for pre_vote in [false, true] {
        for beat in [false, true] {
            let mut c = config(1, 3);
            c.pre_vote = pre_vote;
            let mut n = Node::new(c, MemStorage::new()).unwrap();
            tick_until_campaign(&mut n);
            let term = n.term();
            let m = if beat {
                heartbeat(term)
            } else {
                append(2, 1, term, (0, 0), &[], 0)
            };
            n.step(m).unwrap();
            let case = format!("pre_vote {pre_vote}, heartbeat {beat}");
            assert_eq!((n.role(), n.leader()), (Role::Follower, Some(2)), "{case}");
            assert_eq!(n.term(), term, "{case}");
        }
    }
}

/// "If a server receives a RequestVote RPC within the minimum election
/// timeout of hearing from a current leader, it does not update its term or
/// grant its vote." — §6
#[test]
fn follower_with_live_leader_ignores_vote_requests() {
    let mut f = node(2, 3);
    f.step(append(1, 2, 1, (0, 0), &[], 0)).unwrap();
    drain(&mut f);
    f.step(vote_req(3, 2, 5, 10, 5)).unwrap();
    assert!(drain(&mut f).is_empty());
    assert_eq!(
        f.term(),
        1,
        "term unchanged while the leader is alive (§4.2.3)"
    );
}

/// "If a server receives a RequestVote RPC within the minimum election
/// timeout of hearing from a current leader, it does not update its term or
/// grant its vote" — §6: once a whole minimum election timeout has passed
/// since the leader was last heard, the vote is heard again, whatever the
/// follower's own (randomized) timeout.
#[test]
fn vote_requests_are_heard_once_a_minimum_election_timeout_has_passed() {
    for seed in 0..10 {
        let mut c = config(2, 3);
        c.seed = seed;
        let mut f = Node::new(c.clone(), MemStorage::new()).unwrap();
        f.step(append(1, 2, 1, (0, 0), &[], 0)).unwrap();
        drain(&mut f);
        for _ in 0..c.election_tick {
            f.tick().unwrap();
        }
        drain(&mut f);
        f.step(vote_req(3, 2, 5, 10, 5)).unwrap();
        assert_eq!(granted(&drain(&mut f)), Some(true), "seed {seed}");
        assert_eq!(f.term(), 5, "seed {seed}");
    }
}

/// "If RPC request or response contains term T > currentTerm: set
/// currentTerm = T, convert to follower." (Figure 2, Rules for Servers) —
/// §5.1. Ignoring votes under a live leader (§4.2.3) comes with CheckQuorum
/// (thesis §6.2), which bounds how long a leader can hold followers; with
/// CheckQuorum off, Figure 2's rule applies as written.
#[test]
fn without_check_quorum_vote_requests_are_heard_under_a_live_leader() {
    let mut c = config(2, 3);
    c.check_quorum = false;
    let mut f = Node::new(c, MemStorage::new()).unwrap();
    f.step(append(1, 2, 1, (0, 0), &[], 0)).unwrap();
    drain(&mut f);
    f.step(vote_req(3, 2, 5, 10, 5)).unwrap();
    assert_eq!(granted(&drain(&mut f)), Some(true));
    assert_eq!(f.term(), 5);
}

/// "A leader in Raft steps down if an election timeout elapses without a
/// successful round of heartbeats to a majority of its cluster." — thesis
/// §6.2. Only with CheckQuorum: without it, a leader hearing nobody stays.
#[test]
fn without_check_quorum_an_isolated_leader_stays() {
    let mut c = config(1, 3);
    c.check_quorum = false;
    let mut leader = elect_with(Node::new(c, MemStorage::new()).unwrap(), 2..=3);
    for _ in 0..25 {
        leader.tick().unwrap();
        drain(&mut leader);
    }
    assert_eq!(leader.role(), Role::Leader);
}

/// "A leader in Raft steps down if an election timeout elapses without a
/// successful round of heartbeats to a majority of its cluster." — thesis §6.2
#[test]
fn check_quorum_leader_steps_down_when_isolated() {
    let mut leader = elect(3);
    for _ in 0..25 {
        leader.tick().unwrap();
        drain(&mut leader);
    }
    assert_eq!(leader.role(), Role::Follower);
}

/// Not a sentence of the paper but this crate's contract: `has_ready` says
/// whether `ready` has anything to hand out. A leader that steps down
/// (CheckQuorum, thesis §6.2) right after a proposal still holds that entry
/// unpersisted, and says so.
#[test]
fn has_ready_covers_a_deposed_leaders_last_proposal() {
    let mut leader = elect(3);
    for _ in 0..25 {
        leader.propose(b"x".to_vec()).unwrap();
        leader.tick().unwrap();
        if leader.role() != Role::Leader {
            break;
        }
        drain(&mut leader);
    }
    assert_eq!(leader.role(), Role::Follower);
    assert!(leader.has_ready());
    assert!(!leader.ready().unwrap().entries.is_empty());
}

/// "If the client's first choice is not the leader, that server will reject
/// the client's request and supply information about the most recent leader
/// it has heard from." — §8
#[test]
fn not_leader_is_a_typed_error() {
    let mut n = node(1, 3);
    assert!(matches!(
        n.propose(vec![1]),
        Err(Error::NotLeader { leader: None })
    ));
    n.step(append(2, 1, 1, (0, 0), &[], 0)).unwrap();
    assert!(matches!(
        n.propose(vec![1]),
        Err(Error::NotLeader { leader: Some(2) })
    ));
}

/// "A log entry is committed once the leader that created the entry has
/// replicated it on a majority of the servers." — §5.3
#[test]
fn single_node_commits_its_own_proposals() {
    let mut n = node(1, 1);
    common::tick_until(&mut n, |n| n.is_leader());
    let (i, _) = n.propose(b"a".to_vec()).unwrap();
    assert_eq!(i, 1, "first command lands at index 1 with noop off");
    let rd = n.ready().unwrap();
    assert_eq!(rd.committed_entries.len(), 1);
}

/// "Raft uses randomized election timeouts to ensure that split votes are
/// rare ... election timeouts are chosen randomly from a fixed interval
/// (e.g., 150–300ms)." — §5.2. Here the interval is [T, 2T) ticks, and the
/// draws spread over it.
#[test]
fn election_timeouts_are_drawn_from_t_to_2t() {
    let t = config(1, 3).election_tick;
    let timeouts: Vec<u32> = (0..40)
        .map(|seed| {
            let mut c = config(1, 3);
            c.seed = seed;
            let mut n = Node::new(c, MemStorage::new()).unwrap();
            let mut ticks = 0;
            while n.role() == Role::Follower {
                n.tick().unwrap();
                ticks += 1;
            }
            ticks
        })
        .collect();
    let (lo, hi) = (timeouts.iter().min(), timeouts.iter().max());
    let (lo, hi) = (*lo.unwrap(), *hi.unwrap());
    assert!(t <= lo && hi < 2 * t, "{timeouts:?}");
    assert!(hi - lo >= t / 2, "spread over the interval: {timeouts:?}");
}

/// Not a sentence of the paper but this crate's API: `Node::entries` reads
/// the log, entries already persisted and entries still waiting for the
/// next Ready alike.
#[test]
fn entries_reads_persisted_and_unpersisted_entries() {
    let mut n = node(1, 1);
    common::tick_until(&mut n, |n| n.is_leader());
    n.propose(b"a".to_vec()).unwrap();
    drain(&mut n);
    n.propose(b"b".to_vec()).unwrap();
    let got: Vec<(u64, Vec<u8>)> = n
        .entries(1, 3)
        .unwrap()
        .into_iter()
        .map(|e| (e.index, e.data.to_vec()))
        .collect();
    assert_eq!(got, [(1, b"a".to_vec()), (2, b"b".to_vec())]);
    assert_eq!(n.entries(2, 3).unwrap()[0].data, &b"b"[..]);
}

/// Persistent state is "updated on stable storage before responding to
/// RPCs" (Figure 2) — §5.1. Each Ready that changes it asks for the sync
/// before its messages go: a new term and vote, new entries, a snapshot
/// from the leader, and the application's own snapshot (§7).
#[test]
fn every_change_to_persistent_state_is_synced() {
    let mut f = node(1, 3);
    f.step(vote_req(2, 1, 1, 0, 0)).unwrap();
    let rd = f.ready().unwrap();
    assert!(rd.entries.is_empty() && rd.hard_state.is_some());
    assert!(rd.must_sync(), "a new term and vote: {rd:?}");

    let mut f = node_with_log(1, 3, &[], 1);
    f.step(append(2, 1, 1, (0, 0), &[(1, 1)], 0)).unwrap();
    let rd = f.ready().unwrap();
    assert!(rd.hard_state.is_none() && !rd.entries.is_empty());
    assert!(rd.must_sync(), "new entries: {rd:?}");

    let mut f = node_with_log(1, 3, &[], 1);
    let data = b"state".to_vec();
    let chunk = Body::InstallSnapshot {
        meta: SnapshotMeta::of(3, 1, &data),
        conf: Default::default(),
        offset: 0,
        data,
        done: true,
    };
    f.step(msg(2, 1, 1, chunk)).unwrap();
    let rd = f.ready().unwrap();
    assert!(rd.snapshot.is_some() && rd.entries.is_empty());
    assert_eq!(rd.hard_state.map(|hs| (hs.term, hs.vote)), Some((1, None)));
    assert!(rd.must_sync(), "a snapshot from the leader: {rd:?}");

    let mut n = node(1, 1);
    common::tick_until(&mut n, |n| n.is_leader());
    n.propose(b"a".to_vec()).unwrap();
    drain(&mut n);
    n.snapshot(1, b"state at 1".to_vec()).unwrap();
    assert!(n.has_ready(), "the snapshot waits to be persisted");
    let rd = n.ready().unwrap();
    assert!(rd.local_snapshot.is_some() && rd.hard_state.is_none());
    assert!(rd.must_sync(), "the application's snapshot: {rd:?}");
}

/// "The leader must occasionally send snapshots to followers that lag
/// behind." — §7. InstallSnapshot is "invoked by leader to send chunks of a
/// snapshot to a follower" (Figure 13).
#[test]
fn snapshot_compacts_and_lagging_follower_gets_it_in_chunks() {
    let mut cfg = config(1, 3);
    cfg.snapshot_chunk_bytes = 3;
    let leader = Node::new(cfg, MemStorage::new()).unwrap();
    let mut leader = elect_with(leader, [3].into_iter());
    let term = leader.term();
    for i in 0..5u8 {
        leader.propose(vec![i]).unwrap();
    }
    drain(&mut leader);
    // Node 3 acknowledges everything; node 2 (real, empty) lags behind.
    leader
        .step(msg(
            3,
            1,
            term,
            Body::AppendEntriesReply(AppendReply::Success { match_index: 5 }),
        ))
        .unwrap();
    drain(&mut leader);
    assert_eq!(leader.status().commit, 5);
    let mut follower = node(2, 3);
    leader.snapshot(4, b"state@4".to_vec()).unwrap();
    assert!(matches!(
        leader.snapshot(9, vec![]),
        Err(Error::BadSnapshotIndex { .. })
    ));
    drain(&mut leader);
    assert_eq!(leader.storage().first_index(), 5);
    // At the next heartbeat node 2 answers; probing it, the leader finds
    // the entries it needs compacted away and sends the snapshot instead.
    leader.tick().unwrap();
    leader.tick().unwrap();
    let mut to_follower: Vec<Message> = drain(&mut leader)
        .into_iter()
        .filter(|m| m.to == 2)
        .collect();
    let mut restored = None;
    let mut applied = Vec::new();
    let mut chunks = Vec::new();
    for _ in 0..50 {
        if to_follower.is_empty() {
            break;
        }
        for m in to_follower.drain(..) {
            if let Body::InstallSnapshot { offset, done, .. } = m.body {
                chunks.push((offset, done));
            }
            follower.step(m).unwrap();
        }
        while follower.has_ready() {
            let rd = follower.ready().unwrap();
            persist(follower.storage_mut(), &rd).unwrap();
            if let Some(s) = &rd.snapshot {
                assert!(applied.is_empty(), "snapshot comes before later entries");
                restored = Some(s.clone());
            }
            applied.extend(rd.committed_entries.iter().map(|e| e.index));
            for m in rd.messages {
                leader.step(m).unwrap();
            }
            follower.advance();
        }
        to_follower = drain(&mut leader)
            .into_iter()
            .filter(|m| m.to == 2)
            .collect();
        // Heartbeats carry the commit index on.
        leader.tick().unwrap();
        leader.tick().unwrap();
        to_follower.extend(drain(&mut leader).into_iter().filter(|m| m.to == 2));
    }
    let snap: Snapshot = restored.expect("follower installed the snapshot");
    assert_eq!(
        chunks,
        [(0, false), (3, false), (6, true)],
        "7 bytes in chunks of 3, each sent once"
    );
    assert_eq!(snap.meta, SnapshotMeta::of(4, term, b"state@4"));
    assert_eq!(snap.data, b"state@4");
    assert_eq!(follower.storage().snapshot().unwrap().meta.index, 4);
    assert_eq!(
        applied,
        [5],
        "entries after the snapshot are applied, nothing below"
    );
    assert_eq!(follower.last_index(), 5);
}

/// InstallSnapshot receiver: "Reply immediately if term < currentTerm"
/// (Figure 13) — §7. The reply carries our term, so the old leader learns it
/// is stale, and nothing is installed.
#[test]
fn a_snapshot_from_an_older_term_is_answered_with_ours() {
    let mut n = node_with_log(1, 3, &[], 3);
    let meta = SnapshotMeta::of(3, 2, b"ab");
    let chunk = Body::InstallSnapshot {
        meta,
        conf: Default::default(),
        offset: 0,
        data: b"ab".to_vec(),
        done: true,
    };
    n.step(msg(2, 1, 2, chunk)).unwrap();
    let out = drain(&mut n);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].to, out[0].term), (2, 3));
    assert_eq!(
        out[0].body,
        Body::InstallSnapshotReply {
            meta,
            next_offset: 0,
            installed: false
        }
    );
    assert_eq!((n.term(), n.status().first_index), (3, 1));
}

/// Not a sentence of the paper but this crate's contract, which
/// request/response RPC layers (raft-lab) build on: every request that
/// passes the door gets exactly one reply, in the next Ready.
#[test]
fn every_request_gets_exactly_one_reply_in_the_next_ready() {
    let requests = [
        vote_req(2, 1, 1, 0, 0),
        msg(
            2,
            1,
            1,
            Body::RequestVote {
                last_log_index: 0,
                last_log_term: 0,
                pre_vote: true,
                transfer: false,
            },
        ),
        vote_req(2, 1, 0, 0, 0),
        append(2, 1, 1, (0, 0), &[(1, 1)], 0),
        append(2, 1, 1, (7, 1), &[], 0),
        append(2, 1, 0, (0, 0), &[], 0),
        msg(
            2,
            1,
            1,
            Body::InstallSnapshot {
                meta: SnapshotMeta::of(3, 1, &[1, 2]),
                conf: Default::default(),
                offset: 0,
                data: vec![1],
                done: false,
            },
        ),
    ];
    for req in requests {
        let mut n = node_with_log(1, 3, &[], 1);
        n.step(req.clone()).unwrap();
        let replies: Vec<Message> = drain(&mut n)
            .into_iter()
            .filter(|m| m.to == req.from && m.body.is_reply())
            .collect();
        assert_eq!(replies.len(), 1, "one reply to {req:?}");
    }
}

/// "Terms act as a logical clock in Raft, and they allow servers to detect
/// obsolete information such as stale leaders." — §5.1
#[test]
fn replies_from_an_older_term_never_count_for_a_new_leadership() {
    // Node 1 led an earlier term; a reply to that term's AppendEntries
    // arrives after it was elected again. Figure 2: the reply's term is older
    // than ours, so it is dropped; counting it could commit on a stale match.
    let mut leader = elect(3);
    let term = leader.term();
    let (idx, _) = leader.propose(b"x".to_vec()).unwrap();
    drain(&mut leader);
    let late = msg(
        2,
        1,
        term - 1,
        Body::AppendEntriesReply(AppendReply::Success { match_index: idx }),
    );
    leader.step(late).unwrap();
    drain(&mut leader);
    assert_eq!(leader.match_index(2), Some(0));
    assert_eq!(leader.status().commit, 0);
    let late_vote = msg(
        2,
        1,
        term - 1,
        Body::RequestVoteReply {
            granted: true,
            pre_vote: false,
        },
    );
    leader.step(late_vote).unwrap();
    assert!(leader.is_leader());
}
