//! File writers shared by every export (R-QRY-4): a table of text cells as CSV (UTF-8 with a
//! BOM so spreadsheet programs keep Chinese text), as an XLSX workbook, or a caller-built JSON
//! document; and the HTTP response carrying the file with its blake3 content digest in
//! `x-govchain-digest`. Only this module writes export files.

use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::ApiError;

/// The content digest header of an export.
pub const DIGEST_HEADER: &str = "x-govchain-digest";

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

/// Renders `sheet` as `kind`; a JSON export is the document `json` builds.
pub fn render(
    kind: FileKind,
    sheet: &Sheet,
    json: impl FnOnce() -> Value,
) -> Result<Response, ApiError> {
    let body = match kind {
        FileKind::Csv => csv_bytes(sheet)?,
        FileKind::Json => serde_json::to_vec(&json()).map_err(ApiError::internal)?,
        FileKind::Xlsx => xlsx_bytes(sheet)?,
    };
    Ok(file_response(kind.content_type(), body))
}

fn csv_bytes(sheet: &Sheet) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    w.write_record(&sheet.headers).map_err(ApiError::internal)?;
    for row in &sheet.rows {
        w.write_record(row).map_err(ApiError::internal)?;
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
