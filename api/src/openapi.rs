//! The shared parts of the OpenAPI document (`GET /api/v1/openapi.json`, issue 15): the error
//! body every refusal carries, the security schemes, and the schemas of constrained parameters.
//!
//! Invariant: each parameter schema here is built from the named constant its handler checks
//! against (pages, page sizes, deadlines, lengths), so the document cannot drift from the code;
//! a rule JSON Schema cannot express (the GB 11643 check character) is a named `format` the
//! document's readers (and `scripts/schemathesis_hooks.py`) know. This module never decides
//! anything about a request: it only describes what the handlers decide.

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`bad_query`, `no_session`, `forbidden`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The `format` of a GB 11643-1999 national ID: 17 digits of region, birth date and sequence,
/// then the ISO 7064 MOD 11-2 check character (`0`–`9` or `X`), the region a county of a
/// province or a residence-permit region ([`govchain_chaincode::person::PersonId::parse`]).
pub const PERSON_ID_FORMAT: &str = "gb11643";
/// What the [`PERSON_ID_FORMAT`] means, in the document.
pub const PERSON_ID_DESCRIPTION: &str = "a national ID (format gb11643, GB 11643-1999): 18 \
    characters ^[0-9]{17}[0-9Xx]$, a region code (a county of a province, or 810000, 820000, \
    830000), a real birth date YYYYMMDD from 1880, a sequence and the ISO 7064 MOD 11-2 check \
    character";
/// The `format` of a fuzzy search's fragment ([`crate::search::search`]).
pub const SEARCH_TEXT_FORMAT: &str = "search-text";
/// What the [`SEARCH_TEXT_FORMAT`] means, in the document.
pub const SEARCH_TEXT_DESCRIPTION: &str = "a fragment to find (format search-text): 2-32 \
    characters once white space is removed and letters are lower-cased, with two adjacent \
    characters of which one is not ASCII (Chinese), or four ASCII letters or digits in a row";
/// Hex digits of a transaction id, a public key or a consent id.
pub const HEX_ID_CHARS: usize = 64;
/// A transaction id, a public key or a consent id.
pub const HEX_ID_PATTERN: &str = "^[0-9a-fA-F]{64}$";

/// Name of the session security scheme (`Authorization: Bearer TOKEN`).
pub const BEARER: &str = "bearer";
/// Names of the three headers of a signed request, one security scheme each (all three
/// together are one requirement).
pub const SIGNED: [&str; 3] = ["signed_key", "signed_time", "signed_signature"];

fn integer(min: u64, max: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as usize))
        .maximum(Some(max as usize))
}

/// Declares a parameter schema type whose [`PartialSchema`] is `$schema`.
macro_rules! param_schema {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($schema.build()))
            }
        }

        impl ToSchema for $name {}
    };
}

