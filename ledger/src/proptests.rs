//! Property tests of the canonical codec (DESIGN §3) over every chain type.
//!
//! What must always hold, for any value of any chain type:
//! - decoding its encoding gives the value back, and re-encoding gives the same bytes;
//! - every strict prefix of an encoding is refused, and extra bytes after it are refused as
//!   [`CodecError::TrailingBytes`];
//! - arbitrary or mutated bytes never panic the decoder, and whatever does decode re-encodes to
//!   exactly the input (one value, one encoding);
//! - a chain id that breaks its rules never decodes;
//! - a signed transaction with any single bit flipped is no longer a valid signed transaction.
//!
//! These tests never touch the disk (the store's `Tip` and `TxLocation` are plain values).

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bytes::{Hash, PublicKey, Signature};
use crate::codec::{self, CodecError};
use crate::crypto::Keypair;
use crate::merkle::{InclusionProof, MAX_PROOF_LEN};
use crate::store::{Tip, TxLocation};
use crate::types::{
    Block, BlockHeader, ChainId, Commit, CommitSig, Height, Round, SignedTx, TimestampMs, TxBody,
    Validator, ValidatorSet, Vote, VoteKind, MAX_CHAIN_ID_LEN,
};

/// Cases for signature-heavy properties.
const SIGNATURE_CASES: u32 = 32;
/// Cases for the bit-flip property: each case decodes and verifies once per bit (~1,000 times).
const BIT_FLIP_CASES: u32 = 12;
/// Most bytes appended after a valid encoding in the trailing-bytes property.
const MAX_EXTRA_BYTES: usize = 16;
/// Longest generated payload. Every strict prefix of every encoding is decoded, which is
/// quadratic in the encoding's length; small values keep the debug build's run short.
const MAX_PAYLOAD_BYTES: usize = 64;
/// Longest generated Merkle path in the property (a full-length path has its own test).
const MAX_GENERATED_PATH: usize = 16;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

prop_compose! {
    fn arb_hash()(b in any::<[u8; 32]>()) -> Hash { Hash(b) }
}

prop_compose! {
    fn arb_public_key()(b in any::<[u8; 32]>()) -> PublicKey { PublicKey(b) }
}

prop_compose! {
    fn arb_signature()(b in any::<[u8; 64]>()) -> Signature { Signature(b) }
}

prop_compose! {
    fn arb_chain_id()(s in "[a-z0-9-]{1,64}") -> ChainId {
        ChainId::new(s).expect("invariant: the regex only yields valid chain ids")
    }
}

prop_compose! {
    fn arb_tx_body()(
        chain_id in arb_chain_id(),
        signer in arb_public_key(),
        nonce in any::<u64>(),
        created_at in any::<u64>(),
        payload in vec(any::<u8>(), 0..MAX_PAYLOAD_BYTES),
    ) -> TxBody {
        TxBody { chain_id, signer, nonce, created_at: TimestampMs(created_at), payload }
    }
}

prop_compose! {
    fn arb_signed_tx()(body in arb_tx_body(), signature in arb_signature()) -> SignedTx {
        SignedTx { body, signature }
    }
}

prop_compose! {
    fn arb_block_header()(
        chain_id in arb_chain_id(),
        height in any::<u64>(),
        round in any::<u32>(),
        prev_hash in arb_hash(),
        tx_root in arb_hash(),
        tx_count in any::<u32>(),
        app_hash in arb_hash(),
        proposer in arb_public_key(),
        time in any::<u64>(),
        validator_set_hash in arb_hash(),
    ) -> BlockHeader {
        BlockHeader {
            chain_id,
            height: Height(height),
            round: Round(round),
            prev_hash,
            tx_root,
            tx_count,
            app_hash,
            proposer,
            time: TimestampMs(time),
            validator_set_hash,
        }
    }
}

