//! The clerk's rules, driven by hand: register first, number writes, retry
//! with the same number, follow hints, time out, survive late replies.

use raft_kv::{
    Action, Answer, Clerk, ClerkConfig, ClientReply, ClientRequest, Consistency, KvError, Op,
    OpResult, RequestBody,
};

fn put(v: &str) -> Op {
    Op::Put {
        key: b"k".to_vec(),
        value: v.as_bytes().to_vec(),
    }
}

fn get() -> Op {
    Op::Get { key: b"k".to_vec() }
}

fn clerk() -> Clerk {
    Clerk::new(ClerkConfig {
        retry_timeout_ms: 100,
        backoff_ms: 10,
        call_timeout_ms: 1_000,
        ..ClerkConfig::new(vec![1, 2, 3])
    })
}

/// The one request sent among `actions`.
fn sent(actions: &[Action]) -> (u64, ClientRequest) {
    let sends: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, request } => Some((*to, request.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "expected one send in {actions:?}");
    sends[0].clone()
}

fn no_send(actions: &[Action]) {
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Send { .. })),
        "unexpected send in {actions:?}"
    );
}

fn timer(actions: &[Action]) -> u64 {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::SetTimer { at_ms } => Some(*at_ms),
            _ => None,
        })
        .expect("a timer")
}

fn done(actions: &[Action]) -> Option<Result<OpResult, KvError>> {
    actions.iter().find_map(|a| match a {
        Action::Done { result, .. } => Some(result.clone()),
        _ => None,
    })
}

fn ok(id: u64, answer: Answer) -> ClientReply {
    ClientReply {
        id,
        result: Ok(answer),
    }
}

fn err(id: u64, e: KvError) -> ClientReply {
    ClientReply { id, result: Err(e) }
}

/// Registers session `session` through server 1.
fn registered(c: &mut Clerk, op: Op, session: u64) -> Vec<Action> {
    let (_, a) = c.call(op, 0);
    let (to, req) = sent(&a);
    assert_eq!((to, &req.body), (1, &RequestBody::Register));
    c.on_reply(1, ok(req.id, Answer::Registered { session }), 1)
}

#[test]
fn a_write_registers_a_session_first_then_numbers_its_writes() {
    let mut c = clerk();
    let a = registered(&mut c, put("1"), 7);
    assert_eq!(c.session(), Some(7));
    let (to, req) = sent(&a);
    assert_eq!(
        (to, req.body),
        (
            1,
            RequestBody::Write {
                session: 7,
                seq: 1,
                op: put("1")
            }
        )
    );
    let a = c.on_reply(1, ok(req.id, Answer::Op(OpResult::Replaced(None))), 2);
    assert_eq!(done(&a), Some(Ok(OpResult::Replaced(None))));
    assert!(c.is_idle());
    let (_, a) = c.call(put("2"), 3);
    let (_, req) = sent(&a);
    assert_eq!(
        req.body,
        RequestBody::Write {
            session: 7,
            seq: 2,
            op: put("2")
        }
    );
}

#[test]
fn a_read_needs_no_session_and_carries_no_sequence_number() {
    let mut c = clerk();
    let (_, a) = c.call(get(), 0);
    let (_, req) = sent(&a);
    assert_eq!(
        req.body,
        RequestBody::Read {
            op: get(),
            consistency: Consistency::Linearizable
        }
    );
    let a = c.on_reply(1, ok(req.id, Answer::Op(OpResult::Value(None))), 1);
    assert_eq!(done(&a), Some(Ok(OpResult::Value(None))));
    assert_eq!(c.session(), None);
}

#[test]
fn a_retry_after_a_timeout_goes_to_the_next_server_with_the_same_number() {
    let mut c = clerk();
    let a = registered(&mut c, put("1"), 7);
    let (to, first) = sent(&a);
    let at = timer(&a);
    assert_eq!((to, at), (1, 101));
    no_send(&c.on_timer(50)); // Too early: nothing happens.
    let a = c.on_timer(at);
    let (to, retry) = sent(&a);
    assert_eq!(to, 2);
    assert_eq!(retry.body, first.body, "same session and sequence number");
    assert_ne!(retry.id, first.id);
}

#[test]
fn not_leader_with_a_hint_is_followed_at_once() {
    let mut c = clerk();
    let (_, a) = c.call(get(), 0);
    let (_, req) = sent(&a);
    let a = c.on_reply(1, err(req.id, KvError::NotLeader { leader: Some(3) }), 1);
    let (to, _) = sent(&a);
    assert_eq!(to, 3);
    assert_eq!(c.leader(), Some(3));
}

#[test]
fn not_leader_without_a_hint_backs_off_then_tries_the_next_server() {
    let mut c = clerk();
    let (_, a) = c.call(get(), 0);
    let (_, req) = sent(&a);
    let a = c.on_reply(1, err(req.id, KvError::NotLeader { leader: None }), 5);
    no_send(&a);
    assert_eq!(timer(&a), 15);
    let (to, _) = sent(&c.on_timer(15));
    assert_eq!(to, 2);
}

#[test]
fn a_lost_entry_is_retried_with_the_same_number() {
    let mut c = clerk();
    let a = registered(&mut c, put("1"), 7);
    let (_, first) = sent(&a);
    let a = c.on_reply(1, err(first.id, KvError::EntryLost { leader: Some(2) }), 2);
    let (to, retry) = sent(&a);
    assert_eq!((to, retry.body), (2, first.body));
}

