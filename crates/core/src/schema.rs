use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::canonical_json::CanonicalJson;
use crate::event_json::StoredTexts;
use crate::{Catalog, Event, ValidationError};

/// The type of a column, as a warehouse would declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Integer,
    /// true / false.
    Boolean,
    /// Milliseconds since the Unix epoch, UTC, written as an integer.
    TimestampMillis,
    /// A UTC date and time written as text, `YYYY-MM-DD HH:MM:SS.mmm` (no zone: a warehouse's
    /// TIMESTAMP / TIMESTAMP_NTZ).
    Timestamp,
    /// A calendar date written as text, `YYYY-MM-DD`.
    Date,
    /// An array of strings.
    StringArray,
    /// Any JSON value; CSV writes it as compact JSON in one cell.
    Json,
}

/// One column of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Its name, as written in the file.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

impl Column {
    /// A column called `name` of type `ty`.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Self {
            name: name.into(),
            ty,
        }
    }
}

/// What [`Schema::parse_text`] read: the event, and its payload and parameters as the JSON
/// texts of the input when the schema left them unread.
#[derive(Debug, Clone)]
pub struct TextEvent<'t> {
    /// The event; its `payload` is `None` when `payload_text` is set, and its `params` empty
    /// when `params_text` is.
    pub event: Event,
    /// The payload's JSON text (`null` for none), still to be read.
    pub payload_text: Option<&'t RawValue>,
    /// The parameters' JSON text, still to be read (and refused unless an object).
    pub params_text: Option<&'t RawValue>,
}

impl TextEvent<'_> {
    /// The event with its payload and parameters read (strictly: a repeated key is refused).
    pub fn into_event(mut self) -> Result<Event, serde_json::Error> {
        self.read_payload()?;
        self.read_params()?;
        Ok(self.event)
    }

    /// Reads the payload text, if any, into the event (strictly).
    pub fn read_payload(&mut self) -> Result<(), serde_json::Error> {
        if let Some(text) = self.payload_text.take() {
            self.event.payload =
                Some(crate::strict_json::from_str(text.get())?).filter(|v| !v.is_null());
        }
        Ok(())
    }

    /// Reads the parameters text, if any, into the event (strictly; it must be an object).
    pub fn read_params(&mut self) -> Result<(), serde_json::Error> {
        if let Some(text) = self.params_text.take() {
            self.event.params = match crate::strict_json::from_str(text.get())? {
                Value::Object(map) => map,
                Value::Null => serde_json::Map::new(),
                _ => return Err(serde::de::Error::custom("parameters must be a JSON object")),
            };
        }
        Ok(())
    }
}

/// A record shape: its columns, in a fixed order, and the mapping to and from [`Event`].
pub trait Schema: Send + Sync + std::fmt::Debug {
    /// The schema's registered name, e.g. `uevents`.
    fn name(&self) -> &str;
    /// Version of the column set; bumped when columns change.
    fn version(&self) -> u32;
    /// The columns, in file order.
    fn columns(&self) -> &[Column];
    /// Builds an event from a record of this schema, as a producer sends it.
    fn parse(&self, record: Value) -> Result<Event, ValidationError>;

    /// An optional fast path from JSON text straight to an event, skipping the [`Value`]
    /// tree. It must accept only what [`Schema::parse`] accepts and build the same event;
    /// `None` means "use `parse`" (which then also produces the error message).
    ///
    /// `text` is one that [`crate::strict_json::may_hold_forbidden_char`] cleared: it holds no
    /// control character, escaped or not, so its strings need not be scanned again.
    ///
    /// The payload and the parameters may be left as text ([`TextEvent::payload_text`],
    /// [`TextEvent::params_text`]), not yet checked for repeated keys, nor the parameters
    /// for being an object: the caller reads them.
    fn parse_text<'t>(&self, _text: &'t str) -> Option<TextEvent<'t>> {
        None
    }
    /// Writes the event's values, one per column in [`Schema::columns`] order, into `out`
    /// (which the caller has cleared). Takes the event by value so that its strings and
    /// maps move into the record instead of being copied.
    fn render(&self, event: Event, out: &mut Vec<Value>);

    /// [`Schema::render`] of a stored event from its texts, without decoding it: a column
    /// whose value is one of the texts as it is gets `(column, text)` in `texts` and a
    /// placeholder `null` in `out`; every other column its value in `out`. A record writer
    /// that writes texts as they are ([`crate::RecordWriter::copies_texts`]) then writes the
    /// bytes it writes for `render` of the decoded event. `false` when this schema or this
    /// event cannot be rendered so (the default): the caller then decodes the event and
    /// calls `render`. `out` and `texts` come cleared.
    fn render_texts<'t>(
        &self,
        _stored: &StoredTexts<'t>,
        _out: &mut Vec<Value>,
        _texts: &mut Vec<(usize, CanonicalJson<'t>)>,
    ) -> bool {
        false
    }

    /// The column that holds the event's payload as it is (a JSON column), if there is one:
    /// exports then write the stored payload's text into it without reading it. `render`
    /// writes `null` there for an event without a payload.
    fn payload_column(&self) -> Option<usize> {
        None
    }

    /// The column that holds the event's parameters as they are (a JSON column), if there
    /// is one: exports then write the stored parameters' text into it without reading them.
    /// `render` writes an empty object there for an event without parameters.
    fn params_column(&self) -> Option<usize> {
        None
    }

    /// The actions this schema knows, if it has a catalog.
    fn catalog(&self) -> Option<&Catalog> {
        None
    }

    /// Checks a parsed event against the schema's rules beyond types: a known action, its
    /// required parameters, who must be named as the actor. Ingest rejects the event in
    /// `strict` mode and stores it with a warning in `permissive` mode; the error names the
    /// field as this schema calls it.
    fn check(&self, _event: &Event) -> Result<(), ValidationError> {
        Ok(())
    }

    /// [`Schema::check`] of an event whose parameters are still `params`, their JSON text
    /// in serde_json's form (its own `params` is empty). By default the text is read into a
    /// copy of the event for `check`; a schema whose check reads parameters can look them
    /// up in the text instead.
    fn check_with_params_text(
        &self,
        event: &Event,
        params: CanonicalJson<'_>,
    ) -> Result<(), ValidationError> {
        let mut whole = event.clone();
        whole.params = serde_json::from_str(params.as_str()).unwrap_or_default();
        self.check(&whole)
    }
}