prop_compose! {
    fn arb_block()(header in arb_block_header(), txs in vec(arb_signed_tx(), 0..3)) -> Block {
        Block { header, txs }
    }
}

fn arb_vote_kind() -> impl Strategy<Value = VoteKind> {
    prop_oneof![Just(VoteKind::Prevote), Just(VoteKind::Precommit)]
}

prop_compose! {
    fn arb_vote()(
        chain_id in arb_chain_id(),
        height in any::<u64>(),
        round in any::<u32>(),
        kind in arb_vote_kind(),
        block_hash in proptest::option::of(arb_hash()),
    ) -> Vote {
        Vote { chain_id, height: Height(height), round: Round(round), kind, block_hash }
    }
}

prop_compose! {
    fn arb_commit_sig()(validator in arb_public_key(), signature in arb_signature()) -> CommitSig {
        CommitSig { validator, signature }
    }
}

prop_compose! {
    fn arb_commit()(
        height in any::<u64>(),
        round in any::<u32>(),
        block_hash in arb_hash(),
        signatures in vec(arb_commit_sig(), 0..5),
    ) -> Commit {
        Commit { height: Height(height), round: Round(round), block_hash, signatures }
    }
}

prop_compose! {
    fn arb_validator()(
        key in arb_public_key(),
        power in any::<u64>(),
        // Any text: the ledger does not interpret department ids.
        department in "\\PC{0,12}",
    ) -> Validator {
        Validator { key, power, department }
    }
}

prop_compose! {
    fn arb_validator_set()(validators in vec(arb_validator(), 0..8)) -> ValidatorSet {
        ValidatorSet { validators }
    }
}

prop_compose! {
    fn arb_inclusion_proof()(
        index in any::<u64>(),
        tree_size in any::<u64>(),
        path in vec(arb_hash(), 0..=MAX_GENERATED_PATH),
    ) -> InclusionProof {
        InclusionProof { index, tree_size, path }
    }
}

prop_compose! {
    fn arb_tip()(height in any::<u64>(), block_hash in arb_hash(), app_hash in arb_hash()) -> Tip {
        Tip { height: Height(height), block_hash, app_hash }
    }
}

prop_compose! {
    fn arb_tx_location()(height in any::<u64>(), index in any::<u32>()) -> TxLocation {
        TxLocation { height: Height(height), index }
    }
}

prop_compose! {
    /// A transaction correctly signed by the key with `seed`.
    fn arb_correctly_signed_tx()(
        seed in any::<[u8; 32]>(),
        chain_id in arb_chain_id(),
        nonce in any::<u64>(),
        created_at in any::<u64>(),
        payload in vec(any::<u8>(), 0..MAX_PAYLOAD_BYTES),
    ) -> SignedTx {
        let key = Keypair::from_seed(seed);
        TxBody {
            chain_id,
            signer: key.public(),
            nonce,
            created_at: TimestampMs(created_at),
            payload,
        }
        .sign(&key)
    }
}

fn extra_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..=MAX_EXTRA_BYTES)
}

// ---------------------------------------------------------------------------------------------
// Checks shared by every type
// ---------------------------------------------------------------------------------------------

fn decode_any<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode(bytes, codec::MAX_DECODE_BYTES)
}

/// Round trip, determinism, refusal of every strict prefix and of trailing bytes, all through
/// `decode` (the type's own decoder or [`codec::decode`]).
fn check_canonical<T>(
    value: &T,
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
    extra: &[u8],
) -> Result<(), TestCaseError>
where
    T: Serialize + PartialEq + Debug,
{
    let bytes = codec::encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        codec::encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?,
        bytes.clone(),
        "encoding twice differs"
    );
    let back = decode(&bytes).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&back, value);
    prop_assert_eq!(
        codec::encode(&back).map_err(|e| TestCaseError::fail(e.to_string()))?,
        bytes.clone(),
        "encode(decode(b)) != b"
    );
    for len in 0..bytes.len() {
        prop_assert!(
            decode(&bytes[..len]).is_err(),
            "prefix of {} of {} bytes decoded",
            len,
            bytes.len()
        );
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(extra);
    match decode(&longer) {
        Err(CodecError::TrailingBytes { trailing }) => prop_assert_eq!(trailing, extra.len()),
        other => prop_assert!(false, "with {} extra bytes: {:?}", extra.len(), other),
    }
    Ok(())
}