#[test]
fn busy_is_retried_on_the_same_server_after_a_pause() {
    let mut c = clerk();
    let (_, a) = c.call(get(), 0);
    let (_, req) = sent(&a);
    let a = c.on_reply(1, err(req.id, KvError::Busy), 3);
    no_send(&a);
    let (to, _) = sent(&c.on_timer(timer(&a)));
    assert_eq!(to, 1);
}

#[test]
fn hints_that_point_around_in_circles_do_not_spin() {
    let mut c = clerk();
    let (_, a) = c.call(get(), 0);
    let (mut to, mut req) = sent(&a);
    let mut immediate = 0;
    for t in 1..10 {
        // Every server names another one as leader.
        let hint = to % 3 + 1;
        let a = c.on_reply(
            to,
            err(req.id, KvError::NotLeader { leader: Some(hint) }),
            t,
        );
        match a.iter().any(|x| matches!(x, Action::Send { .. })) {
            true => immediate += 1,
            false => break,
        }
        (to, req) = sent(&a);
    }
    assert_eq!(immediate, 3, "at most one round of immediate redirects");
}

#[test]
fn the_deadline_ends_a_call_with_a_typed_error() {
    let mut c = clerk();
    let (call, mut a) = c.call(get(), 0);
    let mut now = 0;
    let mut sends = 0;
    while done(&a).is_none() {
        sends += a
            .iter()
            .filter(|x| matches!(x, Action::Send { .. }))
            .count();
        now = timer(&a);
        a = c.on_timer(now);
    }
    assert_eq!(now, 1_000);
    assert_eq!(done(&a), Some(Err(KvError::Timeout)));
    assert!(a.contains(&Action::Done {
        call,
        result: Err(KvError::Timeout)
    }));
    assert_eq!(sends, 10, "one send per retry timeout");
    assert!(c.is_idle());
}

#[test]
fn session_expired_ends_the_call_and_the_next_write_registers_again() {
    let mut c = clerk();
    let a = registered(&mut c, put("1"), 7);
    let (_, req) = sent(&a);
    let a = c.on_reply(1, err(req.id, KvError::SessionExpired { session: 7 }), 2);
    assert_eq!(done(&a), Some(Err(KvError::SessionExpired { session: 7 })));
    assert_eq!(c.session(), None);
    let a = registered(&mut c, put("2"), 20);
    let (_, req) = sent(&a);
    assert_eq!(
        req.body,
        RequestBody::Write {
            session: 20,
            seq: 1,
            op: put("2")
        }
    );
}

#[test]
fn a_late_answer_to_an_earlier_attempt_is_taken_but_a_late_refusal_is_not() {
    let mut c = clerk();
    let a = registered(&mut c, put("1"), 7);
    let (_, first) = sent(&a);
    let a = c.on_timer(timer(&a));
    let (_, second) = sent(&a);
    // The first attempt's server stepped down after all: ignored, the
    // second attempt is still out.
    let a = c.on_reply(1, err(first.id, KvError::NotLeader { leader: None }), 150);
    assert!(a.is_empty(), "{a:?}");
    // But the first attempt's answer is the write's answer.
    let a = c.on_reply(1, ok(first.id, Answer::Op(OpResult::Replaced(None))), 160);
    assert_eq!(done(&a), Some(Ok(OpResult::Replaced(None))));
    // The second attempt's answer, arriving later, belongs to no call.
    let a = c.on_reply(2, ok(second.id, Answer::Op(OpResult::Replaced(None))), 170);
    assert!(a.is_empty());
}

#[test]
fn an_answer_from_an_earlier_call_is_ignored() {
    let mut c = clerk();
    let (_, a) = c.call(get(), 0);
    let (_, old) = sent(&a);
    let a = c.on_reply(1, ok(old.id, Answer::Op(OpResult::Value(None))), 1);
    assert!(done(&a).is_some());
    let (_, a) = c.call(get(), 2);
    let (_, new) = sent(&a);
    let late = c.on_reply(
        1,
        ok(old.id, Answer::Op(OpResult::Value(Some(b"x".to_vec())))),
        3,
    );
    assert!(late.is_empty());
    let a = c.on_reply(1, ok(new.id, Answer::Op(OpResult::Value(None))), 4);
    assert_eq!(done(&a), Some(Ok(OpResult::Value(None))));
}

#[test]
fn calls_wait_their_turn_in_order() {
    let mut c = clerk();
    let (first, a) = c.call(get(), 0);
    let (_, req) = sent(&a);
    let (second, a) = c.call(get(), 1);
    assert!(a.is_empty(), "the second call waits: {a:?}");
    let a = c.on_reply(1, ok(req.id, Answer::Op(OpResult::Value(None))), 2);
    assert_eq!(
        a[0],
        Action::Done {
            call: first,
            result: Ok(OpResult::Value(None))
        }
    );
    let (_, req) = sent(&a);
    let a = c.on_reply(1, ok(req.id, Answer::Op(OpResult::Value(None))), 3);
    assert_eq!(
        a[0],
        Action::Done {
            call: second,
            result: Ok(OpResult::Value(None))
        }
    );
}

#[test]
fn a_definite_refusal_is_given_to_the_caller() {
    let mut c = clerk();
    let a = registered(&mut c, put("1"), 7);
    let (_, req) = sent(&a);
    let e = KvError::ValueTooLarge { len: 9, max: 4 };
    let a = c.on_reply(1, err(req.id, e.clone()), 2);
    assert_eq!(done(&a), Some(Err(e.clone())));
    assert!(!e.may_have_applied());
    assert!(KvError::Timeout.may_have_applied());
    assert_eq!(c.session(), Some(7), "the session stays open");
}