param_schema!(
    /// A national ID: only its named format, which says it all (schemathesis draws values of a
    /// format it knows only where no other keyword constrains the string).
    PersonIdParam => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom(PERSON_ID_FORMAT.into())))
        .description(Some(PERSON_ID_DESCRIPTION))
);
param_schema!(
    /// A transaction id, public key or consent id: 64 hex digits.
    HexIdParam => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(HEX_ID_CHARS))
        .max_length(Some(HEX_ID_CHARS))
        .pattern(Some(HEX_ID_PATTERN))
);
param_schema!(
    /// A fuzzy search's fragment: only its named format ([`SEARCH_TEXT_FORMAT`]).
    SearchTextParam => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom(SEARCH_TEXT_FORMAT.into())))
        .description(Some(SEARCH_TEXT_DESCRIPTION))
);
param_schema!(
    /// A condition of a combined query: `FIELD:VALUE` (the field one of the source's, which no
    /// schema of this document can know).
    ConditionParam => ObjectBuilder::new().schema_type(Type::String).pattern(Some(":"))
);
param_schema!(
    /// A required identifier that may not be empty (a data source id of the sync endpoints).
    SourceParam => ObjectBuilder::new().schema_type(Type::String).min_length(Some(1))
);
param_schema!(
    /// A block height.
    HeightParam => integer(0, u64::MAX)
);
param_schema!(
    /// A position (of a transaction in its block, of an entry in its batch).
    IndexParam => integer(0, u64::MAX)
);
param_schema!(
    /// A page number, 1 to [`crate::query::MAX_PAGE`].
    PageParam => integer(1, crate::query::MAX_PAGE as u64)
);
param_schema!(
    /// A page number of a keyset-paged read ([`crate::paging::Window`]): from 1; the rows it
    /// skips, (page - 1) x page_size, are at most [`crate::paging::MAX_OFFSET_ROWS`] (a rule
    /// across two parameters: here only its bound at page_size 1).
    KeysetPageParam => integer(1, crate::paging::MAX_OFFSET_ROWS as u64 + 1)
);
param_schema!(
    /// A keyset cursor (`after`): what a previous page answered as `next`, hex, at most
    /// [`crate::paging::MAX_CURSOR_CHARS`] characters (its MAC, which only the node can make,
    /// is checked by [`crate::paging::Window::parse`]).
    CursorParam => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::paging::MAX_CURSOR_CHARS))
        .pattern(Some("^[0-9a-fA-F]*$"))
);
param_schema!(
    /// Results per page, 1 to [`crate::query::MAX_PAGE_SIZE`].
    PageSizeParam => integer(1, crate::query::MAX_PAGE_SIZE as u64)
);
param_schema!(
    /// Rows of one export, 1 to [`crate::query::MAX_EXPORT_ROWS`].
    ExportRowsParam => integer(1, crate::query::MAX_EXPORT_ROWS as u64)
);
param_schema!(
    /// Rows of one audit export, 1 to [`crate::audit::MAX_AUDIT_EXPORT_ROWS`].
    AuditExportRowsParam => integer(1, crate::audit::MAX_AUDIT_EXPORT_ROWS as u64)
);
param_schema!(
    /// Entries of a source's sync listing (runs, refused records), 1 to
    /// [`crate::sync::MAX_HISTORY_RUNS`].
    HistoryLimitParam => integer(1, crate::sync::MAX_HISTORY_RUNS as u64)
);
param_schema!(
    /// A pull-through's deadline, 1 to [`crate::sync::MAX_FRESH_DEADLINE_MS`] ms.
    DeadlineParam => integer(1, crate::sync::MAX_FRESH_DEADLINE_MS)
);
param_schema!(
    /// Results of one fuzzy search, 1 to [`crate::search::MAX_LIMIT`].
    SearchLimitParam => integer(1, crate::search::MAX_LIMIT as u64)
);
param_schema!(
    /// A Unix time in milliseconds (any `i64`).
    UnixMsParam => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
);

param_schema!(
    /// `wait=commit` of a transaction submission.
    WaitParam => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["commit"]))
);
param_schema!(
    /// The file type of an export ([`crate::export::FileKind`]).
    FileKindParam => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(crate::export::FileKind::NAMES))
);
param_schema!(
    /// Bytes (a signed transaction's canonical encoding).
    BinaryBody => ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("binary".into())))
);

/// A new password ([`crate::security::check_password`]): [`crate::security::PASSWORD_CHARS`]
/// characters with a letter and a digit.
pub fn password() -> Schema {
    let chars = crate::security::PASSWORD_CHARS;
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(*chars.start()))
            .max_length(Some(*chars.end()))
            .pattern(Some(r"^(?=[\s\S]*[^\W\d_])(?=[\s\S]*[0-9])"))
            .build(),
    )
}

/// A user id ([`govchain_chaincode::access::check_user_id`]).
pub fn user_id() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(govchain_chaincode::access::MAX_USER_ID_LEN))
            .pattern(Some("^[A-Za-z0-9_.-]*$"))
            .build(),
    )
}