/// Whatever `bytes` decode to must re-encode to exactly `bytes`.
fn check_decodes_canonically_or_not_at_all<T>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) -> Result<(), TestCaseError>
where
    T: Serialize,
{
    if let Ok(v) = decode(bytes) {
        let again = codec::encode(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, bytes.to_vec(), "a non-canonical encoding decoded");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1 + 3: round trips, determinism, truncation and trailing bytes for every chain type
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn hash_round_trips_canonically(v in arb_hash(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<Hash>, &extra)?;
        prop_assert_eq!(codec::encode(&v).unwrap(), v.0.to_vec(), "raw bytes, no length prefix");
    }

    #[test]
    fn public_key_round_trips_canonically(v in arb_public_key(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<PublicKey>, &extra)?;
        prop_assert_eq!(codec::encode(&v).unwrap(), v.0.to_vec(), "raw bytes, no length prefix");
    }

    #[test]
    fn signature_round_trips_canonically(v in arb_signature(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<Signature>, &extra)?;
        prop_assert_eq!(codec::encode(&v).unwrap(), v.0.to_vec(), "raw bytes, no length prefix");
    }

    #[test]
    fn chain_id_round_trips_canonically(v in arb_chain_id(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<ChainId>, &extra)?;
    }

    #[test]
    fn tx_body_round_trips_canonically(v in arb_tx_body(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<TxBody>, &extra)?;
    }

    #[test]
    fn signed_tx_round_trips_canonically(v in arb_signed_tx(), extra in extra_bytes()) {
        prop_assert_eq!(v.encode(), codec::encode(&v).unwrap());
        check_canonical(&v, SignedTx::decode, &extra)?;
        check_canonical(&v, decode_any::<SignedTx>, &extra)?;
    }

    #[test]
    fn block_header_round_trips_canonically(v in arb_block_header(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<BlockHeader>, &extra)?;
    }

    #[test]
    fn block_round_trips_canonically(v in arb_block(), extra in extra_bytes()) {
        prop_assert_eq!(v.encode(), codec::encode(&v).unwrap());
        check_canonical(&v, Block::decode, &extra)?;
    }

    #[test]
    fn vote_round_trips_canonically(v in arb_vote(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<Vote>, &extra)?;
    }

    #[test]
    fn commit_sig_round_trips_canonically(v in arb_commit_sig(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<CommitSig>, &extra)?;
    }

    #[test]
    fn commit_round_trips_canonically(v in arb_commit(), extra in extra_bytes()) {
        prop_assert_eq!(v.encode(), codec::encode(&v).unwrap());
        check_canonical(&v, Commit::decode, &extra)?;
    }

    #[test]
    fn validator_round_trips_canonically(v in arb_validator(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<Validator>, &extra)?;
    }

    #[test]
    fn validator_set_round_trips_canonically(v in arb_validator_set(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<ValidatorSet>, &extra)?;
    }

    #[test]
    fn inclusion_proof_round_trips_canonically(
        v in arb_inclusion_proof(),
        extra in extra_bytes(),
    ) {
        check_canonical(&v, decode_any::<InclusionProof>, &extra)?;
    }

    #[test]
    fn tip_round_trips_canonically(v in arb_tip(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<Tip>, &extra)?;
    }

    #[test]
    fn tx_location_round_trips_canonically(v in arb_tx_location(), extra in extra_bytes()) {
        check_canonical(&v, decode_any::<TxLocation>, &extra)?;
    }
}

#[test]
fn full_length_inclusion_proof_round_trips_canonically() {
    let proof = InclusionProof {
        index: u64::MAX - 1,
        tree_size: u64::MAX,
        path: (0..MAX_PROOF_LEN).map(|i| Hash([i as u8; 32])).collect(),
    };
    check_canonical(&proof, decode_any::<InclusionProof>, &[0]).unwrap();
}

#[test]
fn vote_round_trips_for_every_kind_with_and_without_a_block() {
    let chain_id = ChainId::new("govchain-test").unwrap();
    for kind in [VoteKind::Prevote, VoteKind::Precommit] {
        for block_hash in [None, Some(Hash([7; 32]))] {
            let v = Vote {
                chain_id: chain_id.clone(),
                height: Height(3),
                round: Round(1),
                kind,
                block_hash,
            };
            let b = codec::encode(&v).unwrap();
            assert_eq!(decode_any::<Vote>(&b).unwrap(), v);
        }
    }
}

#[test]
fn non_canonical_option_and_enum_tags_are_refused() {
    let v = Vote {
        chain_id: ChainId::new("c").unwrap(),
        height: Height(1),
        round: Round(0),
        kind: VoteKind::Prevote,
        block_hash: None,
    };
    let b = codec::encode(&v).unwrap();
    // Layout: chain id (8-byte length + 1 byte), height 8, round 4, kind 4, option tag 1.
    let kind_at = 8 + 1 + 8 + 4;
    let tag_at = kind_at + 4;
    assert_eq!(b.len(), tag_at + 1);
    let mut bad_kind = b.clone();
    bad_kind[kind_at] = 2;
    assert!(decode_any::<Vote>(&bad_kind).is_err());
    let mut bad_tag = b.clone();
    bad_tag[tag_at] = 2;
    assert!(decode_any::<Vote>(&bad_tag).is_err());
}

// ---------------------------------------------------------------------------------------------
// 2: arbitrary and mutated bytes never panic; what decodes is canonical
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn random_bytes_never_panic_and_decode_only_canonically(
        bytes in vec(any::<u8>(), 0..2000),
    ) {
        check_decodes_canonically_or_not_at_all(&bytes, SignedTx::decode)?;
        check_decodes_canonically_or_not_at_all(&bytes, Block::decode)?;
        check_decodes_canonically_or_not_at_all(&bytes, Commit::decode)?;
        check_decodes_canonically_or_not_at_all(&bytes, decode_any::<ValidatorSet>)?;
    }

    /// Random bytes almost never decode; mutating valid encodings reaches the paths where they do.
    #[test]
    fn mutated_encodings_never_panic_and_decode_only_canonically(
        tx in arb_signed_tx(),
        block in arb_block(),
        commit in arb_commit(),
        set in arb_validator_set(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mutate = |mut b: Vec<u8>| {
            if !b.is_empty() {
                for (at, byte) in &edits {
                    let i = at.index(b.len());
                    b[i] = *byte;
                }
            }
            b
        };
        check_decodes_canonically_or_not_at_all(&mutate(tx.encode()), SignedTx::decode)?;
        check_decodes_canonically_or_not_at_all(&mutate(block.encode()), Block::decode)?;
        check_decodes_canonically_or_not_at_all(&mutate(commit.encode()), Commit::decode)?;
        check_decodes_canonically_or_not_at_all(
            &mutate(codec::encode(&set).unwrap()),
            decode_any::<ValidatorSet>,
        )?;
    }
}

// ---------------------------------------------------------------------------------------------
// 4: chain ids that break the rules never decode
// ---------------------------------------------------------------------------------------------

/// Strings that are not chain ids: empty, too long, or with a character outside `[a-z0-9-]`.
fn invalid_chain_id_text() -> impl Strategy<Value = String> {
    let bad_char = any::<char>()
        .prop_filter("outside [a-z0-9-]", |c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        })
        .boxed();
    prop_oneof![
        Just(String::new()),
        "[a-z0-9-]{65,80}",
        ("[a-z0-9-]{0,30}", bad_char, "[a-z0-9-]{0,30}").prop_map(|(a, c, b)| format!("{a}{c}{b}")),
    ]
}

