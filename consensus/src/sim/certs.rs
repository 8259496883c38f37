//! Certificate checking for the simulator: `Commit::verify`, with its signature checks skipped
//! for signatures an earlier certificate of the same (height, round, block) already proved
//! (in this run or an earlier one on the same thread: see [`super::cache`]).
//!
//! Every honest node of a run builds its own certificate for each height, from overlapping sets
//! of the same precommits; verifying each one from scratch dominated the simulator's cost. A
//! signature over the same precommit digest by the same key is valid once and for all, so the
//! memo does not weaken the check: a certificate passes only if `Commit::verify` passes on it
//! or every one of its signatures passed `Commit::verify` before and its structure (height,
//! block, validators, no duplicates, > 2/3 power) holds.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;

use govchain_ledger::{ChainId, Commit, Hash, Height, PublicKey, Round, Signature, ValidatorSet};

/// Signatures proven by `Commit::verify` (at most `cap`; forgotten all at once when full).
#[derive(Debug)]
pub(crate) struct Certificates {
    cap: NonZeroUsize,
    proven: BTreeSet<(Height, Round, Hash, PublicKey, Signature)>,
}

/// The structural half of `Commit::verify` (no signature checks).
fn well_formed(c: &Commit, height: Height, block: &Hash, validators: &ValidatorSet) -> bool {
    if c.height != height || &c.block_hash != block {
        return false;
    }
    let mut seen = BTreeSet::new();
    let mut power = 0u64;
    for s in &c.signatures {
        match validators.get(&s.validator) {
            Some(v) if seen.insert(s.validator) => power = power.saturating_add(v.power),
            _ => return false,
        }
    }
    validators.is_quorum(power)
}

impl Certificates {
    pub(crate) fn new(cap: NonZeroUsize) -> Self {
        Self {
            cap,
            proven: BTreeSet::new(),
        }
    }

    /// Whether `c` certifies `block` at `height` (see the module doc); the error names why not.
    pub(crate) fn verify(
        &mut self,
        c: &Commit,
        chain_id: &ChainId,
        height: Height,
        block: &Hash,
        validators: &ValidatorSet,
    ) -> Result<(), String> {
        let key = |validator: PublicKey, signature: Signature| {
            (c.height, c.round, c.block_hash, validator, signature)
        };
        let proven = c
            .signatures
            .iter()
            .all(|s| self.proven.contains(&key(s.validator, s.signature)));
        if proven && well_formed(c, height, block, validators) {
            return Ok(());
        }
        c.verify(chain_id, height, block, validators)
            .map_err(|e| e.to_string())?;
        if self.proven.len() + c.signatures.len() > self.cap.get() {
            self.proven.clear();
        }
        for s in &c.signatures {
            self.proven.insert(key(s.validator, s.signature));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_ledger::{sign_commit, Keypair, Validator};

    #[test]
    fn a_known_signature_set_still_needs_a_quorum_and_the_right_block() {
        let ks: Vec<Keypair> = (1..=4).map(|i| Keypair::from_seed([i; 32])).collect();
        let set = ValidatorSet {
            validators: ks
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                    department: "d".into(),
                })
                .collect(),
        };
        let chain = ChainId::new("t").unwrap();
        let b = Hash([1; 32]);
        let all: Vec<&Keypair> = ks.iter().collect();
        let full = sign_commit(&chain, Height(1), Round(0), b, &all);
        let mut certs = Certificates::new(NonZeroUsize::new(100).unwrap());
        certs.verify(&full, &chain, Height(1), &b, &set).unwrap();
        let mut two = full.clone();
        two.signatures.truncate(2);
        assert!(certs.verify(&two, &chain, Height(1), &b, &set).is_err());
        assert!(certs
            .verify(&full, &chain, Height(1), &Hash([2; 32]), &set)
            .is_err());
        let mut forged = full.clone();
        forged.signatures[0].signature.0[1] ^= 1;
        assert!(certs.verify(&forged, &chain, Height(1), &b, &set).is_err());
        let mut three = full;
        three.signatures.remove(1);
        certs.verify(&three, &chain, Height(1), &b, &set).unwrap();
    }
}
