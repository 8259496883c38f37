//! Issue 15, finding 5, through a real two-node cluster (R-SEC-7): a signed request names its
//! audience — the chain id and the key of the node it is sent to, both in the public
//! `GET /api/v1/status` — so a request captured at one node is refused at another node and on
//! another chain; an unregistered key's valid signatures are refused before the replay guard
//! remembers them, so they cannot crowd out a registered key.

use govchain_api::auth::{sign_request, sign_request_with_nonce, Audience};
use govchain_ledger::{ChainId, Keypair};
use govchain_tests::{error_code as code, now_ms, Cluster};

/// Finding 5: a request signed for node A is served once by A, refused by B and refused when
/// signed for another chain; each node's status names its own key.
#[test]
fn finding_5_a_signed_request_is_bound_to_its_chain_and_target_node() {
    let c = Cluster::start(2, |_| {});
    let admin = c.net.key("sysadmin");
    let (a, b) = (c.nodes[0].client(), c.nodes[1].client());
    let to_a = c.rt.block_on(a.audience()).unwrap();
    let to_b = c.rt.block_on(b.audience()).unwrap();
    assert_eq!(to_a.node, c.net.node_key(1).public());
    assert_eq!(to_b.node, c.net.node_key(2).public());
    assert_eq!(to_a.chain_id, c.net.genesis.chain_id);

    let for_a = sign_request(&admin, &to_a, "GET", "/api/v1/me", now_ms(), b"");
    let (s, body) = c.rt.block_on(b.get_with("me", &for_a)).unwrap();
    assert_eq!(
        (s, code(&body)),
        (401, "bad_signature"),
        "replayed at B: {body}"
    );
    let (s, body) = c.rt.block_on(a.get_with("me", &for_a)).unwrap();
    assert_eq!(s, 200, "at A: {body}");
    let (s, body) = c.rt.block_on(a.get_with("me", &for_a)).unwrap();
    assert_eq!((s, code(&body)), (401, "replayed_request"), "{body}");

    let other_chain = Audience {
        chain_id: ChainId::new("another-chain").unwrap(),
        node: to_a.node,
    };
    let h = sign_request(&admin, &other_chain, "GET", "/api/v1/me", now_ms(), b"");
    let (s, body) = c.rt.block_on(a.get_with("me", &h)).unwrap();
    assert_eq!((s, code(&body)), (401, "bad_signature"), "{body}");
    // The same request signed for B is B's.
    let h = sign_request(&admin, &to_b, "GET", "/api/v1/me", now_ms(), b"");
    let (s, body) = c.rt.block_on(b.get_with("me", &h)).unwrap();
    assert_eq!(s, 200, "{body}");
}

/// Finding 5: many distinct, valid signatures of a key that is not registered are refused
/// (403) and never remembered; a registered key's request is served after them.
#[test]
fn finding_5_an_unregistered_keys_signatures_do_not_crowd_out_a_registered_key() {
    const STRANGER_REQUESTS: usize = 300;
    let c = Cluster::start(1, |_| {});
    let admin = c.net.key("sysadmin");
    let a = c.nodes[0].client();
    let to = c.rt.block_on(a.audience()).unwrap();
    let stranger = Keypair::from_seed([77; 32]);
    let t = now_ms();
    for i in 0..STRANGER_REQUESTS {
        let h = sign_request_with_nonce(
            &stranger,
            &to,
            "GET",
            "/api/v1/me",
            t,
            &format!("s-{i}"),
            b"",
        );
        let (s, body) = c.rt.block_on(a.get_with("me", &h)).unwrap();
        assert_eq!((s, code(&body)), (403, "forbidden"), "{i}: {body}");
    }
    let h = sign_request(&admin, &to, "GET", "/api/v1/me", now_ms(), b"");
    let (s, body) = c.rt.block_on(a.get_with("me", &h)).unwrap();
    assert_eq!(s, 200, "{body}");
}