proptest! {
    #[test]
    fn invalid_chain_ids_are_refused_when_decoded(s in invalid_chain_id_text()) {
        prop_assert!(ChainId::new(s.clone()).is_err());
        let bytes = codec::encode(&s).unwrap();
        prop_assert!(
            matches!(decode_any::<ChainId>(&bytes), Err(CodecError::Malformed(_))),
            "{:?} decoded as a chain id",
            s
        );
        // Also inside a transaction body (a struct encodes as the tuple of its fields).
        let body = (s, PublicKey([1; 32]), 1u64, TimestampMs(2), vec![3u8]);
        let bytes = codec::encode(&body).unwrap();
        prop_assert!(decode_any::<TxBody>(&bytes).is_err());
    }

    #[test]
    fn valid_chain_id_text_decodes_to_the_same_chain_id(s in "[a-z0-9-]{1,64}") {
        let bytes = codec::encode(&s).unwrap();
        let id: ChainId = decode_any(&bytes).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        // The control for the refusal above: the same tuple with a valid id is a TxBody.
        let body = (s.clone(), PublicKey([1; 32]), 1u64, TimestampMs(2), vec![3u8]);
        let bytes = codec::encode(&body).unwrap();
        let decoded: TxBody = decode_any(&bytes).unwrap();
        prop_assert_eq!(decoded.chain_id, id);
    }
}