/// A national ID in a body (the [`PersonIdParam`] schema).
pub fn person_id() -> RefOr<Schema> {
    PersonIdParam::schema()
}

/// The purpose of a consent: 1 to [`govchain_chaincode::access::MAX_PURPOSE_CHARS`]
/// characters, not only spaces.
pub fn purpose() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(govchain_chaincode::access::MAX_PURPOSE_CHARS))
            .pattern(Some(r"\S"))
            .build(),
    )
}

/// How long a consent holds: 1 to [`crate::consent::MAX_CONSENT_HOURS`] hours, or absent.
pub fn consent_hours() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Integer,
                Type::Null,
            ]))
            .minimum(Some(1))
            .maximum(Some(crate::consent::MAX_CONSENT_HOURS as usize))
            .build(),
    )
}

/// 400 of an endpoint that takes no parameters of its own.
pub const BAD_REQUEST: &str = "bad_query: an unknown query parameter; bad_consent: \
    x-govchain-consent is not a consent id (64 hex digits)";
/// 401 of an authenticated endpoint.
pub const UNAUTHENTICATED: &str = "no valid credentials: no_session, session_expired, \
    unknown_user; for a signed request unauthenticated, bad_signature, stale_request, \
    replayed_request";
/// 403 of an authenticated endpoint (its own refusals are listed with it).
pub const FORBIDDEN: &str = "forbidden: a key that is no user's; user_disabled";
/// 403 of a personal-data read (decided by chaincode's access rules).
pub const DENIED: &str = "forbidden: a key that is no user's; user_disabled; the access \
    decision: no_grant, grant_expired, grant_revoked, no_export_right, no_consent, \
    consent_expired, consent_mismatch, unknown_source";
/// 503 of an endpoint reading the SQL projection.
pub const NO_PROJECTION: &str = "no_projection: this node keeps no SQL projection; busy: too \
    many signed requests in the replay window";
/// 503 of an endpoint that only authenticates.
pub const BUSY: &str = "busy: too many signed requests in the replay window";
/// 503 of a personal-data read, which is decided and audited.
pub const DECIDE_UNAVAILABLE: &str = "no_projection: this node keeps no SQL projection; \
    audit_backlog: personal data is not served while its audit cannot keep up (Retry-After); \
    busy: the chain moved during every attempt to decide, or too many signed requests";

/// Completes the generated document: every error answer (status 400 and up) carries the
/// [`ErrorBody`] schema, and the security schemes the operations name are declared.
pub struct Complete;

