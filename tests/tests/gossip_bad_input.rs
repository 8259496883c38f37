//! Bad input over gossip (R-CHN-1, R-CHN-3): a peer with an admitted key sends garbage, votes
//! with bad signatures, double votes (put on chain as evidence), votes from a non-validator, a proposal from the wrong proposer and a
//! proposal whose block does not match, oversize transactions and messages; and a peer that
//! answers block sync with blocks at a wrong height or with a certificate that does not match.
//! Every one is dropped with a logged reason and a penalty for the sender; the cluster never
//! panics and never stalls.

use std::time::{Duration, Instant};

use govchain_consensus::{sign_vote, Proposal};
use govchain_ledger::store::{CF_BLOCKS, CF_COMMITS};
use govchain_ledger::{codec, Hash, Height, Keypair, Round, Store, Vote, VoteKind, MAX_TX_BYTES};
use govchain_node::driver::{Envelope, WireMsg};
use govchain_node::net::{self, NetCommand, NetConfig, NetEvent, Topic};
use govchain_tests::{copy_dir, verify, Cluster};

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
    let mut h = rogue_peer(
        &c,
        4,
        &cfg4.p2p.peers,
        // Raised so that this peer can send an oversize message at all.
        2 * net::MAX_GOSSIP_BYTES,
        store,
    );
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
    // 0. Double votes signed with node-4's (validator) key at the next heights: detected as
    // equivocation and put on chain by the honest validators.
    let first = c.height(0);
    for ht in first + 1..=first + 3 {
        for (i, block) in [Hash([1; 32]), Hash([2; 32])].into_iter().enumerate() {
            let v = Vote {
                chain_id: chain.clone(),
                height: Height(ht),
                round: Round(0),
                kind: VoteKind::Prevote,
                block_hash: Some(block),
            };
            send(
                &mut h,
                envelope(100 + ht * 2 + i as u64, WireMsg::Vote(sign_vote(v, &key4))),
            );
        }
    }

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
    // Signed by `wrong` for `fake_block`, carrying `attached` as its block.
    let proposal_of = |resend, attached: &govchain_ledger::Block| {
        let proposal = Proposal {
            chain_id: chain.clone(),
            height,
            round: Round(0),
            block_hash: fake_block.hash(),
            pol_round: None,
        }
        .sign(&wrong);
        envelope(
            resend,
            WireMsg::Proposal {
                proposal,
                block: attached.encode(),
            },
        )
    };
    send(&mut h, proposal_of(3, &fake_block));
    // 5. A proposal whose attached block is not the proposed one (wrong height).
    let mut other = fake_block.clone();
    other.header.height = Height(height.0 + 5);
    send(&mut h, proposal_of(4, &other));
    // 6. Garbage on the transaction topic.
    let send_tx = |h: &mut net::NetHandle, bytes: Vec<u8>| {
        c.rt.block_on(h.commands.send(NetCommand::Publish(Topic::Tx, bytes)))
            .unwrap();
    };
    send_tx(&mut h, vec![0xff; 100]);
    // 7. A batch holding one transaction over MAX_TX_BYTES (decoding stops at the cap).
    let oversize_tx = vec![serde_bytes::ByteBuf::from(vec![7u8; MAX_TX_BYTES + 1024])];
    send_tx(&mut h, codec::encode(&oversize_tx).unwrap());
    // 8. A consensus message over MAX_GOSSIP_BYTES: every receiver's codec refuses the frame
    // by its length prefix before reading it.
    send(&mut h, vec![0x55; net::MAX_GOSSIP_BYTES + 1]);

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
    for reason in [
        "malformed consensus message",
        "invalid consensus message",
        "invalid transaction gossip",
        "a transaction does not decode or is oversize",
    ] {
        assert!(
            logs.contains(reason),
            "{reason:?} not logged:\n{}",
            c.logs()
        );
    }
    assert!(!logs.contains("panicked"), "a node panicked");

    // ...and the double vote is on chain, as a report_equivocation transaction.
    let client = c.nodes[0].client();
    let mut seen = first;
    let deadline = Instant::now() + Duration::from_secs(60);
    'found: loop {
        assert!(
            Instant::now() < deadline,
            "no equivocation evidence on chain:\n{}",
            c.logs()
        );
        let top = c.height(0);
        for ht in seen + 1..=top {
            let b =
                c.rt.block_on(client.get_json(&format!("blocks/{ht}")))
                    .unwrap();
            let kinds: Vec<_> = b["txs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["kind"].clone())
                .collect();
            if kinds.iter().any(|k| k == "report_equivocation") {
                break 'found;
            }
        }
        seen = top;
        assert_eq!(c.submit(1, 1, &[0, 1, 2], 9 + seen).len(), 1);
    }
}

