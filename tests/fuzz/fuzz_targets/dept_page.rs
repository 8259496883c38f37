//! A department system's page (R-SYN-3): whatever bytes a department system answers — plain
//! JSON, or DES/3DES-CBC ciphertext — decode into a page or a clear error, never a panic; each
//! entry becomes a record that passes chaincode's validation or is refused with a reason.
#![no_main]

use std::sync::OnceLock;

use govchain_chaincode::catalog::DataSource;
use govchain_node::legacy_codec::Codec;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    codecs: Vec<Codec>,
    sources: Vec<DataSource>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let catalog = govchain_genesis::catalog::default_catalog().expect("the catalog");
        Fixture {
            codecs: [
                "plain",
                "des:133457799BBCDFF1:0102030405060708",
                "3des:0123456789ABCDEFFEDCBA987654321089ABCDEF01234567:1122334455667788",
            ]
            .iter()
            .map(|c| Codec::parse(c).expect("a codec"))
            .collect(),
            sources: catalog
                .sources
                .into_iter()
                .filter(|s| ["gaj.hjxx", "mzj.dbjz", "gaj.jzz"].contains(&s.id.as_str()))
                .collect(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let codec = &f.codecs[pick as usize % f.codecs.len()];
    let source = &f.sources[(pick as usize / 4) % f.sources.len()];
    let Ok(page) = govchain_node::sync::decode_page(codec, body) else {
        return;
    };
    for entry in &page.records {
        if let Ok(record) = govchain_node::sync::to_record(source, entry) {
            let _ = record.validate(source);
        }
    }
});
