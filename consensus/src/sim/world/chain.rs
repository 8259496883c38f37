//! Each simulated node's committed chain: appending decisions (its own or synced), the
//! agreement and validity checks on every append, and block sync from honest peers.

use std::cmp::Reverse;

use govchain_ledger::{Commit, Height};
use rand::Rng;

use super::{Event, World, MAX_SYNC_RETRIES, SYNC_RETRY_MS};
use crate::sim::{Check, SimFailure};

impl World<'_> {
    /// Appends a decided block to `node`'s log (from its own Commit, or from sync), checking
    /// agreement and validity first.
    pub(super) fn commit(
        &mut self,
        node: usize,
        commit: Commit,
        synced: bool,
    ) -> Result<(), SimFailure> {
        let height = commit.height;
        let expected = Height(self.nodes[node].log.len() as u64 + 1);
        if height < expected {
            // Already have it (synced first): it must be the same block.
            let index = usize::try_from(height.0.saturating_sub(1)).unwrap_or(usize::MAX);
            let Some(have) = self.nodes[node].log.get(index).map(|(h, _)| *h) else {
                return Err(self.fail(
                    Check::Validity,
                    format!("node {node} committed height {height}, which is not a block height"),
                ));
            };
            if have != commit.block_hash && !self.nodes[node].byzantine {
                return Err(self.fail(
                    Check::Agreement,
                    format!(
                        "node {node} decided {} at height {height} but has {have}",
                        commit.block_hash
                    ),
                ));
            }
            return Ok(());
        }
        if height > expected {
            return Err(self.fail(
                Check::Validity,
                format!(
                    "node {node} committed height {height} with only {} blocks",
                    expected.0 - 1
                ),
            ));
        }
        if !self.nodes[node].byzantine {
            self.check_decision(node, &commit)?;
        }
        self.report.max_round = self.report.max_round.max(commit.round.0);
        if synced {
            self.report.synced_heights += 1;
        } else {
            self.report.consensus_commits += 1;
        }
        self.nodes[node].log.push((commit.block_hash, commit));
        let inc = self.nodes[node].incarnation;
        let delay = self.rng.random_range(1..5);
        self.after(
            delay,
            Event::NewHeight {
                node,
                incarnation: inc,
            },
        );
        Ok(())
    }

    fn check_decision(&mut self, node: usize, commit: &Commit) -> Result<(), SimFailure> {
        let (height, block) = (commit.height, commit.block_hash);
        if let Some(other) = self.decided.get(&height) {
            if *other != block {
                return Err(self.fail(
                    Check::Agreement,
                    format!("node {node} decided {block} at height {height}, another honest node decided {other}"),
                ));
            }
        }
        match self.blocks.get(&block) {
            Some(b) if b.valid && b.height == height && self.proposed.contains(&block) => {}
            _ => {
                return Err(self.fail(
                    Check::Validity,
                    format!("node {node} decided {block} at height {height}, which no one proposed as a valid block"),
                ))
            }
        }
        if let Err(e) =
            self.cache
                .certs
                .verify(commit, &self.chain_id, height, &block, &self.validators)
        {
            return Err(self.fail(
                Check::Validity,
                format!("node {node}'s certificate for height {height} does not verify: {e}"),
            ));
        }
        self.decided.insert(height, block);
        Ok(())
    }

    /// Copies decided blocks with certificates from an honest, reachable node that has them.
    pub(super) fn sync(&mut self, node: usize, from: Height, tries: u32) -> Result<(), SimFailure> {
        let have = self.nodes[node].log.len();
        if have as u64 >= from.0 {
            return Ok(());
        }
        let donor = (0..self.nodes.len())
            .filter(|d| {
                *d != node
                    && self.nodes[*d].up
                    && !self.nodes[*d].byzantine
                    && !self.plan.cut(node, *d, self.now_ms)
            })
            .max_by_key(|d| (self.nodes[*d].log.len(), Reverse(*d)))
            .filter(|d| self.nodes[*d].log.len() > have);
        let Some(donor) = donor else {
            if tries < MAX_SYNC_RETRIES {
                let inc = self.nodes[node].incarnation;
                self.after(
                    SYNC_RETRY_MS,
                    Event::Sync {
                        node,
                        incarnation: inc,
                        from,
                        tries: tries + 1,
                    },
                );
            }
            return Ok(());
        };
        let entries: Vec<Commit> = self.nodes[donor].log[have..]
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for c in entries {
            // Sync verifies every certificate before applying it.
            let checked = self.cache.certs.verify(
                &c,
                &self.chain_id,
                c.height,
                &c.block_hash,
                &self.validators,
            );
            if let Err(e) = checked {
                return Err(self.fail(
                    Check::Validity,
                    format!(
                        "synced certificate for height {} from node {donor} does not verify: {e}",
                        c.height
                    ),
                ));
            }
            self.commit(node, c, true)?;
        }
        Ok(())
    }
}
