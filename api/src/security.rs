//! The node-local side of security (R-SEC-1, R-SEC-5, R-AUD-1): password hashes (argon2, in the
//! node's store, never on chain), sessions, login lockout, resident SMS codes, and the audit
//! entries waiting to go on chain. What is shared between nodes — users, grants, consents, the
//! audit log — is on chain ([`govchain_chaincode::access`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use govchain_chaincode::access::AuditEntry;

use crate::audit_queue::AuditQueue;
use govchain_ledger::store::CF_META;
use govchain_ledger::{ChainId, Keypair, SignedTx, Store, TimestampMs, TxBody};

pub use crate::lockout::{LOCKOUT_MS, MAX_LOGIN_FAILURES};
/// How long an SMS code is valid.
pub const CODE_TTL_MS: u64 = 5 * 60 * 1000;
/// Wrong codes allowed per code.
pub const MAX_CODE_ATTEMPTS: u32 = 5;
/// Codes sent per person per hour.
pub const CODES_PER_PERSON_PER_HOUR: usize = 5;
/// Codes requested per user per hour.
pub const CODES_PER_USER_PER_HOUR: usize = 30;
/// Shortest and longest password.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Random bytes as hex (tokens, request ids).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

fn password_key(user: &str) -> Vec<u8> {
    [b"local/password/", user.as_bytes()].concat()
}

/// Checks a new password: 8–128 characters with a letter and a digit.
pub fn check_password(p: &str) -> Result<(), &'static str> {
    let n = p.chars().count();
    if !PASSWORD_CHARS.contains(&n) {
        return Err("a password has 8-128 characters");
    }
    if !p.chars().any(char::is_alphabetic) || !p.chars().any(|c| c.is_ascii_digit()) {
        return Err("a password needs a letter and a digit");
    }
    Ok(())
}

/// Hashes a password (argon2id, random salt; slow on purpose: run off the async threads).
pub fn hash_password(p: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source is available");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(p.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

/// Whether `p` matches the PHC string `phc`.
pub fn verify_password(phc: &str, p: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A logged-in staff member.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user id.
    pub user: String,
    /// When it ends (Unix ms).
    pub expires_at: u64,
}

/// A pending SMS code.
#[derive(Debug, Clone)]
pub struct PendingCode {
    /// blake3 of the request id and the code (the code itself is never kept).
    pub hash: [u8; 32],
    /// The person.
    pub person: String,
    /// The matter.
    pub matter: String,
    /// The user who asked.
    pub user: String,
    /// Why.
    pub purpose: String,
    /// Last four digits of the phone the code went to.
    pub phone_tail: String,
    /// When it stops being valid.
    pub expires_at: u64,
    /// Wrong codes so far.
    pub attempts: u32,
    /// Set once the code was used.
    pub used: bool,
}

/// Hash of a code under its request id.
pub fn code_hash(request: &str, code: &str) -> [u8; 32] {
    *blake3::hash(format!("{request}\n{code}").as_bytes()).as_bytes()
}

/// Sends resident codes: an HTTP gateway or a development file.
#[derive(Debug, Clone)]
pub enum Notifier {
    /// POSTs `{"phone", "text"}` to the URL.
    Http(String),
    /// Appends `{"phone", "person", "code", "text"}` as one JSON line.
    File(PathBuf),
}

impl Notifier {
    /// Parses `http(s)://…` or `file:PATH`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(Notifier::Http(s.to_string()))
        } else if let Some(p) = s.strip_prefix("file:") {
            Ok(Notifier::File(PathBuf::from(p)))
        } else {
            Err(format!(
                "api.sms {s:?}: expected http://…, https://… or file:PATH"
            ))
        }
    }

    /// Sends `text` (carrying `code`, see [`consent_sms`]) to `phone`.
    pub async fn send(
        &self,
        phone: &str,
        person: &str,
        code: &str,
        text: &str,
    ) -> Result<(), String> {
        match self {
            Notifier::File(path) => {
                let line = serde_json::json!({"phone": phone, "person": person, "code": code, "text": text});
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    writeln!(f, "{line}")
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("writing the SMS sink: {e}"))
            }
            Notifier::Http(url) => {
                let r = reqwest::Client::new()
                    .post(url)
                    .timeout(Duration::from_secs(10))
                    .json(&serde_json::json!({"phone": phone, "text": text}))
                    .send()
                    .await
                    .map_err(|e| format!("SMS gateway: {e}"))?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("SMS gateway answered {}", r.status()))
                }
            }
        }
    }
}

