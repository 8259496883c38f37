//! Paging of bulk personal-data reads and audit searches (issue 15 finding 7): keyset cursors
//! instead of deep `OFFSET`, and the count of rows one query has read so far.
//!
//! A page ends with `next`, an opaque cursor when the page was full; the following page is
//! asked for with `after=CURSOR` and starts after the last row's key, so no page makes the
//! database skip rows. `page=N` still works while it skips at most [`MAX_OFFSET_ROWS`] rows
//! (400 `page_too_deep` beyond); `page` and `after` together are 400 `bad_query`.
//!
//! A cursor carries the key of the last row and how many rows the query returned before it,
//! authenticated (a keyed blake3 MAC with a key drawn when the node starts) and bound to the
//! user, the endpoint and the query's other parameters: it cannot be forged, edited or used
//! for another query (400 `bad_cursor`); it lapses when the node restarts. The count is what
//! [`Window::right`] compares to `[api] query_rows_without_export`.

use std::sync::OnceLock;

use govchain_chaincode::access::Right;
use serde::{Deserialize, Serialize};

use crate::catalog::param;
use crate::ApiError;

/// Most rows a `page` number may skip; deeper pages are read with `after`.
pub const MAX_OFFSET_ROWS: usize = 10_000;
/// Longest cursor, in characters.
pub const MAX_CURSOR_CHARS: usize = 2_048;
/// Bytes of a cursor's MAC.
const MAC_BYTES: usize = 16;
/// The parameters that move through a query's pages without changing the query.
const PAGING_PARAMS: [&str; 3] = ["page", "page_size", "after"];

/// What a cursor says (inside its MAC).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    /// Rows of the query before the page the cursor starts.
    n: u64,
    /// The key of the last row returned.
    k: Vec<String>,
}

/// Where one page of a query starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Rows of the query before this page.
    pub rows_before: u64,
    /// Rows to skip (`page` mode; 0 after a cursor).
    pub offset: usize,
    /// The key of the last row of the previous page (`after` mode).
    pub after: Option<Vec<String>>,
    /// The page number, in `page` mode.
    pub page: Option<usize>,
    /// Rows per page.
    pub page_size: usize,
    /// The user, endpoint and query the cursors are bound to.
    scope: Vec<u8>,
}

impl Window {
    /// Parses `page`, `page_size` (1..=`max_size`, default `default_size`) and `after` (a
    /// cursor whose key has `key_len` parts) of a request by `user` to `path` with parameters
    /// `ps`.
    pub fn parse(
        ps: &[(String, String)],
        user: &str,
        path: &str,
        default_size: usize,
        max_size: usize,
        key_len: usize,
    ) -> Result<Window, ApiError> {
        let page_size = match param(ps, "page_size") {
            None => default_size,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max_size).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("bad_page", format!("page_size must be 1-{max_size}"))
                })?,
        };
        let scope = scope(user, path, ps);
        match (param(ps, "page"), param(ps, "after")) {
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "bad_query",
                "page or after, not both",
            )),
            (None, Some(token)) => {
                let p = open(token, &scope, key_len)?;
                Ok(Window {
                    rows_before: p.n,
                    offset: 0,
                    after: Some(p.k),
                    page: None,
                    page_size,
                    scope,
                })
            }
            (page, None) => {
                let page = match page {
                    None => 1,
                    Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        ApiError::bad_request("bad_page", "page must be a number from 1")
                    })?,
                };
                let offset = (page - 1).saturating_mul(page_size);
                if offset > MAX_OFFSET_ROWS {
                    return Err(ApiError::bad_request(
                        "page_too_deep",
                        format!(
                            "page {page} would skip {offset} rows, more than {MAX_OFFSET_ROWS}: \
                             read on with after=NEXT (the next cursor of each page)"
                        ),
                    ));
                }
                Ok(Window {
                    rows_before: offset as u64,
                    offset,
                    after: None,
                    page: Some(page),
                    page_size,
                    scope,
                })
            }
        }
    }

    /// The right this page needs: `base`, or [`Right::Export`] when it reaches past the first
    /// `query_rows_without_export` rows of the query.
    pub fn right(&self, base: Right, query_rows_without_export: u64) -> Right {
        let end = self.rows_before.saturating_add(self.page_size as u64);
        if base == Right::Query && end > query_rows_without_export {
            Right::Export
        } else {
            base
        }
    }

    /// The cursor of the page after this one, which returned `returned` rows ending with the
    /// key `last`; `None` when the page was not full (nothing follows).
    pub fn next(&self, returned: usize, last: Option<Vec<String>>) -> Option<String> {
        let k = last.filter(|_| returned >= self.page_size)?;
        let p = Position {
            n: self.rows_before.saturating_add(returned as u64),
            k,
        };
        let body = serde_json::to_vec(&p).ok()?;
        let mut token = mac(&self.scope, &body).to_vec();
        token.extend_from_slice(&body);
        let token = hex::encode(token);
        (token.len() <= MAX_CURSOR_CHARS).then_some(token)
    }
}

