//! The development certificate authority of a generated cluster (R-SEC-6): `govchain genesis`
//! makes one CA and, per node, a server certificate it signs for the node's API (subject
//! alternative names `127.0.0.1`, `::1` and `localhost`). Clients trust the CA's certificate
//! (`ca.pem`); the CA's key stays in `keys/` (mode 0600) to sign more node certificates.
//!
//! A production cluster uses certificates of the government's own CA instead: only the paths in
//! `node.toml` (`[api] tls_cert`, `tls_key`, `tls_ca`) change. Secret files are never
//! overwritten.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use govchain_ledger::TimestampMs;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::doc::GenesisError;

/// Years a development certificate is valid after the year it is made.
pub const DEV_CERT_YEARS: i32 = 10;

/// A development CA: its certificate and key.
pub struct DevCa {
    cert: Certificate,
    key: KeyPair,
    year: i32,
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate (PEM).
    pub cert: String,
    /// The private key (PKCS#8 PEM).
    pub key: String,
}

/// The calendar year of a Unix time (close enough for a validity window of whole years).
fn year_of(t: TimestampMs) -> i32 {
    const MS_PER_YEAR: u64 = 31_556_952_000; // 365.2425 days
    1970 + (t.0 / MS_PER_YEAR) as i32
}

/// Valid from the year before `year` to [`DEV_CERT_YEARS`] after it.
fn validity(p: &mut CertificateParams, year: i32) {
    p.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    p.not_after = rcgen::date_time_ymd(year + DEV_CERT_YEARS, 1, 1);
}

impl DevCa {
    /// A new CA named after the chain, valid around `now`.
    pub fn generate(chain_id: &str, now: TimestampMs) -> Result<Self, GenesisError> {
        let year = year_of(now);
        let mut p = CertificateParams::default();
        p.distinguished_name.push(
            DnType::CommonName,
            format!("govchain development CA ({chain_id})"),
        );
        p.distinguished_name
            .push(DnType::OrganizationName, "govchain");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p, year);
        let key = KeyPair::generate()?;
        let cert = p.self_signed(&key)?;
        Ok(Self { cert, key, year })
    }

    /// The CA's certificate and key.
    pub fn pem(&self) -> PemPair {
        PemPair {
            cert: self.cert.pem(),
            key: self.key.serialize_pem(),
        }
    }

    /// A server certificate for the API of node `name`, signed by this CA, for loopback
    /// addresses and `localhost` plus `extra` names (IP addresses or DNS names).
    pub fn node_cert(&self, name: &str, extra: &[String]) -> Result<PemPair, GenesisError> {
        let mut p = CertificateParams::new(vec!["localhost".to_string()])?;
        p.subject_alt_names.extend([
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        for e in extra {
            p.subject_alt_names.push(match e.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(e.clone().try_into()?),
            });
        }
        p.distinguished_name
            .push(DnType::CommonName, format!("govchain node {name}"));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, self.year);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Writes `text` to a new file (never overwriting); mode 0600 when `secret`.
pub fn write_new(path: &Path, text: &str, secret: bool) -> Result<(), GenesisError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| GenesisError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_is_signed_by_the_ca_for_loopback_names() {
        let ca = DevCa::generate("test-chain", TimestampMs(1_700_000_000_000)).unwrap();
        assert_eq!(ca.year, 2023);
        let pem = ca.pem();
        assert!(pem.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pem.key.contains("PRIVATE KEY"));
        let node = ca
            .node_cert("gaj", &["10.0.0.5".into(), "gaj.gov.example".into()])
            .unwrap();
        assert!(node.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(node.key, pem.key);
        // A name that is neither an address nor an ASCII DNS name is refused.
        assert!(ca.node_cert("x", &["名字".into()]).is_err());
    }
}
