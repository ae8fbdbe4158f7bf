//! CSV formatter (RFC 4180): a header row of column names, then one row per record in the
//! schema's column order, `\r\n` line ends, fields quoted when they need it.
//!
//! Cells: null is an empty cell. In a `json` or `string_array` column every other value is
//! compact JSON, so a string stays distinguishable from the array its text may look like.
//! In other columns strings are written as they are, and numbers and booleans as JSON text.

use std::io::{self, Write};
use std::sync::Arc;

use auditsync_core::registry::{parse_options, FormatterFactory};
use auditsync_core::{Column, ColumnType, ConfigError, Formatter, RecordWriter};
use serde_json::{Map, Value};

/// Keeps this crate linked into binaries that only register it through `inventory`.
pub fn link() {}

/// The CSV formatter.
#[derive(Debug, Clone, Copy)]
pub struct CsvFormatter {
    delimiter: u8,
}

impl Default for CsvFormatter {
    fn default() -> Self {
        Self { delimiter: b',' }
    }
}

impl Formatter for CsvFormatter {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn extension(&self) -> &'static str {
        "csv"
    }

    fn content_type(&self) -> &'static str {
        "text/csv; charset=utf-8; header=present"
    }

    fn begin<'w>(
        &self,
        columns: &[Column],
        out: &'w mut dyn Write,
    ) -> io::Result<Box<dyn RecordWriter + 'w>> {
        let mut writer = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        writer
            .write_record(columns.iter().map(|c| c.name.as_str()))
            .map_err(io::Error::other)?;
        Ok(Box::new(CsvWriter {
            writer,
            json_columns: columns
                .iter()
                .map(|c| matches!(c.ty, ColumnType::Json | ColumnType::StringArray))
                .collect(),
            cell: String::new(),
        }))
    }
}

struct CsvWriter<'w> {
    writer: csv::Writer<&'w mut dyn Write>,
    /// Per column: whether its cells are JSON text.
    json_columns: Vec<bool>,
    cell: String,
}

impl RecordWriter for CsvWriter<'_> {
    fn append(&mut self, record: &[Value]) -> io::Result<()> {
        if record.len() != self.json_columns.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record has {} values for {} columns",
                    record.len(),
                    self.json_columns.len()
                ),
            ));
        }
        for (value, json) in record.iter().zip(&self.json_columns) {
            self.cell.clear();
            let cell: &str = match value {
                Value::Null => "",
                _ if *json => {
                    self.cell = serde_json::to_string(value).map_err(io::Error::other)?;
                    &self.cell
                }
                Value::String(s) => s,
                Value::Bool(b) => {
                    if *b {
                        "true"
                    } else {
                        "false"
                    }
                }
                Value::Number(n) => {
                    use std::fmt::Write as _;
                    let _ = write!(self.cell, "{n}");
                    &self.cell
                }
                Value::Array(_) | Value::Object(_) => {
                    self.cell = serde_json::to_string(value).map_err(io::Error::other)?;
                    &self.cell
                }
            };
            self.writer.write_field(cell).map_err(io::Error::other)?;
        }
        self.writer
            .write_record(None::<&[u8]>)
            .map_err(io::Error::other)
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.writer.flush()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvOptions {
    /// A single ASCII character; `,` by default.
    #[serde(default)]
    delimiter: Option<String>,
}

fn build(options: &Map<String, Value>) -> Result<Arc<dyn Formatter>, ConfigError> {
    let options: CsvOptions = parse_options(options)?;
    let delimiter = match options.delimiter.as_deref() {
        None => b',',
        Some(d) if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" && d != "\r" => {
            d.as_bytes()[0]
        }
        Some(d) => {
            return Err(ConfigError::invalid(
                "delimiter",
                format!("{d:?} is not a single ASCII character other than a quote or line end"),
            ))
        }
    };
    Ok(Arc::new(CsvFormatter { delimiter }))
}

auditsync_core::inventory::submit! {
    FormatterFactory { name: "csv", build }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn columns() -> Vec<Column> {
        vec![
            Column::new("name", ColumnType::String),
            Column::new("n", ColumnType::Integer),
            Column::new("params", ColumnType::Json),
            Column::new("ok", ColumnType::Boolean),
            Column::new("payload", ColumnType::Json),
        ]
    }

    #[test]
    fn header_then_rows_with_json_cells_quoted() {
        let mut out = Vec::new();
        let cols = columns();
        let mut writer = CsvFormatter::default().begin(&cols, &mut out).unwrap();
        writer
            .append(&[
                json!("a, \"b\"\nc"),
                json!(42),
                json!({"k": "v,w"}),
                json!(true),
                json!("[1]"),
            ])
            .unwrap();
        writer
            .append(&[
                Value::Null,
                json!(-1.5),
                json!(["x"]),
                Value::Null,
                json!([1]),
            ])
            .unwrap();
        writer.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "name,n,params,ok,payload\r\n\"a, \"\"b\"\"\nc\",42,\"{\"\"k\"\":\"\"v,w\"\"}\",true,\"\"\"[1]\"\"\"\r\n,-1.5,\"[\"\"x\"\"]\",,[1]\r\n"
        );
        // and a standard reader gets the values back
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[0][0], "a, \"b\"\nc");
        assert_eq!(
            serde_json::from_str::<Value>(&rows[0][2]).unwrap(),
            json!({"k": "v,w"})
        );
        assert_eq!(&rows[1][3], "");
        // a JSON column keeps a string apart from the array its text looks like
        assert_eq!(
            serde_json::from_str::<Value>(&rows[0][4]).unwrap(),
            json!("[1]")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&rows[1][4]).unwrap(),
            json!([1])
        );
    }

    #[test]
    fn delimiter_option_is_checked() {
        let mut options = Map::new();
        options.insert("delimiter".into(), json!(";;"));
        let err = auditsync_core::registry::build_formatter("csv", &options).unwrap_err();
        assert!(err.to_string().contains("`delimiter`"), "{err}");
        options.insert("delimiter".into(), json!(";"));
        let fmt = auditsync_core::registry::build_formatter("csv", &options).unwrap();
        let mut out = Vec::new();
        let cols = columns();
        fmt.begin(&cols, &mut out).unwrap().finish().unwrap();
        assert_eq!(out, b"name;n;params;ok;payload\r\n");
    }
}
