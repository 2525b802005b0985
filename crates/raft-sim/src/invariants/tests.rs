//! Unit tests of the checker: each property caught on a hand-made history.

use super::*;

fn status(id: NodeId, hs: HardState, role: Role, last: Index) -> Status {
    Status {
        id,
        term: hs.term,
        vote: hs.vote,
        role,
        leader: None,
        commit: hs.commit,
        applied: hs.commit,
        first_index: 1,
        last_index: last,
        rejected: 0,
        last_rejection: None,
    }
}

fn hs(term: Term, vote: NodeId, commit: Index) -> HardState {
    HardState {
        term,
        vote: Some(vote),
        commit,
    }
}

// Ready has a private field, so no struct-update syntax here.
#[allow(clippy::field_reassign_with_default)]
fn ready(entries: Vec<Entry>, hard_state: Option<HardState>) -> Ready {
    let mut rd = Ready::default();
    rd.entries = entries;
    rd.hard_state = hard_state;
    rd
}

fn e(index: Index, term: Term, data: u8) -> Entry {
    Entry::normal(index, term, vec![data])
}

/// `after_event` for a node in configuration `conf`, no write in
/// progress, reporting `term_at` for its last and commit entries.
fn observe(
    c: &mut Checker,
    st: &Status,
    conf: &ConfState,
    term_at: impl Fn(Index) -> Option<Term>,
) -> Check {
    let ob = Observed {
        status: st,
        last_term: term_at(st.last_index),
        commit_term: term_at(st.commit),
        conf,
        writing: false,
    };
    c.after_event(st.id, &ob)
}

fn at_zero(i: Index) -> Option<Term> {
    (i == 0).then_some(0)
}

/// A configuration entry moving to `conf`.
fn conf_entry(index: Index, term: Term, conf: &ConfState) -> Entry {
    let data = raft_core::ConfEntry {
        change: raft_core::ConfChange::LeaveJoint,
        conf: conf.clone(),
        context: vec![],
    }
    .encode();
    Entry {
        index,
        term,
        kind: raft_core::EntryKind::Config,
        data: data.into(),
    }
}

#[test]
fn two_leaders_in_one_term_are_caught() {
    let mut c = Checker::new(3);
    let conf = ConfState::new(&[1, 2, 3]);
    for id in 1..=2 {
        c.on_ready(id, &ready(vec![], Some(hs(1, id, 0))), Role::Leader, 1)
            .unwrap();
    }
    c.on_ready(3, &ready(vec![], Some(hs(1, 1, 0))), Role::Follower, 1)
        .unwrap();
    let st = status(1, hs(1, 1, 0), Role::Leader, 0);
    observe(&mut c, &st, &conf, at_zero).unwrap();
    let st = status(2, hs(1, 2, 0), Role::Leader, 0);
    let err = observe(&mut c, &st, &conf, at_zero);
    assert!(err.unwrap_err().contains("election safety"));
}

#[test]
fn same_index_and_term_with_different_data_is_caught() {
    let mut c = Checker::new(2);
    c.on_ready(1, &ready(vec![e(1, 1, 7)], None), Role::Follower, 1)
        .unwrap();
    let err = c.on_ready(2, &ready(vec![e(1, 1, 8)], None), Role::Follower, 1);
    assert!(err.unwrap_err().contains("log matching"));
}

#[test]
fn leader_overwriting_its_log_is_caught() {
    let mut c = Checker::new(1);
    c.on_ready(1, &ready(vec![], Some(hs(2, 1, 0))), Role::Leader, 2)
        .unwrap();
    let st = status(1, hs(2, 1, 0), Role::Leader, 0);
    observe(&mut c, &st, &ConfState::new(&[1]), at_zero).unwrap();
    let two = vec![e(1, 2, 1), e(2, 2, 2)];
    c.on_ready(1, &ready(two, None), Role::Leader, 2).unwrap();
    // Re-writing entry 1 drops entry 2: a deletion.
    let err = c.on_ready(1, &ready(vec![e(1, 2, 1)], None), Role::Leader, 2);
    assert!(err.unwrap_err().contains("overwrote or deleted"));
}

#[test]
fn diverging_commits_and_going_back_are_caught() {
    let mut c = Checker::new(2);
    c.on_ready(
        1,
        &ready(vec![e(1, 1, 1)], Some(hs(1, 1, 1))),
        Role::Follower,
        1,
    )
    .unwrap();
    let err = c.on_ready(
        2,
        &ready(vec![e(1, 2, 1)], Some(hs(2, 2, 1))),
        Role::Follower,
        2,
    );
    assert!(err.unwrap_err().contains("state-machine safety"));
    let err = c.on_ready(1, &ready(vec![], Some(hs(1, 1, 0))), Role::Follower, 1);
    assert!(err.unwrap_err().contains("went back"));
    let err = c.on_ready(1, &ready(vec![], Some(hs(1, 2, 1))), Role::Follower, 1);
    assert!(err.unwrap_err().contains("vote in term 1 changed"));
}

