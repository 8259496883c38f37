//! State keys. Every key chaincode writes is built here, so the layout is in one place.
//!
//! Keys are ASCII prefixes followed by ids; ids are validated before they reach here, and
//! contain no `/` so prefixes cannot collide.

use govchain_ledger::PublicKey;

/// The validator set.
pub const VALIDATORS: &[u8] = b"validators";
/// The system administrator's key.
pub const SYSTEM_ADMIN: &[u8] = b"sysadmin";

/// A department record.
pub fn department(id: &str) -> Vec<u8> {
    [b"dept/", id.as_bytes()].concat()
}

/// What a signing key is (its role).
pub fn key_role(key: &PublicKey) -> Vec<u8> {
    [&b"key/"[..], key.as_bytes()].concat()
}

/// A used (signer, nonce) pair.
pub fn nonce(signer: &PublicKey, nonce: u64) -> Vec<u8> {
    [&b"nonce/"[..], signer.as_bytes(), &nonce.to_be_bytes()].concat()
}

/// A data source definition.
pub fn source(id: &str) -> Vec<u8> {
    [b"src/", id.as_bytes()].concat()
}

/// The latest version of a record.
pub fn record(source: &str, record_key: &str) -> Vec<u8> {
    [b"rec/", source.as_bytes(), b"/", record_key.as_bytes()].concat()
}

/// A person's index entry for one record.
pub fn person_record(person: &str, source: &str, record_key: &str) -> Vec<u8> {
    [
        b"person/",
        person.as_bytes(),
        b"/",
        source.as_bytes(),
        b"/",
        record_key.as_bytes(),
    ]
    .concat()
}

/// A pending validator-set change proposal.
pub fn validator_proposal(id: u64) -> Vec<u8> {
    [&b"valprop/"[..], &id.to_be_bytes()].concat()
}

/// Recorded equivocation evidence, by offence id.
pub fn evidence(offence: &govchain_ledger::Hash) -> Vec<u8> {
    [&b"evidence/"[..], offence.as_bytes()].concat()
}

/// Number of registered departments.
pub const DEPT_COUNT: &[u8] = b"dept_count";

/// A matter type (with its materials).
pub fn matter_type(id: &str) -> Vec<u8> {
    [b"matter/", id.as_bytes()].concat()
}

/// A service category with the ids of its templates and formats.
pub fn category(id: &str) -> Vec<u8> {
    [b"category/", id.as_bytes()].concat()
}

/// A display template of a category.
pub fn template(category: &str, id: &str) -> Vec<u8> {
    [b"template/", category.as_bytes(), b"/", id.as_bytes()].concat()
}

/// An export format of a category.
pub fn export_format(category: &str, id: &str) -> Vec<u8> {
    [b"format/", category.as_bytes(), b"/", id.as_bytes()].concat()
}

/// A saved query: the owner's key (fixed 32 bytes) then the name, so names may hold any text.
pub fn saved_query(owner: &PublicKey, name: &str) -> Vec<u8> {
    [&b"query/"[..], owner.as_bytes(), name.as_bytes()].concat()
}

/// Number of saved queries of an owner.
pub fn saved_query_count(owner: &PublicKey) -> Vec<u8> {
    [&b"query_count/"[..], owner.as_bytes()].concat()
}

/// A user.
pub fn user(id: &str) -> Vec<u8> {
    [b"user/", id.as_bytes()].concat()
}

/// A grant.
pub fn grant(id: &str) -> Vec<u8> {
    [b"grant/", id.as_bytes()].concat()
}

/// The ids of a grantee's grants (`d:<dept>`, `l:<dept>:<level>`, `u:<user>`).
pub fn grants_of(grantee: &str) -> Vec<u8> {
    [b"grants_of/", grantee.as_bytes()].concat()
}

/// A resident's consent.
pub fn consent(id: &str) -> Vec<u8> {
    [b"consent/", id.as_bytes()].concat()
}

/// Number of audit entries on chain.
pub const AUDIT_COUNT: &[u8] = b"audit_count";
