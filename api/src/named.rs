//! Which one person a query names (R-SEC-5, issue 15 finding 4): a search for a whole national
//! ID, or a combined query (records, exports, saved queries) with an equality on the source's
//! person field. Such a query reads one person's data and needs that person's consent exactly
//! as the person file does; its handler passes the person to
//! [`crate::access::Caller::decide`].
//!
//! What could name or list persons without their consent is refused (400), never answered:
//! - a search of 15 to 18 ID characters that is no whole valid ID (a 17-digit prefix is one
//!   person; 15 or 16 digits a handful);
//! - a range (`from`/`to`) on any national-ID field: ordered by record key, even an open range
//!   with one row per page walks persons one by one;
//! - an equality on a national-ID field that is not the source's person field (its records are
//!   other persons', e.g. a spouse's), or whose value is no valid ID (a database may still
//!   match it: MySQL's PAD SPACE collation matches `ID ` to `ID`).
//!
//! Nothing here does IO.

use std::collections::BTreeSet;

use govchain_chaincode::catalog::{DataSource, FieldType};
use govchain_chaincode::person::PersonId;

use crate::ApiError;

/// Fewest characters of a digits-only search that narrow it to a few persons' IDs: such a
/// search must be a whole valid ID (and then needs the person's consent).
pub const MIN_NARROW_ID_CHARS: usize = 15;

/// The person a fuzzy search names: `needle` (normalized) is a whole valid national ID. 400
/// `partial_id` for 15-18 ID characters that are no valid ID.
pub fn in_search(needle: &str) -> Result<Option<PersonId>, ApiError> {
    if let Ok(p) = PersonId::parse(needle) {
        return Ok(Some(p));
    }
    let id_like = needle.len() >= MIN_NARROW_ID_CHARS
        && needle.len() <= 18
        && needle
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || (i == 17 && (c == 'X' || c == 'x')));
    if id_like {
        return Err(ApiError::bad_request(
            "partial_id",
            format!(
                "{} or more characters of a national ID narrow the search to a few persons: \
                 search the whole ID, with the person's consent",
                MIN_NARROW_ID_CHARS
            ),
        ));
    }
    Ok(None)
}

/// The one person the conditions `(op, field, value)` of a query over `source` name (`op` is
/// `=`, `>=` or `<=`), if any. 400 `id_range` for a range on a national-ID field,
/// `not_person_field` for an equality on a national-ID field other than the source's person
/// field, `bad_person_id` for a value that is no valid ID, `too_many_persons` when the
/// conditions name two.
pub fn in_conditions(
    source: &DataSource,
    conds: &[(&'static str, String, String)],
) -> Result<Option<PersonId>, ApiError> {
    let mut named = BTreeSet::new();
    for (op, field, value) in conds {
        let is_id = source
            .field(field)
            .is_some_and(|d| matches!(d.ty, FieldType::PersonId));
        if !is_id {
            continue;
        }
        if *op != "=" {
            return Err(ApiError::bad_request(
                "id_range",
                format!(
                    "a range on the national-ID field {field} would list persons without their \
                     consent: name one person with eq={field}:ID and the person's consent"
                ),
            ));
        }
        if source.person_field.as_deref() != Some(field.as_str()) {
            return Err(ApiError::bad_request(
                "not_person_field",
                format!(
                    "{field} is a national-ID field but not the person field of {}: its records \
                     are other persons', who have not consented",
                    source.id
                ),
            ));
        }
        let p = PersonId::parse(value).map_err(|e| {
            ApiError::bad_request("bad_person_id", format!("{field}: {value:?}: {e}"))
        })?;
        named.insert(p);
    }
    if named.len() > 1 {
        return Err(ApiError::bad_request(
            "too_many_persons",
            "a query may name one person (each needs their own consent)",
        ));
    }
    Ok(named.into_iter().next())
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

    /// Issue 15 finding 4: an equality on the person field names the person (a lower-case
    /// check character too); two persons are refused; other fields name nobody.
    #[test]
    fn finding_4_a_query_names_the_person_of_an_equality_on_the_person_field() {
        assert!(PersonId::parse(P).is_ok() && PersonId::parse(Q).is_ok());
        assert_eq!(named(&[c("=", "sfzh", P)]), Ok(Some(P.into())));
        let lower = P.to_lowercase();
        assert_eq!(named(&[c("=", "sfzh", &lower)]), Ok(Some(P.into())));
        assert_eq!(
            named(&[c("=", "sfzh", P), c("=", "xm", "张三")]),
            Ok(Some(P.into()))
        );
        assert_eq!(
            named(&[c("=", "sfzh", P), c("=", "sfzh", P)]),
            Ok(Some(P.into()))
        );
        assert_eq!(
            named(&[c("=", "sfzh", P), c("=", "sfzh", Q)]),
            Err("too_many_persons")
        );
        assert_eq!(named(&[c("=", "xm", P)]), Ok(None));
        assert_eq!(named(&[]), Ok(None));
    }

    /// Issue 15 review of finding 4: what would name or list persons without consent is
    /// refused — any range on an ID field (an open one walks persons in key order), an
    /// equality on an ID field that is not the person field (a spouse's records), a value that
    /// is no valid ID (MySQL's PAD SPACE matches "ID " to "ID").
    #[test]
    fn finding_4_ranges_other_id_fields_and_bad_ids_are_refused() {
        assert_eq!(named(&[c(">=", "sfzh", P)]), Err("id_range"));
        assert_eq!(named(&[c("<=", "sfzh", P)]), Err("id_range"));
        assert_eq!(
            named(&[c(">=", "sfzh", "110101"), c("<=", "sfzh", "110102")]),
            Err("id_range")
        );
        assert_eq!(named(&[c("=", "po_sfzh", P)]), Err("not_person_field"));
        assert_eq!(named(&[c(">=", "po_sfzh", P)]), Err("id_range"));
        assert_eq!(
            named(&[c("=", "sfzh", &format!("{P} "))]),
            Err("bad_person_id")
        );
        assert_eq!(named(&[c("=", "sfzh", "110101")]), Err("bad_person_id"));
        // Ranges on other fields are queries like any other.
        assert_eq!(named(&[c(">=", "xm", "张")]), Ok(None));
    }

    /// Issue 15 review of finding 4: a search names a person only by a whole valid ID; 15 to 17
    /// digits (a prefix narrows to a few persons, 17 digits to one) or an ID with a wrong check
    /// character are refused; shorter digit runs and text search as before.
    #[test]
    fn finding_4_a_search_names_a_person_by_a_whole_id_and_refuses_partial_ones() {
        let named = |q: &str| {
            in_search(q)
                .map(|p| p.map(|p| p.as_str().to_string()))
                .map_err(|e| e.code)
        };
        assert_eq!(named(&P.to_lowercase()), Ok(Some(P.into())));
        assert_eq!(named(&P[..17]), Err("partial_id"));
        assert_eq!(named(&P[..MIN_NARROW_ID_CHARS]), Err("partial_id"));
        assert_eq!(named(&P[..MIN_NARROW_ID_CHARS - 1]), Ok(None));
        assert_eq!(named("110101199003078031"), Err("partial_id")); // bad check character
        assert_eq!(named("张三"), Ok(None));
        assert_eq!(named("五一中路110101199003"), Ok(None));
    }
}
