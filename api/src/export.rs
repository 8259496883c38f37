//! File writers shared by every export (R-QRY-4): a table of text cells as CSV (UTF-8 with a
//! BOM so spreadsheet programs keep Chinese text), as an XLSX workbook, or a caller-built JSON
//! document; and the HTTP response carrying the file with its blake3 content digest in
//! `x-govchain-digest`. Only this module writes export files.
//!
//! Issue 15 finding 7: every CSV cell that a spreadsheet would run as a formula is escaped
//! ([`csv_cell`]); files are rendered on tokio's blocking pool, at most
//! [`MAX_CONCURRENT_RENDERS`] at a time, never on the async workers that serve requests.

use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::ApiError;

/// The content digest header of an export.
pub const DIGEST_HEADER: &str = "x-govchain-digest";

/// Exports rendered at once (each holds up to 10,000 rows in memory while it is written).
pub const MAX_CONCURRENT_RENDERS: usize = 2;

/// The exports being rendered.
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_RENDERS);

/// Longest worksheet name Excel accepts.
const MAX_SHEET_NAME_CHARS: usize = 31;

/// An export's file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// CSV.
    Csv,
    /// JSON.
    Json,
    /// XLSX.
    Xlsx,
}

impl FileKind {
    /// The names [`FileKind::parse`] accepts.
    pub const NAMES: [&'static str; 3] = ["csv", "json", "xlsx"];

    /// Parses `csv`, `json` or `xlsx` (400 `bad_format` otherwise).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "xlsx" => Ok(Self::Xlsx),
            other => Err(ApiError::bad_request(
                "bad_format",
                format!("format {other:?}: csv, json or xlsx"),
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

impl From<govchain_chaincode::business::FileType> for FileKind {
    fn from(t: govchain_chaincode::business::FileType) -> Self {
        use govchain_chaincode::business::FileType;
        match t {
            FileType::Csv => Self::Csv,
            FileType::Json => Self::Json,
            FileType::Xlsx => Self::Xlsx,
        }
    }
}

/// A table to export: a header row and rows of text cells (an absent value is empty).
pub struct Sheet {
    /// Worksheet name for XLSX (cut to Excel's 31 characters; `.` becomes `_`).
    pub name: String,
    /// Column headings.
    pub headers: Vec<String>,
    /// The rows, each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

/// Renders `sheet` as `kind` on the blocking pool (at most [`MAX_CONCURRENT_RENDERS`] at
/// once); a JSON export is the document `json` builds.
pub async fn render(
    kind: FileKind,
    sheet: Sheet,
    json: impl FnOnce() -> Value + Send + 'static,
) -> Result<Response, ApiError> {
    let _turn = RENDERS
        .acquire()
        .await
        .map_err(|_| ApiError::internal("the export renderer is closed"))?;
    let body = tokio::task::spawn_blocking(move || match kind {
        FileKind::Csv => csv_bytes(&sheet),
        FileKind::Json => serde_json::to_vec(&json()).map_err(ApiError::internal),
        FileKind::Xlsx => xlsx_bytes(&sheet),
    })
    .await
    .map_err(|e| ApiError::internal(format!("export rendering failed: {e}")))??;
    Ok(file_response(kind.content_type(), body))
}

/// Characters that make a spreadsheet program read a cell as a formula (OWASP, "CSV
/// injection"): `=`, `+`, `-`, `@`, tab and carriage return.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as written to CSV: one starting with a [`FORMULA_STARTS`] character gets a leading
/// apostrophe, so the program shows it as text instead of running it.
pub fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(FORMULA_STARTS) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

fn csv_bytes(sheet: &Sheet) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    let escaped = |row: &[String]| {
        row.iter()
            .map(|c| csv_cell(c).into_owned())
            .collect::<Vec<_>>()
    };
    w.write_record(escaped(&sheet.headers))
        .map_err(ApiError::internal)?;
    for row in &sheet.rows {
        w.write_record(escaped(row)).map_err(ApiError::internal)?;
    }
    w.into_inner().map_err(ApiError::internal)
}

fn xlsx_bytes(sheet: &Sheet) -> Result<Vec<u8>, ApiError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let ws = book.add_worksheet();
    let err = |e: rust_xlsxwriter::XlsxError| ApiError::internal(format!("xlsx: {e}"));
    let name: String = sheet
        .name
        .replace('.', "_")
        .chars()
        .take(MAX_SHEET_NAME_CHARS)
        .collect();
    ws.set_name(name).map_err(err)?;
    for (j, h) in sheet.headers.iter().enumerate() {
        ws.write_string(0, j as u16, h).map_err(err)?;
    }
    for (i, row) in sheet.rows.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            ws.write_string(i as u32 + 1, j as u16, v).map_err(err)?;
        }
    }
    book.save_to_buffer().map_err(err)
}

/// The header of an export's next-page cursor ([`crate::paging`]), when the file was a full
/// page.
pub const NEXT_HEADER: &str = "x-govchain-next";

/// `r` with the next-page cursor header, if there is a next page.
pub fn with_next(mut r: Response, next: Option<String>) -> Response {
    if let Some(v) = next.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        r.headers_mut()
            .insert(axum::http::HeaderName::from_static(NEXT_HEADER), v);
    }
    r
}

/// The file as a response with its content type and blake3 digest header.
pub fn file_response(content_type: &str, body: Vec<u8>) -> Response {
    let digest = blake3::hash(&body).to_hex().to_string();
    (
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (axum::http::HeaderName::from_static(DIGEST_HEADER), digest),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 finding 7: a cell a spreadsheet would run as a formula starts with an
    /// apostrophe in CSV, headers included; other cells are unchanged.
    #[test]
    fn finding_7_csv_cells_are_escaped_against_formula_injection() {
        for bad in [
            "=HYPERLINK(\"http://x\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(csv_cell(bad), format!("'{bad}"));
        }
        for fine in ["", "张三", "1-2", "a=b", " =x", "'=x"] {
            assert_eq!(csv_cell(fine), fine);
        }
        let sheet = Sheet {
            name: "s".into(),
            headers: vec!["=h".into(), "name".into()],
            rows: vec![vec!["=cmd|' /C calc'!A0".into(), "李四".into()]],
        };
        let bytes = csv_bytes(&sheet).unwrap();
        let text = std::str::from_utf8(&bytes[3..]).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap(), vec!["'=h", "name"]);
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(row, vec!["'=cmd|' /C calc'!A0", "李四"]);
    }
}
