//! `govchain catalog`: signs one business-catalog transaction read from a JSON file and sends it
//! to a node, waiting for its commit (R-ARC-4, R-ARC-5, R-QRY-2…5).
//!
//! The file holds a [`TxKind`] as JSON, one of the four catalog kinds, for example
//! `{"PutCatalogEntry": {"mode": "add", "entry": {"matter_type": {…}}}}`,
//! `{"DeleteCatalogEntry": {"category": {"id": "hj"}}}`,
//! `{"PutMaterial": {"mode": "replace", "matter": "jhdj", "material": {…}}}` or
//! `{"DeleteMaterial": {"matter": "jhdj", "id": "sfz"}}`. Any other kind is refused here; the
//! node's chaincode decides who may sign what.

use std::path::Path;

use anyhow::{bail, Context};
use govchain_chaincode::TxKind;

use crate::client::{sign_tx, Client, SubmitReply};

/// Largest definition file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Parses a catalog transaction kind from JSON; other kinds are refused.
pub fn parse_kind(json: &str) -> anyhow::Result<TxKind> {
    let kind: TxKind = serde_json::from_str(json).context("not a transaction kind as JSON")?;
    match kind {
        TxKind::PutCatalogEntry { .. }
        | TxKind::DeleteCatalogEntry(_)
        | TxKind::PutMaterial { .. }
        | TxKind::DeleteMaterial { .. } => Ok(kind),
        other => bail!(
            "{} is not a catalog transaction (PutCatalogEntry, DeleteCatalogEntry, PutMaterial, \
             DeleteMaterial)",
            other.name()
        ),
    }
}

/// Reads `file`, signs its transaction with the key in `key_file` for the chain of the node at
/// `url` (trusting the CA in `ca`), submits it and waits for the commit.
pub async fn run(
    file: &Path,
    key_file: &Path,
    url: &str,
    ca: Option<&Path>,
) -> anyhow::Result<SubmitReply> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if len > MAX_FILE_BYTES {
        bail!(
            "{} has {len} bytes; the limit is {MAX_FILE_BYTES}",
            file.display()
        );
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let kind = parse_kind(&text)?;
    let (client, key, chain) = Client::connect_signer(key_file, url, ca).await?;
    let tx = sign_tx(&key, &chain, &kind);
    client.submit(&tx, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catalog_kinds_are_accepted() {
        let ok = r#"{"DeleteMaterial": {"matter": "jhdj", "id": "sfz"}}"#;
        assert!(matches!(parse_kind(ok), Ok(TxKind::DeleteMaterial { .. })));
        let put = r#"{"PutCatalogEntry": {"mode": "add", "entry": {"category":
            {"id": "hj", "name": "户籍服务", "sources": [{"source": "gaj.hjxx", "fields": ["xm"]}]}}}}"#;
        assert!(matches!(
            parse_kind(put),
            Ok(TxKind::PutCatalogEntry { .. })
        ));
        let other = r#"{"ApproveValidatorChange": {"proposal": 1}}"#;
        assert!(parse_kind(other).is_err());
        assert!(parse_kind("{").is_err());
    }
}