#[test]
fn new_leader_without_committed_entry_is_caught() {
    let mut c = Checker::new(2);
    c.on_ready(
        1,
        &ready(vec![e(1, 1, 1)], Some(hs(1, 1, 1))),
        Role::Follower,
        1,
    )
    .unwrap();
    c.on_ready(2, &ready(vec![], Some(hs(2, 2, 0))), Role::Leader, 2)
        .unwrap();
    let st = status(2, hs(2, 2, 0), Role::Leader, 0);
    let err = observe(&mut c, &st, &ConfState::new(&[1, 2]), at_zero);
    assert!(err.unwrap_err().contains("leader completeness"));
}

/// Node 1 leads term 1 of {1, 2, 3} with votes from 1 and 3.
fn elected() -> (Checker, ConfState) {
    let mut c = Checker::new(3);
    let conf = ConfState::new(&[1, 2, 3]);
    for id in [1, 3] {
        let role = if id == 1 {
            Role::Leader
        } else {
            Role::Follower
        };
        c.on_ready(id, &ready(vec![], Some(hs(1, 1, 0))), role, 1)
            .unwrap();
    }
    let st = status(1, hs(1, 1, 0), Role::Leader, 0);
    observe(&mut c, &st, &conf, at_zero).unwrap();
    (c, conf)
}

#[test]
fn a_commit_counting_an_unpersisted_copy_is_caught() {
    let (mut c, conf) = elected();
    // Entry 1 is persisted on node 2 only; the leader's own write is
    // still in progress, yet it commits: one copy of three.
    c.on_ready(
        2,
        &ready(vec![e(1, 1, 1)], Some(hs(1, 1, 0))),
        Role::Follower,
        1,
    )
    .unwrap();
    let mut st = status(1, hs(1, 1, 1), Role::Leader, 1);
    st.applied = 0;
    let ob = Observed {
        status: &st,
        last_term: Some(1),
        commit_term: Some(1),
        conf: &conf,
        writing: true,
    };
    let err = c.after_event(1, &ob).unwrap_err();
    assert!(err.contains("only nodes [2] have it persisted"), "{err}");
    // Once its own write has landed, two of three hold it.
    let (mut c, conf) = elected();
    for id in [1, 2] {
        c.on_ready(id, &ready(vec![e(1, 1, 1)], None), Role::Follower, 1)
            .unwrap();
    }
    c.views[0].commit = 1;
    observe(&mut c, &st, &conf, |i| (i <= 1).then_some(i)).unwrap();
}

#[test]
fn a_joint_commit_needs_both_halves() {
    let (mut c, _) = elected();
    c.add_node(vec![]);
    c.add_node(vec![]);
    let joint = ConfState::new(&[1, 2, 3])
        .apply(&raft_core::ConfChange::Joint {
            voters: vec![1, 4, 5],
            learners: vec![],
        })
        .unwrap();
    for id in [1, 2, 3] {
        let entries = vec![conf_entry(1, 1, &joint)];
        c.on_ready(id, &ready(entries, None), Role::Follower, 1)
            .unwrap();
    }
    c.views[0].commit = 1;
    let st = status(1, hs(1, 1, 1), Role::Leader, 1);
    let err = observe(&mut c, &st, &joint, |i| (i <= 1).then_some(i)).unwrap_err();
    assert!(err.contains("no majority of each half"), "{err}");
}

#[test]
fn votes_of_learners_do_not_elect_and_learners_do_not_campaign() {
    let mut c = Checker::new(3);
    c.add_node(vec![]);
    let conf = ConfState::new(&[1, 2, 3])
        .apply(&raft_core::ConfChange::AddLearner(4))
        .unwrap();
    for id in [1, 4] {
        let entries = vec![conf_entry(1, 1, &conf)];
        c.on_ready(id, &ready(entries, Some(hs(1, 1, 0))), Role::Follower, 1)
            .unwrap();
    }
    let st = status(1, hs(1, 1, 0), Role::Leader, 1);
    let err = observe(&mut c, &st, &conf, |i| (i <= 1).then_some(i)).unwrap_err();
    assert!(err.contains("persisted votes from [1, 4] only"), "{err}");
    let mut st = status(4, hs(1, 1, 0), Role::PreCandidate, 0);
    st.vote = Some(1);
    let mut c = Checker::new(3);
    c.add_node(vec![]);
    c.on_ready(4, &ready(vec![], Some(hs(1, 1, 0))), Role::Follower, 1)
        .unwrap();
    let err = observe(&mut c, &st, &ConfState::default(), at_zero).unwrap_err();
    assert!(err.contains("no voter"), "{err}");
}

#[test]
fn a_configuration_not_from_the_log_is_caught() {
    let mut c = Checker::new(3);
    let st = status(1, HardState::default(), Role::Follower, 0);
    let other = ConfState::new(&[1, 2]);
    let err = observe(&mut c, &st, &other, at_zero).unwrap_err();
    assert!(err.contains("not the latest in the log"), "{err}");
}
