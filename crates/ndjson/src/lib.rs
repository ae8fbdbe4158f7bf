//! NDJSON formatter: each record is one compact JSON object on its own `\n`-terminated line,
//! UTF-8, with its keys in the schema's column order.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use auditsync_core::canonical_json::CanonicalJson;
use auditsync_core::registry::FormatterFactory;
use auditsync_core::{Column, ConfigError, Formatter, ReadError, RecordWriter, Records};
use serde_json::{Map, Value};

/// Keeps this crate linked into binaries that only register it through `inventory`.
pub fn link() {}

/// The NDJSON formatter. It takes no options.
#[derive(Debug, Default, Clone, Copy)]
pub struct NdjsonFormatter;

impl Formatter for NdjsonFormatter {
    fn name(&self) -> &'static str {
        "ndjson"
    }

    fn extension(&self) -> &'static str {
        "ndjson"
    }

    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn begin<'w>(
        &self,
        columns: &[Column],
        out: &'w mut dyn Write,
    ) -> io::Result<Box<dyn RecordWriter + 'w>> {
        // Each key is encoded once per file, not once per record.
        let keys = columns
            .iter()
            .map(|c| {
                let mut key = serde_json::to_vec(&c.name).map_err(io::Error::other)?;
                key.push(b':');
                Ok(key)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Box::new(NdjsonWriter {
            keys,
            out,
            line: Vec::with_capacity(1024),
        }))
    }

    fn read<'r>(
        &self,
        _columns: &[Column],
        input: Box<dyn BufRead + 'r>,
    ) -> Result<Records<'r>, ReadError> {
        Ok(read_lines(input))
    }
}

/// One JSON object a line; blank lines are skipped.
fn read_lines<'r>(input: Box<dyn BufRead + 'r>) -> Records<'r> {
    Box::new(
        input
            .lines()
            .enumerate()
            .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(|(i, line)| {
                let at = || format!("line {}", i + 1);
                let line = line.map_err(|e| ReadError::new(at(), e))?;
                match serde_json::from_str(&line).map_err(|e| ReadError::new(at(), e))? {
                    Value::Object(record) => Ok(record),
                    _ => Err(ReadError::new(at(), "not a JSON object")),
                }
            }),
    )
}

struct NdjsonWriter<'w> {
    keys: Vec<Vec<u8>>,
    out: &'w mut dyn Write,
    /// The line being written, whole before it goes out (a value that fails to serialize
    /// leaves nothing half-written); kept from line to line.
    line: Vec<u8>,
}

impl RecordWriter for NdjsonWriter<'_> {
    fn append(&mut self, record: &[Value]) -> io::Result<()> {
        self.write_line(record, &[])
    }

    fn append_with_texts(
        &mut self,
        record: &[Value],
        texts: &[(usize, CanonicalJson<'_>)],
    ) -> io::Result<()> {
        self.write_line(record, texts)
    }

    fn copies_texts(&self) -> bool {
        true
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        self.out.flush()
    }
}

impl NdjsonWriter<'_> {
    /// One record's line; each of `texts` is written as it is in its column.
    fn write_line(
        &mut self,
        record: &[Value],
        texts: &[(usize, CanonicalJson<'_>)],
    ) -> io::Result<()> {
        if record.len() != self.keys.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record has {} values for {} columns",
                    record.len(),
                    self.keys.len()
                ),
            ));
        }
        let line = &mut self.line;
        line.clear();
        line.push(b'{');
        for (i, (key, value)) in self.keys.iter().zip(record).enumerate() {
            if i > 0 {
                line.push(b',');
            }
            line.extend_from_slice(key);
            match texts.iter().find(|(column, _)| *column == i) {
                Some((_, text)) => line.extend_from_slice(text.as_str().as_bytes()),
                None => serde_json::to_writer(&mut *line, value).map_err(io::Error::other)?,
            }
        }
        line.extend_from_slice(b"}\n");
        self.out.write_all(line)
    }
}

fn build(options: &Map<String, Value>) -> Result<Arc<dyn Formatter>, ConfigError> {
    if let Some(key) = options.keys().next() {
        return Err(ConfigError::invalid(
            key.as_str(),
            "unknown option; the ndjson format takes none",
        ));
    }
    Ok(Arc::new(NdjsonFormatter))
}

auditsync_core::inventory::submit! {
    FormatterFactory { name: "ndjson", build }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_core::ColumnType;
    use serde_json::json;

    #[test]
    fn reads_back_objects_skipping_blank_lines_and_names_a_bad_line() {
        let input = b"{\"a\":1}\n\n{\"a\":[2]}\n[3]\n";
        let mut records = NdjsonFormatter.read(&[], Box::new(&input[..])).unwrap();
        assert_eq!(records.next().unwrap().unwrap()["a"], json!(1));
        assert_eq!(records.next().unwrap().unwrap()["a"], json!([2]));
        let err = records.next().unwrap().unwrap_err();
        assert_eq!(err.at, "line 4");
        assert!(records.next().is_none());
    }

    #[test]
    fn writes_one_compact_object_per_line_in_column_order() {
        let columns = [
            Column::new("z", ColumnType::String),
            Column::new("a", ColumnType::Json),
        ];
        let mut out = Vec::new();
        let mut writer = NdjsonFormatter.begin(&columns, &mut out).unwrap();
        writer
            .append(&[json!("line\nbreak \u{e9}"), json!({"k": [1, null]})])
            .unwrap();
        writer.append(&[Value::Null, json!(2)]).unwrap();
        writer.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"z\":\"line\\nbreak \u{e9}\",\"a\":{\"k\":[1,null]}}\n{\"z\":null,\"a\":2}\n"
        );
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap();
        }
    }

    #[test]
    fn a_column_given_as_text_is_written_as_the_value_it_stands_for() {
        let columns = [
            Column::new("z", ColumnType::String),
            Column::new("a", ColumnType::Json),
            Column::new("b", ColumnType::Integer),
        ];
        for text in [r#""[\"_id\",\"teams{_id}\"]""#, r#"{"k":[1,null]}"#, "null"] {
            let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
            let canonical = auditsync_core::canonical_json::check(&raw, &mut |_| true).unwrap();
            let record = [json!("x"), Value::Null, json!(7)];
            let mut as_text = Vec::new();
            let mut writer = NdjsonFormatter.begin(&columns, &mut as_text).unwrap();
            writer.append_with_text(&record, 1, canonical).unwrap();
            writer.finish().unwrap();
            let read = [json!("x"), serde_json::from_str(text).unwrap(), json!(7)];
            let mut as_value = Vec::new();
            let mut writer = NdjsonFormatter.begin(&columns, &mut as_value).unwrap();
            writer.append(&read).unwrap();
            writer.finish().unwrap();
            assert_eq!(
                String::from_utf8(as_text).unwrap(),
                String::from_utf8(as_value).unwrap()
            );
        }
    }

    #[test]
    fn rejects_a_record_of_the_wrong_width() {
        let columns = [Column::new("a", ColumnType::String)];
        let mut out = Vec::new();
        let mut writer = NdjsonFormatter.begin(&columns, &mut out).unwrap();
        assert!(writer.append(&[json!(1), json!(2)]).is_err());
    }

    #[test]
    fn registered_and_refuses_options() {
        assert!(auditsync_core::registry::formatter_names().contains(&"ndjson"));
        let mut options = Map::new();
        options.insert("delimiter".into(), json!(";"));
        let err = auditsync_core::registry::build_formatter("ndjson", &options).unwrap_err();
        assert!(err.to_string().contains("delimiter"), "{err}");
    }
}