#[test]
fn chain_id_length_limit_is_enforced_at_the_edge() {
    let at_limit = "a".repeat(MAX_CHAIN_ID_LEN);
    let over = "a".repeat(MAX_CHAIN_ID_LEN + 1);
    let ok: ChainId = decode_any(&codec::encode(&at_limit).unwrap()).unwrap();
    assert_eq!(ok.as_str(), at_limit);
    assert!(decode_any::<ChainId>(&codec::encode(&over).unwrap()).is_err());
    assert!(decode_any::<ChainId>(&codec::encode("").unwrap()).is_err());
    assert!(decode_any::<ChainId>(&codec::encode("BAD").unwrap()).is_err());
}

// ---------------------------------------------------------------------------------------------
// 5: signatures
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(SIGNATURE_CASES))]

    #[test]
    fn signed_tx_verifies_and_survives_its_round_trip(tx in arb_correctly_signed_tx()) {
        prop_assert_eq!(tx.verify_signature(), Ok(()));
        let back = SignedTx::decode(&tx.encode()).unwrap();
        prop_assert_eq!(back.verify_signature(), Ok(()));
        prop_assert_eq!(back.id(), tx.id());
    }

    #[test]
    fn signature_of_another_key_does_not_verify(
        tx in arb_correctly_signed_tx(),
        other_seed in any::<[u8; 32]>(),
    ) {
        let other = Keypair::from_seed(other_seed);
        prop_assume!(other.public() != tx.body.signer);
        let mut forged = tx.clone();
        forged.signature = other.sign(&tx.body.sign_digest());
        prop_assert!(forged.verify_signature().is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(BIT_FLIP_CASES))]

    /// Flipping any one bit of a signed transaction's bytes makes it undecodable or leaves a
    /// transaction that fails verification and has another id.
    #[test]
    fn any_single_bit_flip_breaks_a_signed_tx(tx in arb_correctly_signed_tx()) {
        let bytes = tx.encode();
        let id = tx.id();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            if let Ok(flipped) = SignedTx::decode(&b) {
                prop_assert!(
                    flipped.verify_signature().is_err(),
                    "bit {} flipped still verifies",
                    bit
                );
                prop_assert_ne!(flipped.id(), id, "bit {} flipped keeps the id", bit);
            }
        }
    }
}
