//! Human-readable one-line renderings of simulator events and actions, for `sim::trace`.
//!
//! Abstract block hashes are shown by what they encode (`B<variant>:h<height>r<round>n<node>`),
//! keys by their first hex digits.

use govchain_ledger::Hash;

use super::world::Event;
use crate::messages::{Action, Input, Message};

fn short_hash(h: &Hash) -> String {
    let b = h.0;
    if b[0] == b'B' || b[0] == b'G' {
        format!("{}{}:h{}r{}n{}", b[0] as char, b[1], b[10], b[18], b[22])
    } else {
        h.to_hex()[..6].to_string()
    }
}

fn short_msg(m: &Message) -> String {
    match m {
        Message::Proposal(p) => format!(
            "Proposal h{} r{} {} pol {:?} by {}",
            p.proposal.height,
            p.proposal.round.0,
            short_hash(&p.proposal.block_hash),
            p.proposal.pol_round.map(|r| r.0),
            &p.proposer.to_hex()[..4]
        ),
        Message::Vote(v) => format!(
            "{:?} h{} r{} {} by {}",
            v.vote.kind,
            v.vote.height,
            v.vote.round.0,
            v.vote.block_hash.map_or("nil".into(), |b| short_hash(&b)),
            &v.validator.to_hex()[..4]
        ),
    }
}

pub(crate) fn event(e: &Event) -> String {
    match e {
        Event::Deliver { from, to, msg } => format!("deliver {from}->{to} {}", short_msg(msg)),
        Event::Callback { node, input, .. } => match input {
            Input::Proposal(_) | Input::Vote(_) | Input::NewHeight { .. } => {
                format!("node {node} input")
            }
            other => format!("node {node} {other:?}"),
        },
        other => format!("{other:?}"),
    }
}

pub(crate) fn action(a: &Action) -> String {
    match a {
        Action::Broadcast(m) => format!("broadcast {}", short_msg(m)),
        Action::Evidence(_) => "evidence".into(),
        Action::Commit(c) => format!(
            "commit h{} r{} {}",
            c.height,
            c.round.0,
            short_hash(&c.block_hash)
        ),
        other => format!("{other:?}"),
    }
}