impl utoipa::Modify for Complete {
    fn modify(&self, doc: &mut OpenApi) {
        let error = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            ))))
            .build();
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                for (status, response) in op.responses.responses.iter_mut() {
                    let is_error = status.parse::<u16>().is_ok_and(|s| s >= 400);
                    if let (true, RefOr::T(r)) = (is_error, response) {
                        if r.content.is_empty() {
                            r.content
                                .insert("application/json".into(), RefOr::T(error.clone()));
                        }
                    }
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("ErrorBody".into(), ErrorBody::schema());
        components
            .schemas
            .insert("ErrorDetail".into(), ErrorDetail::schema());
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a staff session: the token of POST /api/v1/login"))
                    .build(),
            ),
        );
        let headers = [
            (
                SIGNED[0],
                crate::auth::KEY_HEADER,
                "the signer's public key, hex",
            ),
            (
                SIGNED[1],
                crate::auth::TIME_HEADER,
                "the request time, Unix ms",
            ),
            (
                SIGNED[2],
                crate::auth::SIGNATURE_HEADER,
                "ed25519 signature of the request digest, hex",
            ),
        ];
        for (scheme, header, what) in headers {
            components.add_security_scheme(
                scheme,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(header, what))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(<crate::routes::ApiDoc as utoipa::OpenApi>::openapi())
            .expect("the document serializes")
    }

    /// Every operation of the document: (method path, operation).
    fn operations(doc: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                out.push((format!("{method} {path}"), op.clone()));
            }
        }
        out
    }

    /// The schema of parameter `name` of `method path`.
    fn param(doc: &Value, method: &str, path: &str, name: &str) -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"]
            .clone()
    }

    #[test]
    fn parameter_limits_are_the_handlers_constants() {
        let doc = document();
        let max = |method: &str, path: &str, name: &str| {
            let s = param(&doc, method, path, name);
            assert_eq!(s["minimum"], 1, "{path} {name}");
            s["maximum"].as_u64().expect("a maximum")
        };
        assert_eq!(
            max("get", "/api/v1/catalog/changes", "page"),
            crate::query::MAX_PAGE as u64
        );
        assert_eq!(
            max("get", "/api/v1/records", "page_size"),
            crate::query::MAX_PAGE_SIZE as u64
        );
        assert_eq!(
            max("get", "/api/v1/records/export", "page_size"),
            crate::query::MAX_EXPORT_ROWS as u64
        );
        assert_eq!(
            max("get", "/api/v1/audit/export", "page_size"),
            crate::audit::MAX_AUDIT_EXPORT_ROWS as u64
        );
        assert_eq!(
            max("get", "/api/v1/sync/history", "limit"),
            crate::sync::MAX_HISTORY_RUNS as u64
        );
        assert_eq!(
            max("post", "/api/v1/sync/pull", "deadline_ms"),
            crate::sync::MAX_FRESH_DEADLINE_MS
        );
        assert_eq!(
            max("get", "/api/v1/search", "limit"),
            crate::search::MAX_LIMIT as u64
        );
        let id = param(&doc, "get", "/api/v1/persons/{id}", "id");
        assert_eq!(id["format"], PERSON_ID_FORMAT);
        let tx = param(&doc, "get", "/api/v1/txs/{id}", "id");
        assert_eq!(tx["pattern"], HEX_ID_PATTERN);
        assert_eq!(tx["maxLength"], HEX_ID_CHARS);
    }

    #[test]
    fn the_error_schema_is_what_errors_serialize_to() {
        let doc = document();
        let body = serde_json::to_value(ErrorBody {
            error: ErrorDetail {
                code: "bad_query".into(),
                message: "m".into(),
            },
        })
        .expect("serializes");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorBody"]["required"],
            serde_json::json!(["error"])
        );
        let mut required: Vec<&str> = schemas["ErrorDetail"]["required"]
            .as_array()
            .expect("required")
            .iter()
            .map(|v| v.as_str().expect("a name"))
            .collect();
        required.sort();
        let mut fields: Vec<&str> = body["error"]
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        assert_eq!(required, fields);
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = std::collections::BTreeSet::new();
        for (op, o) in operations(&doc) {
            let id = o["operationId"]
                .as_str()
                .expect("an operation id")
                .to_string();
            assert!(seen.insert(id.clone()), "{op}: operation id {id} twice");
        }
    }

    #[test]
    fn every_error_answer_carries_the_error_body() {
        let doc = document();
        for (op, o) in operations(&doc) {
            for (status, r) in o["responses"].as_object().expect("responses") {
                if status.parse::<u16>().expect("a status") >= 400 {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{op} {status}"
                    );
                }
            }
        }
    }

    /// Issue 15 (acceptance: every status an endpoint answers, 401 included).
    #[test]
    fn every_authenticated_operation_documents_401() {
        let doc = document();
        let global = doc["security"].clone();
        for (op, o) in operations(&doc) {
            let security = o.get("security").unwrap_or(&global);
            let anonymous = security
                .as_array()
                .expect("security requirements")
                .iter()
                .any(|r| r.as_object().is_some_and(|r| r.is_empty()));
            if !anonymous {
                assert!(o["responses"].get("401").is_some(), "{op} needs a 401");
            }
        }
    }
}