/// The text of a consent code: who asks (the department's name), for what (the matter's
/// name), the code and how long it is valid, so the resident knows what they agree to.
pub fn consent_sms(department: &str, matter: &str, code: &str) -> String {
    let minutes = CODE_TTL_MS / 60_000;
    format!(
        "【govchain】{department} requests your consent to read your data for {matter}; \
         code {code}, valid {minutes} minutes. Ignore this message if you did not ask for it."
    )
}

/// Signs the node's own transactions (consents, audit batches) with unique nonces.
#[derive(Debug)]
pub struct NodeSigner {
    key: Keypair,
    chain_id: ChainId,
    next_nonce: AtomicU64,
    /// Audiences of the peer nodes this node signs requests to, by base URL.
    peers: Mutex<HashMap<String, crate::auth::Audience>>,
}

/// Most peer audiences a node remembers (its `[api] sync_peers`; one per department).
pub const MAX_KNOWN_PEERS: usize = 256;

impl NodeSigner {
    /// A signer whose nonces start at the clock in microseconds, so they never repeat across
    /// restarts.
    pub fn new(key: Keypair, chain_id: ChainId, now_ms: u64) -> Self {
        Self {
            key,
            chain_id,
            next_nonce: AtomicU64::new(now_ms.saturating_mul(1000)),
            peers: Mutex::default(),
        }
    }

    /// The audience learnt for the peer node at `base`.
    pub fn peer(&self, base: &str) -> Option<crate::auth::Audience> {
        lock(&self.peers).get(base).cloned()
    }

    /// Remembers a peer's audience (at most [`MAX_KNOWN_PEERS`]; beyond, it is asked again).
    pub fn learn_peer(&self, base: &str, a: crate::auth::Audience) {
        let mut peers = lock(&self.peers);
        if peers.len() < MAX_KNOWN_PEERS || peers.contains_key(base) {
            peers.insert(base.to_string(), a);
        }
    }

    /// Forgets a peer's audience (it refused a request: its key may have changed).
    pub fn forget_peer(&self, base: &str) {
        lock(&self.peers).remove(base);
    }

    /// The headers of an API request to another node signed with this node's key; a nonce
    /// keeps two equal requests in one millisecond (two users asking for the same file) from
    /// looking like a replay.
    pub fn sign_request(
        &self,
        to: &crate::auth::Audience,
        method: &str,
        path_and_query: &str,
        time_ms: u64,
        body: &[u8],
    ) -> [(&'static str, String); 4] {
        let nonce = self.next_nonce.fetch_add(1, Ordering::Relaxed).to_string();
        crate::auth::sign_request_with_nonce(
            &self.key,
            to,
            method,
            path_and_query,
            time_ms,
            &nonce,
            body,
        )
    }

    /// A signed transaction of `payload`.
    pub fn sign(&self, payload: Vec<u8>, now: TimestampMs) -> SignedTx {
        let nonce = self.next_nonce.fetch_add(1, Ordering::Relaxed);
        TxBody {
            chain_id: self.chain_id.clone(),
            signer: self.key.public(),
            nonce,
            created_at: now,
            payload,
        }
        .sign(&self.key)
    }
}

/// Node-local security state shared by the handlers.
#[derive(Debug)]
pub struct Security {
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Where codes go.
    pub notifier: Notifier,
    /// The node's signer (None: the node records no consents and appends no audit).
    pub signer: Option<NodeSigner>,
    /// Password hashing is slow on purpose (argon2id, ~20 ms): at most one per core runs at
    /// a time, so a burst of logins queues instead of starving every other request.
    hashing: tokio::sync::Semaphore,
    sessions: Mutex<HashMap<String, Session>>,
    /// Login lockout and the per-address throttle.
    pub logins: crate::lockout::Lockout,
    codes: Mutex<HashMap<String, PendingCode>>,
    sent: Mutex<Vec<(u64, String, String)>>,
    /// Audit entries waiting for the chain.
    pub audit: AuditQueue,
}

/// Why a code request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimited {
    /// Too many codes for this person this hour.
    Person,
    /// Too many codes asked by this user this hour.
    User,
}

/// Why a code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// No such request (or not this user's).
    Unknown,
    /// Past its five minutes.
    Expired,
    /// Already used.
    Used,
    /// Five wrong codes: this request is dead.
    TooManyAttempts,
    /// Wrong code; this many attempts are left.
    Wrong(u32),
}

