//! Users, grants, resident consents and audit entries (R-SEC-1…5, R-SEC-7, R-AUD-1…4), and the
//! access decision every node makes before it returns personal data — the same function the
//! auditor's replay runs against the same state to reproduce each decision.
//!
//! The rules (DESIGN §6):
//! - A user reads the sources of their own department (query and export).
//! - Another department's source needs an active grant (not expired, not revoked) that names the
//!   user, their department, or their department and a level at or below theirs, and covers the
//!   source (by id, or by its owner and share type). Query and export are separate rights.
//!   Restricted (不予共享) sources are never granted.
//! - A person's or a matter's file also needs a consent of that person for that user, not expired;
//!   a matter file's consent must be for that matter. Only the consent's sources are shown.
//! - The genesis system administrator's key reads everything without consent (the preset
//!   administrator of R-SEC-1); each of its reads is audited like any other.
//!
//! Execution is in [`crate::access_exec`]. Nothing here does IO or reads a clock: the time of a
//! decision is an input.

use std::collections::BTreeSet;

use govchain_ledger::{Hash, PublicKey, StateView, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::catalog::{DataSource, ShareType};
use crate::error::{invalid, TxError};
use crate::exec::get;
use crate::keys;

/// What a user may do (several roles may be combined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Department staff: queries within their department's rights.
    Staff,
    /// Manages the users of their own department.
    DepartmentAdmin,
    /// Reads and exports the audit log.
    Auditor,
    /// Manages users of every department and grants.
    SystemAdmin,
    /// A department's or approval system's account: signs each request with its key.
    System,
}

impl Role {
    /// Parses the snake-case name (as in import files).
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s.trim() {
            "staff" => Role::Staff,
            "department_admin" => Role::DepartmentAdmin,
            "auditor" => Role::Auditor,
            "system_admin" => Role::SystemAdmin,
            "system" => Role::System,
            _ => return None,
        })
    }
}

/// Highest user level (levels are 1…MAX_LEVEL; higher sees what lower levels were granted).
pub const MAX_LEVEL: u8 = 9;
/// Most users in one `PutUsers` transaction.
pub const MAX_USERS_PER_TX: usize = 1_000;
/// Longest user id.
pub const MAX_USER_ID_LEN: usize = 64;

/// A government staff member or a system account (R-SEC-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login id: 1–64 of `[A-Za-z0-9_.-]`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Department id.
    pub department: String,
    /// Level, 1…[`MAX_LEVEL`].
    pub level: u8,
    /// Roles (at least one, no repeats).
    pub roles: Vec<Role>,
    /// A disabled user can neither log in nor read.
    #[serde(default)]
    pub disabled: bool,
    /// A system account's registered ed25519 key (required with [`Role::System`], else absent).
    #[serde(default)]
    pub key: Option<PublicKey>,
}

/// Checks a user id.
pub fn check_user_id(id: &str) -> Result<(), TxError> {
    if (1..=MAX_USER_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        Ok(())
    } else {
        Err(invalid(
            "user.id",
            format!("{id:?}: must be 1-{MAX_USER_ID_LEN} of [A-Za-z0-9_.-]"),
        ))
    }
}

impl User {
    /// Checks everything that needs no state.
    pub fn validate(&self) -> Result<(), TxError> {
        check_user_id(&self.id)?;
        let name_len = self.name.chars().count();
        if self.name.trim().is_empty() || name_len > 64 || self.name.chars().any(char::is_control) {
            return Err(invalid("user.name", "must be 1-64 printable characters"));
        }
        crate::catalog::check_department_id(&self.department)?;
        if !(1..=MAX_LEVEL).contains(&self.level) {
            return Err(invalid(
                "user.level",
                format!("{} is not in 1-{MAX_LEVEL}", self.level),
            ));
        }
        if self.roles.is_empty() {
            return Err(invalid("user.roles", "at least one role"));
        }
        if self.roles.iter().collect::<BTreeSet<_>>().len() != self.roles.len() {
            return Err(invalid("user.roles", "a role is listed twice"));
        }
        let system = self.roles.contains(&Role::System);
        match (system, self.key.is_some()) {
            (true, false) => Err(invalid("user.key", "a system account needs its key")),
            (false, true) => Err(invalid("user.key", "only system accounts have a key")),
            _ => Ok(()),
        }
    }