/// The bytes a cursor is bound to: user, path and the other parameters in order.
fn scope(user: &str, path: &str, ps: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [user, path] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    for (k, v) in ps
        .iter()
        .filter(|(k, _)| !PAGING_PARAMS.contains(&k.as_str()))
    {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// This node's cursor key, drawn once per process.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // Without randomness no cursor can be trusted: fail loudly at the first use.
        getrandom::fill(&mut k).expect("invariant: the OS provides randomness");
        k
    })
}

fn mac(scope: &[u8], body: &[u8]) -> [u8; MAC_BYTES] {
    let mut h = blake3::Hasher::new_keyed(key());
    h.update(&(scope.len() as u64).to_le_bytes());
    h.update(scope);
    h.update(body);
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&h.finalize().as_bytes()[..MAC_BYTES]);
    out
}

fn bad_cursor(why: &str) -> ApiError {
    ApiError::bad_request(
        "bad_cursor",
        format!("after: {why}; use the next cursor of this query's previous page, unchanged"),
    )
}

/// Checks and reads a cursor.
fn open(token: &str, scope: &[u8], key_len: usize) -> Result<Position, ApiError> {
    if token.len() > MAX_CURSOR_CHARS {
        return Err(bad_cursor("too long"));
    }
    let bytes = hex::decode(token).map_err(|_| bad_cursor("not a cursor"))?;
    if bytes.len() <= MAC_BYTES {
        return Err(bad_cursor("not a cursor"));
    }
    let (tag, body) = bytes.split_at(MAC_BYTES);
    let want = mac(scope, body);
    // Constant time: the comparison does not stop at the first differing byte.
    if tag.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(bad_cursor(
            "not issued by this node for this user and query (or the node restarted)",
        ));
    }
    let p: Position = serde_json::from_slice(body).map_err(|_| bad_cursor("not a cursor"))?;
    if p.k.len() != key_len {
        return Err(bad_cursor("not a cursor of this endpoint"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn window(pairs: &[(&str, &str)]) -> Result<Window, &'static str> {
        Window::parse(&ps(pairs), "li", "/api/v1/records", 20, 100, 1).map_err(|e| e.code)
    }

    /// Issue 15 finding 7: a full page's cursor leads to the next page with the count of rows
    /// before it; a malformed, edited, foreign or over-long cursor is 400 `bad_cursor`.
    #[test]
    fn finding_7_paging_cursors_round_trip_and_malformed_ones_are_refused() {
        let q = [("source", "gaj.hjxx"), ("page_size", "2")];
        let first = window(&q).unwrap();
        assert_eq!(
            (first.rows_before, first.offset, first.after.clone()),
            (0, 0, None)
        );
        assert_eq!(
            first.next(1, Some(vec!["k1".into()])),
            None,
            "not full: no next"
        );
        let token = first.next(2, Some(vec!["k2".into()])).unwrap();
        let next = window(&[
            ("source", "gaj.hjxx"),
            ("page_size", "5"),
            ("after", &token),
        ])
        .unwrap();
        assert_eq!(next.after, Some(vec!["k2".to_string()]));
        assert_eq!((next.rows_before, next.offset, next.page_size), (2, 0, 5));
        let third = next.next(5, Some(vec!["k7".into()])).unwrap();
        let w = window(&[("source", "gaj.hjxx"), ("after", &third)]).unwrap();
        assert_eq!(w.rows_before, 7);

        // Refused: not hex, too short, edited, for another query, user or endpoint, too long,
        // and with page.
        let mut edited = token.clone().into_bytes();
        let last = edited.len() - 3;
        edited[last] = if edited[last] == b'0' { b'1' } else { b'0' };
        let edited = String::from_utf8(edited).unwrap();
        let bad = |t: &str, other: &[(&str, &str)]| {
            let mut p = vec![("after", t)];
            p.extend_from_slice(other);
            window(&p)
        };
        let src = [("source", "gaj.hjxx")];
        for t in ["zz", "", "00", &"ab".repeat(MAC_BYTES), &edited] {
            assert_eq!(bad(t, &src), Err("bad_cursor"), "{t}");
        }
        assert_eq!(bad(&token, &[("source", "mzj.dbjz")]), Err("bad_cursor"));
        assert_eq!(
            bad(&token, &[("source", "gaj.hjxx"), ("eq", "xb:男")]),
            Err("bad_cursor")
        );
        let as_wang = Window::parse(
            &ps(&[("source", "gaj.hjxx"), ("after", &token)]),
            "wang",
            "/api/v1/records",
            20,
            100,
            1,
        );
        assert_eq!(as_wang.map_err(|e| e.code), Err("bad_cursor"));
        let other_endpoint = Window::parse(
            &ps(&[("source", "gaj.hjxx"), ("after", &token)]),
            "li",
            "/api/v1/records/export",
            20,
            100,
            1,
        );
        assert_eq!(other_endpoint.map_err(|e| e.code), Err("bad_cursor"));
        let two_part = Window::parse(
            &ps(&[("source", "gaj.hjxx"), ("after", &token)]),
            "li",
            "/api/v1/records",
            20,
            100,
            2,
        );
        assert_eq!(two_part.map_err(|e| e.code), Err("bad_cursor"));
        let long = "a".repeat(MAX_CURSOR_CHARS + 1);
        assert_eq!(bad(&long, &src), Err("bad_cursor"));
        assert_eq!(
            bad(&token, &[("source", "gaj.hjxx"), ("page", "2")]),
            Err("bad_query")
        );
    }

    /// Issue 15 finding 7: `page` skips at most [`MAX_OFFSET_ROWS`] rows; the export right is
    /// needed exactly when a page reaches past the query-right rows.
    #[test]
    fn finding_7_page_depth_and_the_export_threshold_hold_at_their_limits() {
        let at = (MAX_OFFSET_ROWS / 100 + 1).to_string();
        let w = window(&[("page", &at), ("page_size", "100")]).unwrap();
        assert_eq!(w.offset, MAX_OFFSET_ROWS);
        let over = (MAX_OFFSET_ROWS / 100 + 2).to_string();
        assert_eq!(
            window(&[("page", &over), ("page_size", "100")]),
            Err("page_too_deep")
        );
        for bad in ["0", "-1", "x"] {
            assert_eq!(window(&[("page", bad)]), Err("bad_page"));
        }
        assert_eq!(window(&[("page_size", "101")]), Err("bad_page"));
        assert_eq!(window(&[("page_size", "0")]), Err("bad_page"));
        let page = |n: &str| window(&[("page", n), ("page_size", "10")]).unwrap();
        assert_eq!(
            page("10").right(Right::Query, 100),
            Right::Query,
            "rows 91-100"
        );
        assert_eq!(
            page("11").right(Right::Query, 100),
            Right::Export,
            "rows 101-110"
        );
        assert_eq!(page("11").right(Right::Export, 100), Right::Export);
    }
}
