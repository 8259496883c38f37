//! Which one person a query names (R-SEC-5, issue 15 finding 4): a search for a whole national
//! ID, or a combined query (records, exports, saved queries) with an equality on a national-ID
//! field — or a range on one so narrow it holds a single ID. Such a query reads one person's
//! data and needs that person's consent exactly as the person file does; its handler passes the
//! person to [`crate::access::Caller::decide`].
//!
//! A range on a national-ID field that holds a few IDs but more than one would name a few
//! persons at once without consent: it is refused unless it spans at least
//! [`MIN_PERSON_ID_RANGE`] ID prefixes (one region's sequence numbers of one birth day).
//! Nothing here does IO.

use std::collections::BTreeSet;

use govchain_chaincode::catalog::{DataSource, FieldType};
use govchain_chaincode::person::{check_char, PersonId};

use crate::ApiError;

/// Length of a national ID without its check character.
const PREFIX_DIGITS: usize = 17;

/// Fewest 17-digit ID prefixes a range on a national-ID field must span, unless it spans
/// exactly one (then it names that person). 1,000 prefixes are the sequence numbers of one
/// region and one birth day.
pub const MIN_PERSON_ID_RANGE: u64 = 1_000;

/// The person a fuzzy search names: `needle` (normalized) is a whole valid national ID.
pub fn in_search(needle: &str) -> Option<PersonId> {
    PersonId::parse(needle).ok()
}

/// The one person the conditions `(op, field, value)` of a query over `source` name (`op` is
/// `=`, `>=` or `<=`), if any. 400 `too_many_persons` when they name two; 400
/// `narrow_id_range` for a range on a national-ID field spanning more than one but fewer than
/// [`MIN_PERSON_ID_RANGE`] IDs.
pub fn in_conditions(
    source: &DataSource,
    conds: &[(&'static str, String, String)],
) -> Result<Option<PersonId>, ApiError> {
    let mut named = BTreeSet::new();
    let id_fields: BTreeSet<&str> = conds
        .iter()
        .filter(|(_, f, _)| {
            source
                .field(f)
                .is_some_and(|d| matches!(d.ty, FieldType::PersonId))
        })
        .map(|(_, f, _)| f.as_str())
        .collect();
    for field in id_fields {
        let on = |op: &'static str| {
            conds
                .iter()
                .filter(move |(o, f, _)| *o == op && f == field)
                .map(|(.., v)| v.as_str())
        };
        for v in on("=") {
            // A value that is no valid ID matches no record (records are validated).
            if let Ok(p) = PersonId::parse(v) {
                named.insert(p);
            }
        }
        // The tightest bounds of the field's ranges.
        let lo = on(">=").filter_map(lower_prefix).max();
        let hi = on("<=").filter_map(upper_prefix).min();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if hi < lo {
                continue; // empty range
            }
            let span = hi - lo + 1;
            if span == 1 {
                let digits = format!("{lo:017}");
                let id = format!("{digits}{}", check_char(digits.as_bytes()));
                match PersonId::parse(&id) {
                    Ok(p) => {
                        named.insert(p);
                    }
                    Err(_) => continue, // no ID lies in the range
                }
            } else if span < MIN_PERSON_ID_RANGE {
                return Err(ApiError::bad_request(
                    "narrow_id_range",
                    format!(
                        "the range on {field} spans {span} national IDs: name one person with \
                         eq (and the person's consent) or span at least {MIN_PERSON_ID_RANGE}"
                    ),
                ));
            }
        }
    }
    if named.len() > 1 {
        return Err(ApiError::bad_request(
            "too_many_persons",
            "a query may name one person (each needs their own consent)",
        ));
    }
    Ok(named.into_iter().next())
}

/// The leading digits of `v` (at most 17), or `None` when it starts with no digit.
fn digits(v: &str) -> Option<&str> {
    let n = v
        .bytes()
        .take(PREFIX_DIGITS)
        .take_while(u8::is_ascii_digit)
        .count();
    (n > 0).then(|| &v[..n])
}

/// The smallest 17-digit prefix an ID `>= v` can have (an over-estimate of the range is safe:
/// a lower bound only ever widens it). `None`: no bound worth counting (non-digit start).
fn lower_prefix(v: &str) -> Option<u64> {
    let d = digits(v)?;
    // Shorter bounds pad with zeros ("1101" ≤ "11010000000000000…").
    format!("{d:0<17}").parse().ok()
}