    /// Whether the user has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// Every user of a department.
    Department(String),
    /// Users of a department at `min_level` or above.
    Level {
        /// The department.
        department: String,
        /// The lowest level covered.
        min_level: u8,
    },
    /// One user.
    User(String),
}

impl Grantee {
    /// The state key of this grantee's grant list.
    pub fn index_key(&self) -> Vec<u8> {
        match self {
            Grantee::Department(d) => keys::grants_of(&format!("d:{d}")),
            Grantee::Level {
                department,
                min_level,
            } => keys::grants_of(&format!("l:{department}:{min_level}")),
            Grantee::User(u) => keys::grants_of(&format!("u:{u}")),
        }
    }

    /// The index keys of every grantee a user falls under.
    pub fn keys_of(user: &User) -> Vec<Vec<u8>> {
        let mut v = vec![
            Grantee::User(user.id.clone()).index_key(),
            Grantee::Department(user.department.clone()).index_key(),
        ];
        v.extend((1..=user.level).map(|l| {
            Grantee::Level {
                department: user.department.clone(),
                min_level: l,
            }
            .index_key()
        }));
        v
    }
}

/// Which sources a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantScope {
    /// One data source.
    Source(String),
    /// Every source of `owner` with that share type.
    ShareType {
        /// The owner department.
        owner: String,
        /// The share type (open or conditional).
        share_type: ShareType,
    },
}

/// A right to read another department's sources (R-SEC-3, R-SEC-4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Id: 1–64 of `[A-Za-z0-9_.-]`.
    pub id: String,
    /// Who.
    pub grantee: Grantee,
    /// On what.
    pub scope: GrantScope,
    /// May run queries and read files.
    pub query: bool,
    /// May export.
    pub export: bool,
    /// Valid from (inclusive).
    pub valid_from: TimestampMs,
    /// Valid until (exclusive).
    pub valid_until: TimestampMs,
}

/// A grant as kept in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGrant {
    /// The grant.
    pub grant: Grant,
    /// When it was revoked (block time), if it was.
    pub revoked_at: Option<TimestampMs>,
}

/// Longest purpose text of a consent.
pub const MAX_PURPOSE_CHARS: usize = 200;

/// A resident's consent, verified by an SMS code at a department's node (R-SEC-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Id: 64 hex digits, chosen by the verifying node.
    pub id: String,
    /// The person (18-digit national ID).
    pub person: String,
    /// The matter type the case is about.
    pub matter: String,
    /// The sources in scope (the matter type's sources at the time of consent).
    pub sources: Vec<String>,
    /// The user who may read.
    pub grantee: String,
    /// Why (free text).
    pub purpose: String,
    /// When the code was verified.
    pub issued_at: TimestampMs,
    /// Until when the consent holds (exclusive).
    pub expires_at: TimestampMs,
    /// How it was verified (`sms:` and the last four digits of the phone).
    pub verified_by: String,
}

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// Reading (files, queries, searches).
    Query,
    /// Exporting.
    Export,
}

/// Why an access is refused: a stable code (the API's error code) and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Denial {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

fn deny(code: &str, message: impl Into<String>) -> Denial {
    Denial {
        code: code.into(),
        message: message.into(),
    }
}