impl Security {
    /// New state; with `outbox`, audit entries queued before a crash are loaded back (and
    /// every new one is written there before the request is answered).
    pub fn new(
        session_ttl: Duration,
        notifier: Notifier,
        signer: Option<NodeSigner>,
        outbox: Option<Store>,
    ) -> Self {
        Self::with_audit_limit(
            session_ttl,
            notifier,
            signer,
            outbox,
            crate::audit_queue::DEFAULT_AUDIT_BACKLOG_LIMIT,
        )
    }

    /// [`Self::new`] with the audit backlog above which personal-data reads are refused.
    pub fn with_audit_limit(
        session_ttl: Duration,
        notifier: Notifier,
        signer: Option<NodeSigner>,
        outbox: Option<Store>,
        audit_backlog_limit: usize,
    ) -> Self {
        Self {
            audit: AuditQueue::new(outbox, audit_backlog_limit),
            session_ttl,
            notifier,
            signer,
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            sessions: Mutex::default(),
            logins: crate::lockout::Lockout::default(),
            codes: Mutex::default(),
            sent: Mutex::default(),
        }
    }

    /// Runs a password hash or check off the async threads, one per core at most.
    pub async fn hash_job<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let _permit = self.hashing.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| e.to_string())
    }

    /// The stored password hash of `user`.
    pub fn password_hash(store: &Store, user: &str) -> Option<String> {
        store
            .get_raw(CF_META, &password_key(user))
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }

    /// Stores a password hash for `user` (node-local).
    pub fn set_password_hash(store: &Store, user: &str, phc: &str) -> Result<(), String> {
        store
            .put_raw(CF_META, &password_key(user), phc.as_bytes())
            .map_err(|e| e.to_string())
    }

    /// Opens a session for `user` (whose password was just checked).
    pub fn open_session(&self, user: &str, now: u64) -> (String, Session) {
        let token = random_hex(32);
        let s = Session {
            user: user.to_string(),
            expires_at: now + self.session_ttl.as_millis() as u64,
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires_at > now);
        sessions.insert(token.clone(), s.clone());
        (token, s)
    }

    /// The session of `token` (expired ones are returned too: the caller tells them apart).
    pub fn session(&self, token: &str) -> Option<Session> {
        lock(&self.sessions).get(token).cloned()
    }

    /// Ends a session.
    pub fn logout(&self, token: &str) -> bool {
        lock(&self.sessions).remove(token).is_some()
    }

    /// Ends every session of `user` (password changed, user disabled).
    pub fn end_sessions_of(&self, user: &str) {
        lock(&self.sessions).retain(|_, s| s.user != user);
    }

    /// Counts a code request of `user` for `person` against the hourly limits, before
    /// anything is looked up: a refused request reads nothing, and an accepted one counts
    /// whether or not a code is then sent (so asking cannot probe who has a number on file).
    pub fn reserve_code(&self, person: &str, user: &str, now: u64) -> Result<(), RateLimited> {
        let hour = 3600 * 1000;
        let mut sent = lock(&self.sent);
        sent.retain(|(t, _, _)| now < t + hour);
        if sent.iter().filter(|(_, p, _)| p == person).count() >= CODES_PER_PERSON_PER_HOUR {
            return Err(RateLimited::Person);
        }
        if sent.iter().filter(|(_, _, u)| u == user).count() >= CODES_PER_USER_PER_HOUR {
            return Err(RateLimited::User);
        }
        sent.push((now, person.to_string(), user.to_string()));
        Ok(())
    }

    /// Registers a code request already counted by [`Security::reserve_code`]; returns the
    /// request id and the code.
    pub fn new_code(&self, mut pending: PendingCode, now: u64) -> (String, String) {
        let mut n = [0u8; 4];
        getrandom::fill(&mut n).expect("the OS random source is available");
        let code = format!("{:06}", u32::from_le_bytes(n) % 1_000_000);
        let request = random_hex(16);
        pending.hash = code_hash(&request, &code);
        pending.expires_at = now + CODE_TTL_MS;
        let mut codes = lock(&self.codes);
        codes.retain(|_, c| now < c.expires_at + CODE_TTL_MS);
        codes.insert(request.clone(), pending);
        (request, code)
    }

    /// Checks a code for `user`; on success marks it used and returns the request.
    pub fn check_code(
        &self,
        request: &str,
        user: &str,
        code: &str,
        now: u64,
    ) -> Result<PendingCode, CodeError> {
        let mut codes = lock(&self.codes);
        let c = codes
            .get_mut(request)
            .filter(|c| c.user == user)
            .ok_or(CodeError::Unknown)?;
        if c.used {
            return Err(CodeError::Used);
        }
        if c.attempts >= MAX_CODE_ATTEMPTS {
            return Err(CodeError::TooManyAttempts);
        }
        if now >= c.expires_at {
            return Err(CodeError::Expired);
        }
        if code_hash(request, code) != c.hash {
            c.attempts += 1;
            return Err(if c.attempts >= MAX_CODE_ATTEMPTS {
                CodeError::TooManyAttempts
            } else {
                CodeError::Wrong(MAX_CODE_ATTEMPTS - c.attempts)
            });
        }
        c.used = true;
        Ok(c.clone())
    }

    /// Queues an audit entry for the next block (see [`AuditQueue::push`]).
    pub fn audit(&self, e: AuditEntry) {
        self.audit.push(e);
    }
}

