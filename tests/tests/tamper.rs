//! R-CHN-2, R-AUD-4: the auditor's replay catches any altered byte of a stored block, of a
//! certificate signature, or of a state value, and names the height concerned.

use std::time::Duration;

use govchain_chaincode::records::StoredRecord;
use govchain_ledger::store::{CF_BLOCKS, CF_COMMITS, CF_STATE};
use govchain_ledger::{codec, Commit, Height, Store};
use govchain_node::client::records_tx;
use govchain_node::synth::Generator;
use govchain_tests::{copy_dir, verify, Net, NodeProc};

/// A stopped single-node chain with five one-transaction blocks.
fn chain_of_five() -> Net {
    let net = Net::generate(1);
    let mut node = NodeProc::start(&net, 1);
    let key = net.node_key(1);
    let source = net.source("gaj.hjxx");
    let client = node.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut gen = Generator::new(9);
    for b in 0..5u64 {
        let records = (0..5).map(|i| gen.record_for(&source, b * 5 + i)).collect();
        let tx = records_tx(&key, &net.genesis.chain_id, &source, records);
        let r = rt.block_on(client.submit(&tx, true)).unwrap();
        assert_eq!(r.height, Some(b + 1));
    }
    assert!(node.terminate(Duration::from_secs(30)));
    net
}

fn tampered(net: &Net, name: &str, tamper: impl FnOnce(&Store)) -> (bool, String) {
    let copy = net.dir.path().join(format!("copy-{name}"));
    copy_dir(&net.data_dir(1), &copy);
    {
        let store = Store::open(&copy).unwrap();
        tamper(&store);
    }
    let out = verify(&copy, &net.genesis_path());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn verify_names_the_height_of_every_tampered_byte() {
    let net = chain_of_five();
    let out = verify(&net.data_dir(1), &net.genesis_path());
    assert!(
        out.status.success(),
        "untampered chain verifies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 blocks, 5 transactions"));

    // One byte of a stored block, at several positions: header, body, signature, end.
    let len = Store::open_read_only(&net.data_dir(1))
        .unwrap()
        .block_bytes(Height(3))
        .unwrap()
        .unwrap()
        .len();
    for pos in [0, 9, 40, 120, len / 3, len / 2, len - 70, len - 1] {
        let (ok, err) = tampered(&net, &format!("block-{pos}"), |s| {
            let mut b = s.block_bytes(Height(3)).unwrap().unwrap();
            b[pos] ^= 0x01;
            s.put_raw(CF_BLOCKS, &Height(3).key(), &b).unwrap();
        });
        assert!(!ok, "flipping block byte {pos} went unnoticed");
        assert!(err.contains("height 3"), "byte {pos}: {err}");
    }

    // One byte of a certificate signature.
    let (ok, err) = tampered(&net, "cert", |s| {
        let mut c: Commit = s.commit(Height(2)).unwrap().unwrap();
        c.signatures[0].signature.0[17] ^= 0x80;
        s.put_raw(CF_COMMITS, &Height(2).key(), &c.encode())
            .unwrap();
    });
    assert!(!ok);
    assert!(
        err.contains("height 2") && err.contains("certificate"),
        "{err}"
    );

    // One byte of a state value written at height 4.
    let (ok, err) = tampered(&net, "state", |s| {
        let (k, mut v) = s
            .state_iter()
            .map(Result::unwrap)
            .find(|(k, v)| {
                k.starts_with(b"rec/")
                    && codec::decode::<StoredRecord>(v, 1 << 20).unwrap().height == Height(4)
            })
            .expect("a record written at height 4");
        let last = v.len() - 1;
        v[last] ^= 0x01;
        s.put_raw(CF_STATE, &k, &v).unwrap();
    });
    assert!(!ok);
    assert!(
        err.contains("height 4") && err.contains("state key"),
        "{err}"
    );

    // A state entry that no block wrote.
    let (ok, err) = tampered(&net, "extra-state", |s| {
        s.put_raw(CF_STATE, b"rec/gaj.hjxx/forged", b"x").unwrap();
    });
    assert!(!ok);
    assert!(err.contains("no block wrote it"), "{err}");

    // A removed block.
    let (ok, err) = tampered(&net, "missing-block", |s| {
        s.put_raw(CF_BLOCKS, &Height(5).key(), b"").unwrap();
    });
    assert!(!ok);
    assert!(err.contains("height 5"), "{err}");
}