/// One access to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The user (None: the genesis system administrator's key).
    pub user: Option<String>,
    /// Query or export.
    pub right: Right,
    /// The sources the request reads.
    pub sources: Vec<String>,
    /// Answer with what may be read of `sources` rather than refusing the request (a search);
    /// person and matter files always do.
    pub filter: bool,
    /// Whose file, for person and matter files (these need a consent).
    pub person: Option<String>,
    /// The matter, for matter files.
    pub matter: Option<String>,
    /// The consent the request presents.
    pub consent: Option<String>,
    /// When (the node's clock at the request).
    pub time: TimestampMs,
}

/// What was decided: the sources the request may read (a subset of those asked for: a person
/// file shows only the consent's sources the user may read).
pub type Decision = Result<Vec<String>, Denial>;

fn state_err(e: TxError) -> Denial {
    deny("state_error", e.to_string())
}

/// The user record of `id`.
pub fn user(view: &dyn StateView, id: &str) -> Result<Option<User>, TxError> {
    get(view, &keys::user(id))
}

/// The stored grant `id`.
pub fn grant(view: &dyn StateView, id: &str) -> Result<Option<StoredGrant>, TxError> {
    get(view, &keys::grant(id))
}

/// The consent `id`.
pub fn consent(view: &dyn StateView, id: &str) -> Result<Option<Consent>, TxError> {
    get(view, &keys::consent(id))
}

/// Whether `user` may use `right` on `source` at `now`; the denial says why not.
pub fn source_access(
    view: &dyn StateView,
    user: &User,
    source: &DataSource,
    right: &Right,
    now: TimestampMs,
) -> Result<(), Denial> {
    if source.department == user.department {
        return Ok(());
    }
    let mut best: Option<Denial> = None;
    let mut note = |d: Denial| {
        // The most telling reason wins: wrong right, then revoked, then expired, then none.
        let rank = |c: &str| match c {
            "no_export_right" => 3,
            "grant_revoked" => 2,
            "grant_expired" => 1,
            _ => 0,
        };
        if best.as_ref().is_none_or(|b| rank(&d.code) > rank(&b.code)) {
            best = Some(d);
        }
    };
    for key in Grantee::keys_of(user) {
        let ids: Vec<String> = get(view, &key).map_err(state_err)?.unwrap_or_default();
        for id in ids {
            let Some(g) = grant(view, &id).map_err(state_err)? else {
                continue;
            };
            let covers = match &g.grant.scope {
                GrantScope::Source(s) => *s == source.id,
                GrantScope::ShareType { owner, share_type } => {
                    *owner == source.department && *share_type == source.share_type
                }
            };
            if !covers || source.share_type == ShareType::Restricted {
                continue;
            }
            if g.revoked_at.is_some_and(|t| t <= now) {
                note(deny(
                    "grant_revoked",
                    format!("grant {} on {} was revoked", g.grant.id, source.id),
                ));
            } else if now < g.grant.valid_from || now >= g.grant.valid_until {
                note(deny(
                    "grant_expired",
                    format!("grant {} on {} is not valid now", g.grant.id, source.id),
                ));
            } else if *right == Right::Export && !g.grant.export {
                note(deny(
                    "no_export_right",
                    format!(
                        "grant {} on {} does not allow export",
                        g.grant.id, source.id
                    ),
                ));
            } else if *right == Right::Query && !g.grant.query {
                note(deny(
                    "no_grant",
                    format!(
                        "grant {} on {} does not allow queries",
                        g.grant.id, source.id
                    ),
                ));
            } else {
                return Ok(());
            }
        }
    }
    Err(best.unwrap_or_else(|| {
        deny(
            "no_grant",
            format!(
                "source {} belongs to department {}; {} has no grant on it",
                source.id, source.department, user.department
            ),
        )
    }))
}

