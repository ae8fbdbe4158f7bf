use std::io::{self, BufRead, Write};

use serde_json::{Map, Value};

use crate::canonical_json::CanonicalJson;
use crate::Column;

/// The records of a file read back, in file order: each a JSON object keyed by column name,
/// its values typed by the schema's columns, ready for [`crate::Schema::parse`].
pub type Records<'r> = Box<dyn Iterator<Item = Result<Map<String, Value>, ReadError>> + 'r>;

/// Why a file could not be read back; names where (`line 3`, `row 2`, `header`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct ReadError {
    /// Where in the file.
    pub at: String,
    /// What is wrong there.
    pub problem: String,
}

impl ReadError {
    /// An error at `at`.
    pub fn new(at: impl Into<String>, problem: impl ToString) -> Self {
        Self {
            at: at.into(),
            problem: problem.to_string(),
        }
    }
}

/// Streams records of a schema into one file of a format.
///
/// A formatter holds no records: [`RecordWriter::append`] writes each one through, so memory
/// does not grow with the number of records in a file. Compression is applied by the caller
/// to the writer it passes in.
pub trait Formatter: Send + Sync + std::fmt::Debug {
    /// Registered name, e.g. `ndjson`.
    fn name(&self) -> &'static str;
    /// File extension without the dot, before any compression suffix, e.g. `csv`.
    fn extension(&self) -> &'static str;
    /// MIME type of the uncompressed file.
    fn content_type(&self) -> &'static str;
    /// Starts a file with these columns (writing a header if the format has one).
    fn begin<'w>(
        &self,
        columns: &[Column],
        out: &'w mut dyn Write,
    ) -> io::Result<Box<dyn RecordWriter + 'w>>;

    /// Reads back a file this formatter wrote (already decompressed), streaming: range
    /// exports read archives through it, so the engine decodes no format of its own. The
    /// default says the format cannot be read back.
    fn read<'r>(
        &self,
        columns: &[Column],
        input: Box<dyn BufRead + 'r>,
    ) -> Result<Records<'r>, ReadError> {
        let _ = (columns, input);
        Err(ReadError::new(
            "file",
            format!("the {} format cannot be read back", self.name()),
        ))
    }
}

/// Writes the records of one file.
pub trait RecordWriter {
    /// Appends one record: its values in column order.
    fn append(&mut self, record: &[Value]) -> io::Result<()>;

    /// Appends one record whose column `column` holds the value `text` is the JSON text of
    /// (`record[column]` is a placeholder): [`RecordWriter::append_with_texts`] with one.
    fn append_with_text(
        &mut self,
        record: &[Value],
        column: usize,
        text: CanonicalJson<'_>,
    ) -> io::Result<()> {
        self.append_with_texts(record, &[(column, text)])
    }

    /// Appends one record in which each `(column, text)` of `texts` gives the JSON text of
    /// that column's value (`record[column]` is a placeholder). A format that writes JSON
    /// writes the texts as they are; the default reads them into `Value`s and calls
    /// [`RecordWriter::append`].
    fn append_with_texts(
        &mut self,
        record: &[Value],
        texts: &[(usize, CanonicalJson<'_>)],
    ) -> io::Result<()> {
        let mut record = record.to_vec();
        for (column, text) in texts {
            if let Some(slot) = record.get_mut(*column) {
                *slot = serde_json::from_str(text.as_str()).map_err(io::Error::other)?;
            }
        }
        self.append(&record)
    }

    /// True when [`RecordWriter::append_with_texts`] writes the texts as they are (a format
    /// of JSON records), so that rendering a stored event from its texts
    /// ([`crate::Schema::render_texts`]) saves work; false (the default) when it reads them
    /// back into values.
    fn copies_texts(&self) -> bool {
        false
    }

    /// Ends the file and flushes what is buffered into the underlying writer.
    fn finish(self: Box<Self>) -> io::Result<()>;
}
