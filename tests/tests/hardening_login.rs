//! Issue 15, finding 3, through a real node (R-SEC-1, R-AUD-1): concurrent wrong-password
//! logins cannot get past the lockout, failed logins are throttled per client address (429 with
//! Retry-After, audited on chain), user ids longer than the chain's limit and login bodies over
//! their limit are refused before anything is counted or hashed.
//!
//! Clients bind distinct loopback source addresses (127.0.0.x), so each part of a test has its
//! own address budget.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use govchain_api::lockout::MAX_LOGIN_FAILURES_PER_ADDRESS;
use govchain_api::security::MAX_LOGIN_FAILURES;
use govchain_api::session::LOGIN_MAX_BODY_BYTES;
use govchain_chaincode::access::{Role, User, MAX_USER_ID_LEN};
use govchain_chaincode::business::PutMode;
use govchain_chaincode::TxKind;
use govchain_node::client::{sign_tx, Client};
use govchain_tests::{error_code, Net, NodeProc};
use serde_json::{json, Value};

const PASSWORD: &str = "Secret-2026";

/// A node of a one-department cluster, its client and a runtime.
struct World {
    net: Net,
    node: NodeProc,
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl World {
    fn start() -> World {
        let net = Net::generate(1);
        let node = NodeProc::start(&net, 1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = node.client();
        World {
            net,
            node,
            rt,
            client,
        }
    }

    /// Puts staff user `id` on chain with [`PASSWORD`] on this node.
    fn staff_with_password(&self, id: &str) {
        let admin = self.net.key("sysadmin");
        let tx = sign_tx(
            &admin,
            &self.net.genesis.chain_id,
            &TxKind::PutUsers {
                mode: PutMode::Add,
                users: vec![User {
                    id: id.into(),
                    name: format!("测试{id}"),
                    department: "gaj".into(),
                    level: 1,
                    roles: vec![Role::Staff],
                    disabled: false,
                    key: None,
                }],
            },
        );
        let (s, b) = self.rt.block_on(self.client.submit_status(&tx)).unwrap();
        assert_eq!(s, 200, "{b}");
        let (s, b) = self
            .rt
            .block_on(self.client.call_signed(
                "PUT",
                &format!("users/{id}/password"),
                &admin,
                Some(&json!({"password": PASSWORD})),
            ))
            .unwrap();
        assert_eq!(s, 200, "{b}");
    }

    /// An HTTP client whose connections come from `from` (a loopback address).
    fn from(&self, from: &str) -> Login {
        let ip: IpAddr = from.parse().unwrap();
        Login {
            http: govchain_api::tls::client_builder(self.node.ca.as_deref())
                .unwrap()
                .local_address(ip)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            url: format!("{}/api/v1/login", self.node.url),
        }
    }
}

/// Logins from one source address.
#[derive(Clone)]
struct Login {
    http: reqwest::Client,
    url: String,
}

/// A login's status, error code and Retry-After.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    retry_after: Option<u64>,
}

impl Login {
    async fn raw(&self, body: Vec<u8>) -> Answer {
        let r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("login request");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
        Answer {
            status,
            code: error_code(&v).to_string(),
            retry_after,
        }
    }