/// The network side of a node under node-`i`'s key and listen address, dialing `peers`
/// (multiaddrs),
/// serving block sync from `store`; spawned on the current runtime.
fn rogue_peer(
    c: &Cluster,
    i: usize,
    peers: &[String],
    max_message_bytes: usize,
    store: Store,
) -> net::NetHandle {
    net::spawn(
        NetConfig {
            chain_id: c.net.genesis.chain_id.clone(),
            seed: c.net.node_key(i).secret_seed(),
            listen: c.net.config(i).p2p.listen.parse().unwrap(),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            allowed: c
                .net
                .genesis
                .validators
                .validators
                .iter()
                .map(|v| v.key)
                .collect(),
            max_message_bytes,
        },
        store,
    )
    .unwrap()
}

/// Runs the network side of a node from `store` under node-1's key and address, as a peer that
/// serves whatever its (tampered) store holds. Dropping the runtime closes its sockets.
fn rogue_sync_server(c: &Cluster, store: Store) -> (tokio::runtime::Runtime, net::NetHandle) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = {
        let _guard = rt.enter();
        rogue_peer(c, 1, &[], net::MAX_GOSSIP_BYTES, store)
    };
    (rt, h)
}

/// A copy of node-1's stopped store, altered by `tamper`.
fn tampered_copy(c: &Cluster, name: &str, tamper: impl FnOnce(&Store)) -> Store {
    let dir = c.net.dir.path().join(name);
    copy_dir(&c.net.data_dir(1), &dir);
    let store = Store::open(&dir).unwrap();
    tamper(&store);
    store
}

#[test]
fn bad_synced_blocks_are_refused_and_the_node_catches_up_from_honest_peers() {
    let mut c = Cluster::start(4, |_| {});
    assert_eq!(c.submit(4, 4, &[0, 1, 2, 3], 3).len(), 4);
    let behind = c.height(3);
    c.nodes[3].kill9();
    // One transaction at a time: the others move at least 12 blocks past node-4.
    assert_eq!(c.submit(12, 1, &[0, 1, 2], 4).len(), 12);
    let top = c.height(0);
    assert!(top >= behind + 6, "top {top}, node-4 at {behind}");
    for i in 0..3 {
        assert!(c.nodes[i].terminate(Duration::from_secs(30)));
    }
    let (h1, h2, h3) = (Height(behind + 1), Height(behind + 2), Height(behind + 3));

    // 1. The rogue serves h1 intact, then the block of h3 in the place of h2.
    let store = tampered_copy(&c, "rogue-height", |s| {
        let b3 = s.block_bytes(h3).unwrap().unwrap();
        let c3 = s.commit_bytes(h3).unwrap().unwrap();
        s.put_raw(CF_BLOCKS, &h2.key(), &b3).unwrap();
        s.put_raw(CF_COMMITS, &h2.key(), &c3).unwrap();
    });
    let rogue = rogue_sync_server(&c, store);
    c.nodes[3].restart();
    c.wait_until(
        Duration::from_secs(30),
        "node-4 refuses the wrong height",
        |c| {
            c.nodes[3]
                .log_text()
                .contains("synced block at a wrong height")
        },
    );
    assert_eq!(c.height(3), h1.0, "node-4 applied the good block only");
    drop(rogue);

    // 2. The rogue serves h2 with the certificate of h3 (valid signatures, wrong block).
    let store = tampered_copy(&c, "rogue-cert", |s| {
        let c3 = s.commit_bytes(h3).unwrap().unwrap();
        s.put_raw(CF_COMMITS, &h2.key(), &c3).unwrap();
    });
    let rogue = rogue_sync_server(&c, store);
    c.wait_until(
        Duration::from_secs(30),
        "node-4 refuses the certificate",
        |c| {
            c.nodes[3]
                .log_text()
                .contains("synced block has a bad certificate")
        },
    );
    assert_eq!(
        c.height(3),
        h1.0,
        "node-4 applied nothing it could not verify"
    );
    let log = c.nodes[3].log_text();
    assert!(log.contains("peer penalised"), "no penalty:\n{log}");
    assert!(!log.contains("panicked"), "node-4 panicked:\n{log}");
    drop(rogue);

    // 3. The honest nodes return: node-4 catches up and agrees with them.
    for i in 0..3 {
        c.nodes[i].restart();
    }
    assert_eq!(c.submit(3, 1, &[0, 1, 2, 3], 5).len(), 3);
    let top = c.height(0);
    c.wait_until(Duration::from_secs(60), "node-4 catches up", |c| {
        c.height(3) >= top
    });
    let block_hash = |i: usize| {
        let client = c.nodes[i].client();
        c.rt.block_on(client.get_json(&format!("blocks/{top}")))
            .unwrap()["hash"]
            .clone()
    };
    assert_eq!(
        block_hash(0),
        block_hash(3),
        "node-4 agrees at height {top}"
    );
    assert!(c.nodes[3].terminate(Duration::from_secs(30)));
    let out = verify(&c.net.data_dir(4), &c.net.genesis_path());
    assert!(
        out.status.success(),
        "verify node-4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