/// The largest 17-digit prefix an ID `<= v` can have. "1102" bounds IDs below
/// "11020000000000000", i.e. prefixes up to "11019999999999999"; a bound of 17 digits or more
/// keeps its prefix.
fn upper_prefix(v: &str) -> Option<u64> {
    let d = digits(v)?;
    let full: u64 = format!("{d:0<17}").parse().ok()?;
    if d.len() == PREFIX_DIGITS {
        Some(full)
    } else if v.len() > d.len() {
        // A non-digit after fewer than 17 digits sorts above every digit: IDs with the
        // padded prefix and above, up to the digits followed by nines.
        format!("{d:9<17}").parse().ok()
    } else {
        full.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use govchain_chaincode::catalog::{FieldDef, ShareType};

    fn source() -> DataSource {
        let f = |name: &str, ty: FieldType| FieldDef {
            name: name.into(),
            label: name.into(),
            ty,
            required: false,
        };
        DataSource {
            id: "gaj.hjxx".into(),
            name: "户籍".into(),
            department: "gaj".into(),
            share_type: ShareType::Conditional,
            person_field: Some("sfzh".into()),
            record_key_field: "sfzh".into(),
            fields: vec![
                f("sfzh", FieldType::PersonId),
                f("po_sfzh", FieldType::PersonId),
                f("xm", FieldType::Text),
            ],
        }
    }

    const P: &str = "11010119900307803X";
    const Q: &str = "110101199003077731";

    fn c(op: &'static str, field: &str, v: &str) -> (&'static str, String, String) {
        (op, field.into(), v.into())
    }

    fn named(conds: &[(&'static str, String, String)]) -> Result<Option<String>, &'static str> {
        in_conditions(&source(), conds)
            .map(|p| p.map(|p| p.as_str().to_string()))
            .map_err(|e| e.code)
    }

    /// Issue 15 finding 4: an equality on any national-ID field, a lower-case check character
    /// and a one-ID range all name the person; two persons are refused; other fields and
    /// values that are no ID name nobody.
    #[test]
    fn finding_4_a_query_names_the_person_of_an_id_equality_or_a_one_id_range() {
        assert!(PersonId::parse(P).is_ok() && PersonId::parse(Q).is_ok());
        assert_eq!(named(&[c("=", "sfzh", P)]), Ok(Some(P.into())));
        assert_eq!(named(&[c("=", "po_sfzh", P)]), Ok(Some(P.into())));
        let lower = P.to_lowercase();
        assert_eq!(named(&[c("=", "sfzh", &lower)]), Ok(Some(P.into())));
        assert_eq!(
            named(&[c(">=", "sfzh", P), c("<=", "sfzh", P)]),
            Ok(Some(P.into()))
        );
        // A range that holds exactly P's prefix, written any way.
        let prefix = &P[..17];
        assert_eq!(
            named(&[c(">=", "sfzh", prefix), c("<=", "sfzh", &format!("{P}0"))]),
            Ok(Some(P.into()))
        );
        assert_eq!(
            named(&[c("=", "sfzh", P), c("=", "xm", "张三")]),
            Ok(Some(P.into()))
        );
        assert_eq!(
            named(&[c("=", "sfzh", P), c("=", "sfzh", P)]),
            Ok(Some(P.into()))
        );
        assert_eq!(
            named(&[c("=", "sfzh", P), c("=", "po_sfzh", Q)]),
            Err("too_many_persons")
        );
        assert_eq!(named(&[c("=", "xm", P)]), Ok(None));
        assert_eq!(named(&[c("=", "sfzh", "110101")]), Ok(None));
        assert_eq!(named(&[]), Ok(None));
    }

    /// Issue 15 finding 4: a range on a national-ID field narrower than
    /// [`MIN_PERSON_ID_RANGE`] prefixes (but wider than one) is refused, at the limit it runs;
    /// open and wide ranges name nobody.
    #[test]
    fn finding_4_a_narrow_id_range_is_refused_at_the_limit_minus_one() {
        let at = |lo: u64, span: u64| {
            named(&[
                c(">=", "sfzh", &format!("{lo:017}")),
                c("<=", "sfzh", &format!("{:017}9", lo + span - 1)),
            ])
        };
        let lo = 11010119900307000;
        assert_eq!(at(lo, MIN_PERSON_ID_RANGE), Ok(None));
        assert_eq!(at(lo, MIN_PERSON_ID_RANGE - 1), Err("narrow_id_range"));
        assert_eq!(at(lo, 2), Err("narrow_id_range"));
        // The bypass of two adjacent prefixes around P is narrow too.
        let p: u64 = P[..17].parse().unwrap();
        assert_eq!(
            named(&[
                c(">=", "sfzh", &format!("{:017}9", p - 1)),
                c("<=", "sfzh", P)
            ]),
            Err("narrow_id_range")
        );
        // A region: shorter bounds pad.
        assert_eq!(
            named(&[c(">=", "sfzh", "110101"), c("<=", "sfzh", "110102")]),
            Ok(None)
        );
        assert_eq!(named(&[c(">=", "sfzh", P)]), Ok(None));
        assert_eq!(
            named(&[c(">=", "sfzh", Q), c("<=", "sfzh", P)]),
            Err("narrow_id_range")
        );
        // An empty range and a non-digit bound.
        assert_eq!(named(&[c(">=", "sfzh", P), c("<=", "sfzh", "1")]), Ok(None));
        assert_eq!(named(&[c(">=", "sfzh", "a"), c("<=", "sfzh", P)]), Ok(None));
    }

    #[test]
    fn a_search_names_a_person_only_by_a_whole_valid_id() {
        assert_eq!(
            in_search(&P.to_lowercase()).map(|p| p.as_str().to_string()),
            Some(P.into())
        );
        assert!(in_search(&P[..17]).is_none());
        assert!(in_search("110101199003078031").is_none()); // bad check character
        assert!(in_search("张三").is_none());
    }
}