/// Decides one access against `view` (the committed state the node reads). The same inputs on
/// the same state give the same decision on every node and in the auditor's replay.
pub fn decide(view: &dyn StateView, req: &AccessRequest) -> Decision {
    let Some(uid) = &req.user else {
        return Ok(req.sources.clone());
    };
    let user = user(view, uid)
        .map_err(state_err)?
        .ok_or_else(|| deny("unknown_user", format!("no user {uid:?}")))?;
    if user.disabled {
        return Err(deny("user_disabled", format!("user {uid} is disabled")));
    }
    let mut scope: Option<BTreeSet<String>> = None;
    if let Some(person) = &req.person {
        let id = req.consent.as_deref().ok_or_else(|| {
            deny(
                "no_consent",
                format!("reading person {person}'s file needs the person's consent (consent id)"),
            )
        })?;
        let c = consent(view, id)
            .map_err(state_err)?
            .ok_or_else(|| deny("no_consent", format!("no consent {id}")))?;
        if c.person != *person || c.grantee != user.id {
            return Err(deny(
                "consent_mismatch",
                format!("consent {id} is not for this person and user"),
            ));
        }
        if let Some(m) = &req.matter {
            if c.matter != *m {
                return Err(deny(
                    "consent_mismatch",
                    format!("consent {id} is for matter {}, not {m}", c.matter),
                ));
            }
        }
        if req.time < c.issued_at || req.time >= c.expires_at {
            return Err(deny("consent_expired", format!("consent {id} has expired")));
        }
        scope = Some(c.sources.into_iter().collect());
    }
    let mut allowed = Vec::new();
    let mut first_denial = None;
    for sid in &req.sources {
        if scope.as_ref().is_some_and(|s| !s.contains(sid)) {
            continue;
        }
        let source: DataSource = get(view, &keys::source(sid))
            .map_err(state_err)?
            .ok_or_else(|| deny("unknown_source", format!("no data source {sid}")))?;
        match source_access(view, &user, &source, &req.right, req.time) {
            Ok(()) => allowed.push(sid.clone()),
            Err(d) => {
                first_denial.get_or_insert(d);
            }
        }
    }
    // A file shows what may be read of it; a query or export of a source it may not read fails.
    match (req.person.is_some() || req.filter, first_denial) {
        (false, Some(d)) => Err(d),
        (true, Some(d)) if allowed.is_empty() => Err(d),
        _ => Ok(allowed),
    }
}

/// Longest text field of an audit entry.
pub const MAX_AUDIT_TEXT: usize = 512;
/// Most entries in one `AppendAudit` transaction.
pub const MAX_AUDIT_ENTRIES: usize = 5_000;

/// Most person ids one audit entry lists: a page of a search or combined query (at most 100
/// rows) is always listed whole; a bigger read (an export) lists its first
/// `MAX_AUDIT_PERSONS` ids and keeps the count and digest of all of them.
pub const MAX_AUDIT_PERSONS: usize = 100;
/// Longest person id in an audit entry's list (an 18-character national ID).
pub const MAX_AUDIT_PERSON_ID_BYTES: usize = 18;

/// The distinct persons (national IDs) whose records one read returned.
///
/// Invariants ([`ReturnedPersons::validate`], checked on chain): `ids` ascending without
/// repeats, at most [`MAX_AUDIT_PERSONS`] of at most [`MAX_AUDIT_PERSON_ID_BYTES`] bytes;
/// `total` is the number of distinct persons returned (`>= ids.len()`); `digest` is present
/// exactly when `total > ids.len()`, and is the [`Domain::AuditPersons`] hash of the whole
/// ascending list, each id followed by a newline ([`ReturnedPersons::digest_of`]).
///
/// [`Domain::AuditPersons`]: govchain_ledger::hash::Domain::AuditPersons
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnedPersons {
    /// The persons, ascending: all of them, or the first [`MAX_AUDIT_PERSONS`].
    pub ids: Vec<String>,
    /// How many distinct persons the read returned.
    pub total: u64,
    /// The digest of the whole list, when `ids` holds only part of it.
    pub digest: Option<Hash>,
}