    async fn login(&self, user: &str, password: &str) -> Answer {
        self.raw(serde_json::to_vec(&json!({"user": user, "password": password})).unwrap())
            .await
    }
}

/// Finding 3: fifty concurrent wrong-password logins for one user check at most
/// MAX_LOGIN_FAILURES passwords (`bad_credentials`); the rest are refused as `locked` before
/// any hash runs, and then the right password is refused too, from any address.
#[test]
fn finding_3_concurrent_wrong_logins_cannot_bypass_the_lockout() {
    const CONCURRENT: usize = 50;
    let w = World::start();
    w.staff_with_password("li");
    let attacker = w.from("127.0.0.2");
    let answers: Vec<Answer> = w.rt.block_on(async {
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let a = attacker.clone();
                tokio::spawn(async move { a.login("li", &format!("Wrong-{i:04}")).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let count = |status: u16, code: &str| {
        answers
            .iter()
            .filter(|a| a.status == status && a.code == code)
            .count()
    };
    let checked = count(401, "bad_credentials");
    let locked = count(403, "locked");
    assert_eq!(
        checked, MAX_LOGIN_FAILURES as usize,
        "passwords checked: {answers:?}"
    );
    assert_eq!(checked + locked, CONCURRENT, "{answers:?}");
    assert!(answers
        .iter()
        .filter(|a| a.code == "locked")
        .all(|a| a.retry_after.is_some()));
    // Now even the right password is refused, from the attacker's address or another one.
    for from in ["127.0.0.2", "127.0.0.3"] {
        let a = w.rt.block_on(w.from(from).login("li", PASSWORD));
        assert_eq!((a.status, a.code.as_str()), (403, "locked"), "{a:?}");
        assert!(
            a.retry_after
                .is_some_and(|s| s <= govchain_api::security::LOCKOUT_MS / 1000),
            "{a:?}"
        );
    }
}

/// Finding 3: failed logins are throttled per client address — MAX_LOGIN_FAILURES_PER_ADDRESS
/// failures (of unknown ids: they count against the address) and the next login from that
/// address is 429 with Retry-After, audited on chain, while another address still logs in; a
/// user id of MAX_USER_ID_LEN characters is checked, one more is 400; a body of
/// LOGIN_MAX_BODY_BYTES is read, one byte more is 413.
#[test]
fn finding_3_login_throttle_per_address_id_cap_and_body_limit() {
    let w = World::start();
    w.staff_with_password("zhao");
    let noisy = w.from("127.0.0.4");
    for i in 0..MAX_LOGIN_FAILURES_PER_ADDRESS {
        let a =
            w.rt.block_on(noisy.login(&format!("ghost{i}"), "Wrong-2026"));
        assert_eq!(
            (a.status, a.code.as_str()),
            (401, "bad_credentials"),
            "{i}: {a:?}"
        );
    }
    for (user, password) in [("ghost", "Wrong-2026"), ("zhao", PASSWORD)] {
        let a = w.rt.block_on(noisy.login(user, password));
        assert_eq!(
            (a.status, a.code.as_str()),
            (429, "too_many_logins"),
            "{a:?}"
        );
        assert!(
            a.retry_after
                .is_some_and(|s| (1..=govchain_api::lockout::ADDRESS_WINDOW_MS / 1000).contains(&s)),
            "{a:?}"
        );
    }
    let other = w.from("127.0.0.5");
    let a = w.rt.block_on(other.login("zhao", PASSWORD));
    assert_eq!(a.status, 200, "another address is not throttled: {a:?}");

    // The user id cap: the chain's limit is checked, one more character is refused unread.
    let edge = w.from("127.0.0.6");
    let a =
        w.rt.block_on(edge.login(&"a".repeat(MAX_USER_ID_LEN), "Wrong-2026"));
    assert_eq!(
        (a.status, a.code.as_str()),
        (401, "bad_credentials"),
        "{a:?}"
    );
    let a =
        w.rt.block_on(edge.login(&"a".repeat(MAX_USER_ID_LEN + 1), "Wrong-2026"));
    assert_eq!((a.status, a.code.as_str()), (400, "bad_user_id"), "{a:?}");
    let a = w.rt.block_on(edge.login("bad id", "Wrong-2026"));
    assert_eq!((a.status, a.code.as_str()), (400, "bad_user_id"), "{a:?}");

    // The body limit, at the limit and one byte over.
    let body = |len: usize| {
        let (head, tail) = (r#"{"user":"nobody","password":""#, r#""}"#);
        let pad = "x".repeat(len - head.len() - tail.len());
        let b = format!("{head}{pad}{tail}").into_bytes();
        assert_eq!(b.len(), len);
        b
    };
    let a = w.rt.block_on(edge.raw(body(LOGIN_MAX_BODY_BYTES)));
    assert_eq!(
        (a.status, a.code.as_str()),
        (401, "bad_credentials"),
        "{a:?}"
    );
    let a = w.rt.block_on(edge.raw(body(LOGIN_MAX_BODY_BYTES + 1)));
    assert_eq!((a.status, a.code.as_str()), (413, "too_large"), "{a:?}");

    // The throttled logins are on chain like every refused login.
    let admin = w.net.key("sysadmin");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) =
            w.rt.block_on(
                w.client
                    .get_signed("audit?action=login&outcome=too_many_logins", &admin),
            )
            .unwrap();
        assert_eq!(s, 200, "{b}");
        let n = b["entries"].as_array().map_or(0, Vec::len);
        if n == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "throttled logins not audited on chain: {b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
