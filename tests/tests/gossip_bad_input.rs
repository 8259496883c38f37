//! Bad input over gossip (R-CHN-1, R-CHN-3): a peer with an admitted key sends garbage, votes
//! with bad signatures, votes from a non-validator, a proposal from the wrong proposer and a
//! proposal whose block does not match. Every one is dropped with a logged reason and a penalty
//! for the sender; the cluster never panics and never stalls.

use std::time::{Duration, Instant};

use govchain_consensus::{sign_vote, Proposal};
use govchain_ledger::{codec, Hash, Height, Keypair, Round, Store, Vote, VoteKind};
use govchain_node::driver::{Envelope, WireMsg};
use govchain_node::net::{self, NetCommand, NetConfig, NetEvent, Topic};
use govchain_tests::Cluster;

#[test]
fn bad_gossip_is_dropped_and_penalised_without_stalling_the_chain() {
    let mut c = Cluster::start(4, |_| {});
    assert_eq!(c.submit(10, 4, &[0, 1, 2], 1).len(), 10);
    // node-4's key (an admitted validator) is taken over by a misbehaving process.
    c.nodes[3].kill9();
    let key4 = c.net.node_key(4);
    let cfg4 = c.net.config(4);
    let chain = c.net.genesis.chain_id.clone();
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(scratch.path()).unwrap();
    let _guard = c.rt.enter();
    let mut h = net::spawn(
        NetConfig {
            chain_id: chain.clone(),
            seed: key4.secret_seed(),
            listen: cfg4.p2p.listen.parse().unwrap(),
            peers: cfg4.p2p.peers.iter().map(|p| p.parse().unwrap()).collect(),
            allowed: c
                .net
                .genesis
                .validators
                .validators
                .iter()
                .map(|v| v.key)
                .collect(),
        },
        store,
    )
    .unwrap();
    // Wait until two validators subscribed to our consensus topic.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut subscribed = 0;
    while subscribed < 2 {
        assert!(Instant::now() < deadline, "no peer subscribed");
        if let Ok(Some(NetEvent::Subscribed(_))) = c
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(1), h.events.recv()).await })
        {
            subscribed += 1;
        }
    }
    let height = Height(c.height(0) + 1);
    let send = |h: &mut net::NetHandle, bytes: Vec<u8>| {
        c.rt.block_on(
            h.commands
                .send(NetCommand::Publish(Topic::Consensus, bytes)),
        )
        .unwrap();
    };
    let envelope = |resend, msg| codec::encode(&Envelope { resend, msg }).unwrap();
    let vote = Vote {
        chain_id: chain.clone(),
        height,
        round: Round(0),
        kind: VoteKind::Prevote,
        block_hash: Some(Hash([9; 32])),
    };
    // 1. Garbage.
    send(&mut h, b"\x00garbage that is no envelope".to_vec());
    // 2. A vote with a bad signature.
    let mut bad_sig = sign_vote(vote.clone(), &key4);
    bad_sig.signature.0[0] ^= 1;
    send(&mut h, envelope(1, WireMsg::Vote(bad_sig)));
    // 3. A vote from a key that is no validator.
    send(
        &mut h,
        envelope(
            2,
            WireMsg::Vote(sign_vote(vote.clone(), &Keypair::from_seed([77; 32]))),
        ),
    );
    // 4. A proposal from a validator that is not this round's proposer.
    let proposer = c
        .net
        .genesis
        .validators
        .proposer(height, Round(0))
        .unwrap()
        .key;
    let wrong = (1..=4)
        .map(|i| c.net.node_key(i))
        .find(|k| k.public() != proposer)
        .unwrap();
    let fake_block = govchain_ledger::Block {
        header: govchain_ledger::BlockHeader {
            chain_id: chain.clone(),
            height,
            round: Round(0),
            prev_hash: Hash([1; 32]),
            tx_root: govchain_ledger::merkle::root(&[]),
            tx_count: 0,
            app_hash: Hash([2; 32]),
            proposer: wrong.public(),
            time: govchain_ledger::TimestampMs(1),
            validator_set_hash: c.net.genesis.validators.hash(),
        },
        txs: vec![],
    };
    let p = Proposal {
        chain_id: chain.clone(),
        height,
        round: Round(0),
        block_hash: fake_block.hash(),
        pol_round: None,
    }
    .sign(&wrong);
    send(
        &mut h,
        envelope(
            3,
            WireMsg::Proposal {
                proposal: p,
                block: fake_block.encode(),
            },
        ),
    );
    // 5. A proposal whose attached block is not the proposed one (wrong height).
    let mut other = fake_block.clone();
    other.header.height = Height(height.0 + 5);
    let p = Proposal {
        chain_id: chain.clone(),
        height,
        round: Round(0),
        block_hash: fake_block.hash(),
        pol_round: None,
    }
    .sign(&wrong);
    send(
        &mut h,
        envelope(
            4,
            WireMsg::Proposal {
                proposal: p,
                block: other.encode(),
            },
        ),
    );
    // 6. Garbage on the transaction topic.
    c.rt.block_on(
        h.commands
            .send(NetCommand::Publish(Topic::Tx, vec![0xff; 100])),
    )
    .unwrap();

    // The cluster keeps committing with the three honest validators...
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.submit(10, 2, &[0, 1, 2], 2).len(),
        10,
        "the chain did not stall"
    );
    // ...and logged and penalised the bad messages.
    let logs: String = (0..3).map(|i| c.nodes[i].log_text()).collect();
    assert!(
        logs.contains("peer penalised"),
        "no penalty logged:\n{}",
        c.logs()
    );
    assert!(
        logs.contains("invalid consensus message"),
        "no reason logged:\n{}",
        c.logs()
    );
    assert!(!logs.contains("panicked"), "a node panicked");
}
