//! Batch user import (R-SEC-1): any bytes given to `govchain users import` — CSV in any
//! encoding, or what claims to be an XLSX workbook — parse into rows or a clear error, never a
//! panic; every parsed row either becomes a user that passes chaincode's validation or is
//! reported with its reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cells) = govchain_node::users_cli::cells(data) else {
        return;
    };
    if let Ok((rows, errors)) = govchain_node::users_cli::parse(&cells) {
        for row in &rows {
            assert!(
                row.user.validate().is_ok(),
                "a parsed row is a valid user: {row:?}"
            );
        }
        assert!(
            rows.len() + errors.len() <= cells.len(),
            "one outcome per line at most"
        );
    }
});