impl ReturnedPersons {
    /// The record of `ids` (any order, repeats allowed; ids longer than
    /// [`MAX_AUDIT_PERSON_ID_BYTES`] are not national IDs and are left out).
    pub fn of<I, S>(ids: I) -> ReturnedPersons
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let all: BTreeSet<String> = ids
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .filter(|s| !s.is_empty() && s.len() <= MAX_AUDIT_PERSON_ID_BYTES)
            .collect();
        let total = all.len() as u64;
        let digest = (all.len() > MAX_AUDIT_PERSONS).then(|| Self::digest_of(all.iter()));
        ReturnedPersons {
            ids: all.into_iter().take(MAX_AUDIT_PERSONS).collect(),
            total,
            digest,
        }
    }

    /// The digest of a whole ascending list of ids.
    pub fn digest_of<'a>(ids: impl Iterator<Item = &'a String>) -> Hash {
        let parts: Vec<&[u8]> = ids.flat_map(|id| [id.as_bytes(), b"\n"]).collect();
        govchain_ledger::hash::hash_parts(govchain_ledger::hash::Domain::AuditPersons, &parts)
    }

    /// Whether `id` is among the listed persons.
    pub fn lists(&self, id: &str) -> bool {
        self.ids.binary_search_by(|p| p.as_str().cmp(id)).is_ok()
    }

    /// Checks the invariants (see the type's documentation).
    pub fn validate(&self) -> Result<(), TxError> {
        if self.ids.len() > MAX_AUDIT_PERSONS {
            return Err(invalid(
                "audit.persons",
                format!("more than {MAX_AUDIT_PERSONS} person ids in one entry"),
            ));
        }
        if self
            .ids
            .iter()
            .any(|p| p.is_empty() || p.len() > MAX_AUDIT_PERSON_ID_BYTES)
        {
            return Err(invalid(
                "audit.persons",
                format!("a person id is empty or longer than {MAX_AUDIT_PERSON_ID_BYTES} bytes"),
            ));
        }
        if self.ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(
                "audit.persons",
                "person ids not ascending and distinct",
            ));
        }
        if self.total < self.ids.len() as u64 {
            return Err(invalid("audit.persons", "total below the ids listed"));
        }
        if self.digest.is_some() != (self.total > self.ids.len() as u64) {
            return Err(invalid(
                "audit.persons",
                "a digest exactly when the ids are only part of the persons",
            ));
        }
        Ok(())
    }

    /// The record cut to the chain's limits: itself when valid; otherwise what [`Self::of`]
    /// makes of its ids (the count and digest then cover those ids). `clamped().validate()` is
    /// always `Ok`.
    pub fn clamped(self) -> ReturnedPersons {
        if self.validate().is_ok() {
            return self;
        }
        let out = Self::of(self.ids);
        debug_assert!(
            out.validate().is_ok(),
            "invariant: `of` makes a valid record"
        );
        out
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A login (successful or not).
    Login,
    /// A logout.
    Logout,
    /// A read of personal data (file, query, search) with its access decision.
    Access(AccessRequest),
    /// An SMS consent code requested.
    ConsentRequested,
    /// A consent code checked.
    ConsentVerified,
    /// An administration call (password set, user or grant change through the API).
    Admin(String),
    /// A read of the audit log itself.
    AuditRead,
    /// A read of chain data (`/txs`, `/blocks`) by a caller who may see payloads.
    ChainRead,
}

impl AuditAction {
    /// A short name (the `action` column of the audit table).
    pub fn name(&self) -> &'static str {
        match self {
            AuditAction::Login => "login",
            AuditAction::Logout => "logout",
            AuditAction::Access(r) => match r.right {
                Right::Query => "query",
                Right::Export => "export",
            },
            AuditAction::ConsentRequested => "consent_request",
            AuditAction::ConsentVerified => "consent_verify",
            AuditAction::Admin(_) => "admin",
            AuditAction::AuditRead => "audit_read",
            AuditAction::ChainRead => "chain_read",
        }
    }
}

