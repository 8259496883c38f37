//! The bounded buffer of messages for heights this node has not started yet.
//!
//! Invariants: holds at most `cap` messages, each at most once; when full, the OLDEST message is
//! dropped to make room (a node that is that far behind will sync rather than replay); the
//! drain order is arrival order, so replay is deterministic.

use std::collections::{HashSet, VecDeque};

use crate::messages::Message;

/// A FIFO of distinct messages with a cap.
#[derive(Debug, Clone, Default)]
pub struct MessageBuffer {
    cap: usize,
    queue: VecDeque<Message>,
    members: HashSet<Message>,
}

impl MessageBuffer {
    /// An empty buffer of at most `cap` messages.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            queue: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    /// Whether this exact message is buffered.
    pub fn contains(&self, m: &Message) -> bool {
        self.members.contains(m)
    }

    /// Buffers `m` (once), dropping the oldest messages beyond the cap.
    pub fn push(&mut self, m: Message) {
        if self.cap == 0 || self.members.contains(&m) {
            return;
        }
        self.members.insert(m.clone());
        self.queue.push_back(m);
        while self.queue.len() > self.cap {
            if let Some(old) = self.queue.pop_front() {
                self.members.remove(&old);
            }
        }
    }

    /// Takes every buffered message, oldest first.
    pub fn drain(&mut self) -> Vec<Message> {
        self.members.clear();
        self.queue.drain(..).collect()
    }

    /// Number of buffered messages.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::sign_vote;
    use govchain_ledger::{ChainId, Height, Keypair, Round, Vote, VoteKind};

    fn msg(i: u64) -> Message {
        let k = Keypair::from_seed([1; 32]);
        Message::Vote(sign_vote(
            Vote {
                chain_id: ChainId::new("t").unwrap(),
                height: Height(i),
                round: Round(0),
                kind: VoteKind::Prevote,
                block_hash: None,
            },
            &k,
        ))
    }

    #[test]
    fn keeps_at_most_cap_and_drops_the_oldest() {
        let mut b = MessageBuffer::new(3);
        for i in 0..3 {
            b.push(msg(i));
        }
        assert_eq!(b.len(), 3);
        b.push(msg(3));
        assert_eq!(b.len(), 3);
        assert!(!b.contains(&msg(0)));
        assert_eq!(b.drain(), vec![msg(1), msg(2), msg(3)]);
        assert!(b.is_empty());
    }

    #[test]
    fn keeps_a_message_once_and_a_zero_cap_keeps_nothing() {
        let mut b = MessageBuffer::new(3);
        b.push(msg(1));
        b.push(msg(1));
        assert_eq!(b.len(), 1);
        let mut z = MessageBuffer::new(0);
        z.push(msg(1));
        assert!(z.is_empty());
    }
}