/// The shared handle.
pub type SecurityRef = Arc<Security>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sec() -> Security {
        Security::new(
            Duration::from_secs(60),
            Notifier::File("/dev/null".into()),
            None,
            None,
        )
    }

    fn pending(person: &str, user: &str) -> PendingCode {
        PendingCode {
            hash: [0; 32],
            person: person.into(),
            matter: "m".into(),
            user: user.into(),
            purpose: "p".into(),
            phone_tail: "1234".into(),
            expires_at: 0,
            attempts: 0,
            used: false,
        }
    }

    #[test]
    fn a_code_is_six_digits_used_once_for_its_user_within_five_minutes() {
        let s = sec();
        let (req, code) = s.new_code(pending("p1", "u"), 0);
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            s.check_code(&req, "other", &code, 1).unwrap_err(),
            CodeError::Unknown
        );
        assert_eq!(
            s.check_code(&req, "u", &code, CODE_TTL_MS).unwrap_err(),
            CodeError::Expired
        );
        assert_eq!(s.check_code(&req, "u", &code, 1).unwrap().person, "p1");
        assert_eq!(
            s.check_code(&req, "u", &code, 2).unwrap_err(),
            CodeError::Used
        );
    }

    #[test]
    fn five_wrong_codes_kill_the_request_even_for_the_right_code() {
        let s = sec();
        let (req, code) = s.new_code(pending("p1", "u"), 0);
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for left in (1..MAX_CODE_ATTEMPTS).rev() {
            assert_eq!(
                s.check_code(&req, "u", wrong, 1).unwrap_err(),
                CodeError::Wrong(left)
            );
        }
        assert_eq!(
            s.check_code(&req, "u", wrong, 1).unwrap_err(),
            CodeError::TooManyAttempts
        );
        assert_eq!(
            s.check_code(&req, "u", &code, 1).unwrap_err(),
            CodeError::TooManyAttempts
        );
    }

    #[test]
    fn codes_are_rate_limited_per_person_and_per_user() {
        let s = sec();
        for i in 0..CODES_PER_PERSON_PER_HOUR {
            s.reserve_code("p1", &format!("u{i}"), 0).unwrap();
        }
        assert_eq!(
            s.reserve_code("p1", "x", 1).unwrap_err(),
            RateLimited::Person
        );
        // An hour later the person may get codes again.
        s.reserve_code("p1", "x", 3600 * 1000).unwrap();
        for i in 0..CODES_PER_USER_PER_HOUR - 1 {
            s.reserve_code(&format!("q{i}"), "x", 3600 * 1000).unwrap();
        }
        assert_eq!(
            s.reserve_code("z", "x", 3600 * 1000).unwrap_err(),
            RateLimited::User
        );
    }

    /// Finding 6 of issue 15 (R-SEC-5): the resident reads who asks, for what, and for how
    /// long the code is valid.
    #[test]
    fn finding_6_the_sms_names_the_department_the_matter_and_the_validity() {
        let text = consent_sms("市公安局", "户籍证明", "123456");
        for part in [
            "【govchain】",
            "市公安局",
            "户籍证明",
            "code 123456",
            "valid 5 minutes",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
        assert_eq!(CODE_TTL_MS, 5 * 60_000, "the text states the real validity");
    }

    #[test]
    fn passwords_hash_with_a_salt_and_verify_only_the_same_password() {
        assert!(check_password("short1").is_err());
        assert!(check_password("onlyletters").is_err());
        assert!(check_password("12345678").is_err());
        assert!(check_password("密码abc12345").is_ok());
        let a = hash_password("secret123");
        let b = hash_password("secret123");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password(&a, "secret123"));
        assert!(!verify_password(&a, "secret124"));
        assert!(!verify_password("not a hash", "secret123"));
    }
}