/// One audit entry (R-AUD-1): who, from which department, did what, on whose data, under which
/// consent, with what outcome; appended to the chain by the node that served the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// When (the serving node's clock).
    pub time: TimestampMs,
    /// The user id (empty for the system administrator's key or an unknown caller).
    pub user: String,
    /// The user's department (or the serving node's, when unknown).
    pub department: String,
    /// What.
    pub action: AuditAction,
    /// The endpoint (method and path).
    pub endpoint: String,
    /// Whose data (national ID), when one person's.
    pub person: Option<String>,
    /// `ok` or the denial code.
    pub outcome: String,
    /// Rows or records returned.
    pub results: u64,
    /// The persons whose records the read returned (R-AUD-3: a search or combined query that
    /// returned a person is in that person's access history).
    pub persons: ReturnedPersons,
    /// Hash of the full request (method, path, query, body).
    pub fingerprint: Hash,
    /// The committed height whose state the decision read (0 when no decision was made).
    pub state_height: u64,
}

/// Most sources named in one audit entry's access request.
pub const MAX_AUDIT_SOURCES: usize = 256;

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn clip(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

impl AuditEntry {
    /// Checks sizes: every text field at most [`MAX_AUDIT_TEXT`] bytes, at most
    /// [`MAX_AUDIT_SOURCES`] sources.
    pub fn validate(&self) -> Result<(), TxError> {
        let long = |s: &str| s.len() > MAX_AUDIT_TEXT;
        let long_opt = |s: &Option<String>| s.as_deref().is_some_and(long);
        if long(&self.user)
            || long(&self.department)
            || long(&self.endpoint)
            || long(&self.outcome)
            || long_opt(&self.person)
        {
            return Err(invalid("audit", "a text field is too long"));
        }
        self.persons.validate()?;
        match &self.action {
            AuditAction::Access(r) => {
                if r.sources.len() > MAX_AUDIT_SOURCES {
                    return Err(invalid(
                        "audit",
                        format!("more than {MAX_AUDIT_SOURCES} sources in one entry"),
                    ));
                }
                if long_opt(&r.user)
                    || long_opt(&r.person)
                    || long_opt(&r.matter)
                    || long_opt(&r.consent)
                    || r.sources.iter().any(|s| long(s))
                {
                    return Err(invalid("audit", "a text field of the request is too long"));
                }
            }
            AuditAction::Admin(what) if long(what) => {
                return Err(invalid("audit", "the administration text is too long"));
            }
            _ => {}
        }
        Ok(())
    }

    /// The entry cut to the chain's limits (every text field to [`MAX_AUDIT_TEXT`] bytes on a
    /// character boundary, the sources to [`MAX_AUDIT_SOURCES`]): what a node queues, so that
    /// no request, however long its path or headers, makes an entry the chain refuses.
    /// `clamped().validate()` is always `Ok`.
    pub fn clamped(mut self) -> AuditEntry {
        let text = |s: &mut String| clip(s, MAX_AUDIT_TEXT);
        let text_opt = |s: &mut Option<String>| {
            if let Some(s) = s {
                clip(s, MAX_AUDIT_TEXT)
            }
        };
        text(&mut self.user);
        text(&mut self.department);
        text(&mut self.endpoint);
        text(&mut self.outcome);
        text_opt(&mut self.person);
        self.persons = self.persons.clamped();
        match &mut self.action {
            AuditAction::Access(r) => {
                r.sources.truncate(MAX_AUDIT_SOURCES);
                r.sources.iter_mut().for_each(text);
                text_opt(&mut r.user);
                text_opt(&mut r.person);
                text_opt(&mut r.matter);
                text_opt(&mut r.consent);
            }
            AuditAction::Admin(what) => text(what),
            _ => {}
        }
        debug_assert!(
            self.validate().is_ok(),
            "invariant: a clamped entry is valid"
        );
        self
    }
}
