//! The "node" half of each simulated validator and the network: performing a `Consensus`'s
//! actions (persist, gossip with loss/duplication/delay/partitions, timers, block building and
//! validation, commits, sync requests), delivering events, crashes and restarts.
//!
//! Performs actions in the order given, as the real node must (a Persist is stored before the
//! Broadcast that follows it). Honest nodes forward byzantine-signed messages once, as gossip
//! relays would.

use govchain_ledger::Height;
use rand::Rng;

use super::{block_hash, BlockInfo, Event, World};
use crate::messages::{Action, Config, Input, Message};
use crate::sim::SimFailure;
use crate::Consensus;

impl World<'_> {
    pub(super) fn dispatch(&mut self, event: Event) -> Result<(), SimFailure> {
        if self.trace {
            eprintln!("{:>8} {}", self.now_ms, crate::sim::trace::event(&event));
        }
        match event {
            Event::Deliver { from, to, msg } => {
                if !self.nodes[to].up || self.plan.cut(from, to, self.now_ms) {
                    return Ok(());
                }
                self.report.messages += 1;
                if self.nodes[to].byzantine {
                    self.coalition.saw(&msg);
                } else if self.signed_by_byzantine(&msg)
                    && self.nodes[to].relayed.insert(msg.clone())
                {
                    // Gossip forwarding (gossipsub relays what it receives): an equivocator cannot
                    // show a message to some honest nodes and hide it from the others. Honest
                    // validators already send to everyone, so only byzantine-signed messages are
                    // relayed here, to keep runs cheap.
                    for k in (0..self.nodes.len()).filter(|k| *k != to && *k != from) {
                        self.send(to, k, msg.clone());
                    }
                }
                let input = match msg {
                    Message::Proposal(p) => Input::Proposal(p),
                    Message::Vote(v) => Input::Vote(v),
                };
                let out = self.nodes[to].consensus.handle(input);
                self.perform(to, out)
            }
            Event::Callback {
                node,
                incarnation,
                input,
            } => {
                if !self.live(node, incarnation) {
                    return Ok(());
                }
                let out = self.nodes[node].consensus.handle(input);
                self.perform(node, out)
            }
            Event::NewHeight { node, incarnation } => {
                if !self.live(node, incarnation) {
                    return Ok(());
                }
                self.new_height(node)
            }
            Event::Sync {
                node,
                incarnation,
                from,
                tries,
            } => {
                if self.live(node, incarnation) {
                    self.sync(node, from, tries)?;
                }
                Ok(())
            }
            Event::Crash { node } => {
                let n = &mut self.nodes[node];
                n.up = false;
                n.incarnation += 1;
                self.report.crashes += 1;
                Ok(())
            }
            Event::Restart { node } => self.restart(node),
        }
    }

    fn signed_by_byzantine(&self, msg: &Message) -> bool {
        let signer = match msg {
            Message::Proposal(p) => p.proposer,
            Message::Vote(v) => v.validator,
        };
        self.plan
            .byzantine
            .iter()
            .any(|b| self.keys[*b].public() == signer)
    }

    fn live(&self, node: usize, incarnation: u32) -> bool {
        self.nodes[node].up && self.nodes[node].incarnation == incarnation
    }

    fn new_height(&mut self, node: usize) -> Result<(), SimFailure> {
        let height = Height(self.nodes[node].log.len() as u64 + 1);
        let out = self.nodes[node].consensus.handle(Input::NewHeight {
            height,
            validators: self.validators.clone(),
        });
        self.perform(node, out)
    }

    /// A new `Consensus` from the persisted signing state, then NewHeight at log + 1.
    fn restart(&mut self, node: usize) -> Result<(), SimFailure> {
        let n = &mut self.nodes[node];
        n.up = true;
        n.incarnation += 1;
        n.consensus = Consensus::with_verifier(
            self.chain_id.clone(),
            Some(self.keys[node].clone()),
            Config::default(),
            n.persisted.clone(),
            self.cache.verifier.clone(),
        );
        self.report.restarts += 1;
        self.new_height(node)
    }

    /// Performs a node's actions in order, like the real node would.
    pub(super) fn perform(&mut self, node: usize, actions: Vec<Action>) -> Result<(), SimFailure> {
        let inc = self.nodes[node].incarnation;
        for action in actions {
            if self.trace {
                eprintln!(
                    "{:>8}   node {node} -> {}",
                    self.now_ms,
                    crate::sim::trace::action(&action)
                );
            }
            match action {
                Action::Persist(p) => self.nodes[node].persisted = Some(p),
                Action::Broadcast(msg) => self.broadcast(node, msg),
                Action::ScheduleTimeout {
                    height,
                    round,
                    step,
                    duration_ms,
                } => self.after(
                    duration_ms,
                    Event::Callback {
                        node,
                        incarnation: inc,
                        input: Input::Timeout {
                            height,
                            round,
                            step,
                        },
                    },
                ),
                Action::BuildBlock { height, round } => {
                    let block_hash = block_hash(height, round, node, 0);
                    self.blocks.insert(
                        block_hash,
                        BlockInfo {
                            height,
                            valid: true,
                        },
                    );
                    let delay = self.rng.random_range(1..20);
                    self.after(
                        delay,
                        Event::Callback {
                            node,
                            incarnation: inc,
                            input: Input::BlockBuilt {
                                height,
                                round,
                                block_hash,
                            },
                        },
                    );
                }
                Action::ValidateBlock {
                    height,
                    round,
                    block_hash,
                } => {
                    let valid = self
                        .blocks
                        .get(&block_hash)
                        .is_some_and(|b| b.valid && b.height == height);
                    let delay = self.rng.random_range(1..20);
                    self.after(
                        delay,
                        Event::Callback {
                            node,
                            incarnation: inc,
                            input: Input::BlockValidated {
                                height,
                                round,
                                block_hash,
                                valid,
                            },
                        },
                    );
                }
                Action::Commit(commit) => self.commit(node, commit, false)?,
                Action::RequestSync { from } => {
                    self.report.sync_requests += 1;
                    let delay = self.rng.random_range(20..100);
                    self.after(
                        delay,
                        Event::Sync {
                            node,
                            incarnation: inc,
                            from,
                            tries: 0,
                        },
                    );
                }
                Action::Evidence(_) => self.report.evidence += 1,
            }
        }
        Ok(())
    }

    fn broadcast(&mut self, from: usize, msg: Message) {
        if self.nodes[from].byzantine {
            self.coalition.saw(&msg);
        }
        for to in (0..self.nodes.len()).filter(|t| *t != from) {
            let msgs = if self.nodes[from].byzantine {
                self.coalition
                    .messages_for(from, to, &msg, &self.keys[from])
            } else {
                vec![msg.clone()]
            };
            for m in msgs {
                self.send(from, to, m);
            }
        }
        // A byzantine node's second blocks join the registry (valid or not).
        for (h, height, valid) in self.coalition.take_new_blocks() {
            self.blocks.insert(h, BlockInfo { height, valid });
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        if let Message::Proposal(p) = &msg {
            self.proposed.insert(p.proposal.block_hash);
        }
        let net = self.plan.net;
        if self.plan.cut(from, to, self.now_ms)
            || (net.drop > 0.0 && self.rng.random_bool(net.drop))
        {
            return;
        }
        let copies = if net.dup > 0.0 && self.rng.random_bool(net.dup) {
            self.rng.random_range(2..=3)
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(net.delay_min_ms..=net.delay_max_ms);
            self.after(
                delay,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }
}
