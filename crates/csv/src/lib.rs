//! CSV formatter (RFC 4180): a header row of column names, then one row per record in the
//! schema's column order, `\r\n` line ends, fields quoted when they need it.
//!
//! Cells: null is an empty cell. In a `json` or `string_array` column every other value is
//! compact JSON, so a string stays distinguishable from the array its text may look like.
//! In other columns strings are written as they are, and numbers and booleans as JSON text.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use auditsync_core::registry::{parse_options, FormatterFactory};
use auditsync_core::{
    Column, ColumnType, ConfigError, Formatter, ReadError, RecordWriter, Records,
};
use serde_json::{Map, Value};

/// Keeps this crate linked into binaries that only register it through `inventory`.
pub fn link() {}

/// The CSV formatter.
#[derive(Debug, Clone, Copy)]
pub struct CsvFormatter {
    delimiter: u8,
    formula_guard: bool,
}

impl Default for CsvFormatter {
    fn default() -> Self {
        Self {
            delimiter: b',',
            formula_guard: false,
        }
    }
}

impl CsvFormatter {
    /// A formatter whose text cells are guarded against formula injection when `guard` is
    /// set (see [`guarded`]): for files meant for spreadsheet software.
    pub fn with_formula_guard(mut self, guard: bool) -> Self {
        self.formula_guard = guard;
        self
    }
}

/// The OWASP rule for CSV bound for spreadsheets: a text cell starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return would run as a formula in Excel or LibreOffice, so it is
/// written with a leading `'`, which spreadsheets show as text. Numbers are not text cells and
/// are written as they are (`-5` stays a number).
pub fn guarded(cell: &str) -> Option<String> {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
        .then(|| format!("'{cell}"))
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
            formula_guard: self.formula_guard,
        }))
    }

    fn read<'r>(
        &self,
        columns: &[Column],
        input: Box<dyn BufRead + 'r>,
    ) -> Result<Records<'r>, ReadError> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .from_reader(input);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| ReadError::new("header", e))?
            .iter()
            .map(String::from)
            .collect();
        let types = header
            .iter()
            .map(|h| {
                columns
                    .iter()
                    .find(|c| &c.name == h)
                    .map(|c| c.ty)
                    .ok_or_else(|| {
                        ReadError::new("header", format!("column `{h}` is not in the schema"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(reader.into_records().enumerate().map(
            move |(i, row)| {
                let at = format!("row {}", i + 1);
                let cells = row.map_err(|e| ReadError::new(at.clone(), e))?;
                let mut record = Map::new();
                for ((name, ty), cell) in header.iter().zip(&types).zip(cells.iter()) {
                    // An empty cell is null: the column is left out.
                    if cell.is_empty() {
                        continue;
                    }
                    let bad = |e: &dyn std::fmt::Display| {
                        ReadError::new(at.clone(), format!("`{name}`: {e}"))
                    };
                    let value = match ty {
                        ColumnType::Integer | ColumnType::TimestampMillis => {
                            cell.parse::<i64>().map(Value::from).map_err(|e| bad(&e))?
                        }
                        ColumnType::Boolean => Value::Bool(cell == "true"),
                        ColumnType::Json | ColumnType::StringArray => {
                            serde_json::from_str(cell).map_err(|e| bad(&e))?
                        }
                        _ => Value::String(cell.to_string()),
                    };
                    record.insert(name.clone(), value);
                }
                Ok(record)
            },
        )))
    }
}

struct CsvWriter<'w> {
    writer: csv::Writer<&'w mut dyn Write>,
    /// Per column: whether its cells are JSON text.
    json_columns: Vec<bool>,
    cell: String,
    formula_guard: bool,
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
                Value::String(s) if self.formula_guard => match guarded(s) {
                    Some(g) => {
                        self.cell = g;
                        &self.cell
                    }
                    None => s,
                },
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
    /// Guard text cells against formula injection (for spreadsheet software); off for
    /// archives, which warehouses load byte-exact.
    #[serde(default)]
    formula_guard: bool,
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
    Ok(Arc::new(CsvFormatter {
        delimiter,
        formula_guard: options.formula_guard,
    }))
}

auditsync_core::inventory::submit! {
    FormatterFactory { name: "csv", build }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_back_what_it_wrote_typed_by_the_columns() {
        let records = [
            vec![
                json!("a,b \"q\"\nline"),
                json!(7),
                json!({"k": [1, "x"]}),
                json!(true),
                json!("[not json]"),
            ],
            vec![
                json!("plain"),
                Value::Null,
                json!(null),
                json!(false),
                json!(["x"]),
            ],
        ];
        let mut out = Vec::new();
        let mut writer = CsvFormatter::default().begin(&columns(), &mut out).unwrap();
        for r in &records {
            writer.append(r).unwrap();
        }
        writer.finish().unwrap();
        let read: Vec<Map<String, Value>> = CsvFormatter::default()
            .read(&columns(), Box::new(&out[..]))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0]["name"], records[0][0]);
        assert_eq!(read[0]["n"], json!(7));
        assert_eq!(read[0]["params"], records[0][2]);
        assert_eq!(read[0]["ok"], json!(true));
        assert_eq!(
            read[0]["payload"],
            json!("[not json]"),
            "a string stays a string"
        );
        assert!(!read[1].contains_key("n"), "an empty cell is null");
        assert_eq!(read[1]["payload"], json!(["x"]));
        let err = CsvFormatter::default()
            .read(
                &[Column::new("name", ColumnType::String)],
                Box::new(&out[..]),
            )
            .err()
            .unwrap();
        assert_eq!(err.at, "header");
        assert!(err.problem.contains("`n`"), "{err}");
    }

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
    fn the_formula_guard_quotes_text_cells_that_would_run_and_only_when_asked() {
        let columns = vec![
            Column::new("a", ColumnType::String),
            Column::new("n", ColumnType::Integer),
        ];
        let rows = [
            json!(["=HYPERLINK(\"http://x\")", -5]),
            json!(["+1", 1]),
            json!(["-2+3", 2]),
            json!(["@SUM(A1)", 3]),
            json!(["\tcmd", 4]),
            json!(["\rx", 5]),
            json!(["plain = fine", 6]),
        ];
        let write = |f: CsvFormatter| {
            let mut out = Vec::new();
            let mut w = f.begin(&columns, &mut out).unwrap();
            for r in &rows {
                w.append(r.as_array().unwrap()).unwrap();
            }
            w.finish().unwrap();
            String::from_utf8(out).unwrap()
        };
        let guarded = write(CsvFormatter::default().with_formula_guard(true));
        assert_eq!(
            guarded,
            "a,n\r\n\"'=HYPERLINK(\"\"http://x\"\")\",-5\r\n'+1,1\r\n'-2+3,2\r\n'@SUM(A1),3\r\n'\tcmd,4\r\n\"'\rx\",5\r\nplain = fine,6\r\n"
        );
        let raw = write(CsvFormatter::default());
        assert!(
            raw.contains("\r\n+1,1\r\n") && raw.contains("\r\n@SUM(A1),3"),
            "{raw}"
        );
        // The option reaches the formatter through the registry.
        let mut options = Map::new();
        options.insert("formula_guard".into(), json!(true));
        assert!(build(&options).is_ok());
        options.insert("formula_guard".into(), json!("yes"));
        assert!(build(&options)
            .unwrap_err()
            .to_string()
            .contains("formula_guard"));
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
