use std::io::{self, Write};

use serde_json::Value;

use crate::Column;

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
}

/// Writes the records of one file.
pub trait RecordWriter {
    /// Appends one record: its values in column order.
    fn append(&mut self, record: &[Value]) -> io::Result<()>;
    /// Ends the file and flushes what is buffered into the underlying writer.
    fn finish(self: Box<Self>) -> io::Result<()>;
}
