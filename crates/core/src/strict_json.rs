//! JSON read strictly, as an audit log must read it.
//!
//! Two inputs that JSON parsers disagree on, or that downstream tools mangle, are refused:
//! - a key repeated in one object: most parsers keep the last value, some the first, so two
//!   readers of the same line would see two different actors;
//! - a control character in a string, even escaped (`\u0000`): it truncates C strings and
//!   ends up as a raw byte in CSV files. Tab, line feed and carriage return are allowed.
//!
//! Errors name the field by its path (`requestParams.user.name`, `nameHints[1]`).

use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The first character of `s` that a string in an event may not hold: a control character
/// (C0, DEL or C1) other than tab, line feed and carriage return.
pub fn forbidden_char(s: &str) -> Option<char> {
    // Every string of every event passes here: scan bytes, and decode characters only
    // around a byte that may start one (C0 and DEL are single bytes; C1 is 0xC2 0x80-0x9F).
    let bytes = s.as_bytes();
    // Most strings hold no byte that may start one: one branch-free pass says so.
    let suspects = bytes.iter().fold(0u8, |seen, &b| {
        seen | u8::from(b < 0x20) | u8::from(b == 0x7f) | u8::from(b == 0xc2)
    });
    if suspects == 0 {
        return None;
    }
    let suspect =
        |b: &u8| matches!(b, 0x00..=0x1f | 0x7f | 0xc2) && !matches!(b, b'\t' | b'\n' | b'\r');
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(suspect) {
        let at = from + i;
        let c = s[at..].chars().next()?;
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
            return Some(c);
        }
        from = at + 1;
    }
    None
}

/// A quick test on JSON text: `false` means it certainly holds no forbidden character, so
/// a reader that does not check strings (a typed fast path) may be used on it. `true` means
/// it may (an escape such as `\u0000` or `\b`, or a raw DEL or C1 character).
pub fn may_hold_forbidden_char(text: &[u8]) -> bool {
    // Raw DEL and C1 (0xC2 0x80-0x9F) start with bytes that are rare in any text.
    let mut i = 0;
    while let Some(skip) = memchr::memchr2(0x7f, 0xc2, &text[i..]) {
        i += skip;
        if text[i] == 0x7f || matches!(text.get(i + 1), Some(0x80..=0x9f)) {
            return true;
        }
        i += 1;
    }
    // The escapes are searched for as whole needles: backslashes alone are common (every
    // quote inside a string has one), and stopping at each cost three times as much.
    let [backspace, form_feed, low_unicode] = &*FORBIDDEN_ESCAPES;
    let is_escape =
        |at: usize| text[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0;
    backspace.find_iter(text).any(is_escape)
        || form_feed.find_iter(text).any(is_escape)
        // \u0000-\u001F, \u007F, \u0080-\u009F (and, conservatively, all of \u00xx with
        // those first digits).
        || low_unicode.find_iter(text).any(|at| {
            matches!(text.get(at + 4), Some(b'0' | b'1' | b'7' | b'8' | b'9')) && is_escape(at)
        })
}

/// The escapes that may stand for a forbidden character: `\b`, `\f` and `\u00`.
static FORBIDDEN_ESCAPES: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
    [
        Finder::new(b"\\b"),
        Finder::new(b"\\f"),
        Finder::new(b"\\u00"),
    ]
});

/// Parses JSON text into a [`Value`], refusing repeated keys and forbidden characters.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed::ROOT.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// For `#[serde(deserialize_with = ...)]`: a JSON value read strictly, `null` as `None`.
pub fn deserialize_optional_value<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Option<Value>, D::Error> {
    let value = ValueSeed::ROOT.deserialize(d)?;
    Ok(Some(value).filter(|v| !v.is_null()))
}

/// For `#[serde(deserialize_with = ...)]`: an optional JSON object read strictly.
pub fn deserialize_optional_map<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    let value = ValueSeed::ROOT.deserialize(d)?;
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other => Err(de::Error::custom(format!(
            "expected an object, got {}",
            kind(&other)
        ))),
    }
}

/// What kind of JSON value `v` is, for messages: `null`, `a boolean`, `a number`,
/// `a string`, `an array`, `an object`.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where a value is, kept on the stack and rendered only for an error.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => write!(f, "{key}"),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

impl Path<'_> {
    fn check<E: de::Error>(&self, s: &str, what: &str) -> Result<(), E> {
        match forbidden_char(s) {
            None => Ok(()),
            Some(c) => {
                let at = match self {
                    Path::Root => String::new(),
                    p => format!("`{p}`: "),
                };
                Err(E::custom(format!(
                    "{at}{what} contains the control character U+{:04X}",
                    c as u32
                )))
            }
        }
    }
}

struct ValueSeed<'a> {
    path: Path<'a>,
}

impl ValueSeed<'_> {
    const ROOT: Self = ValueSeed { path: Path::Root };

    fn check<E: de::Error>(&self, s: &str, what: &str) -> Result<(), E> {
        self.path.check(s, what)
    }

    fn below<'p>(&self, path: Path<'p>) -> ValueSeed<'p> {
        ValueSeed { path }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.check(v, "the string")?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.check(&v, "the string")?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            let path = Path::Index(&self.path, items.len());
            match seq.next_element_seed(self.below(path))? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let path = Path::Key(&self.path, &key);
            let below = self.below(path);
            below.check(&key, "the key")?;
            // Most objects are small: comparing a few keys costs less than hashing one.
            let repeated = if map.len() <= 8 {
                map.keys().any(|k| *k == key)
            } else {
                map.contains_key(&key)
            };
            if repeated {
                return Err(de::Error::custom(format!(
                    "`{path}`: the key appears twice in one object (which value counts would depend on the reader)"
                )));
            }
            let value = access.next_value_seed(below)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_repeated_keys_naming_the_path() {
        for (text, path) in [
            (r#"{"a":1,"a":2}"#, "`a`"),
            (r#"{"p":{"user":"x","user":"y"}}"#, "`p.user`"),
            (r#"{"l":[{"k":1},{"k":1,"k":2}]}"#, "`l[1].k`"),
        ] {
            let err = from_str(text).unwrap_err().to_string();
            assert!(
                err.contains(path) && err.contains("appears twice"),
                "{text}: {err}"
            );
        }
        // The same key in two objects is fine.
        assert!(from_str(r#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn refuses_escaped_control_characters_but_not_whitespace() {
        for (text, path, code) in [
            (
                r#"{"customerName":"exa\u0000mple.com"}"#,
                "`customerName`",
                "U+0000",
            ),
            (r#"{"a":["ok","\u001b[31m"]}"#, "`a[1]`", "U+001B"),
            (r#"{"a":"x\by"}"#, "`a`", "U+0008"),
            // An escaped backslash, then an escape.
            (r#"{"a":"x\\\fy"}"#, "`a`", "U+000C"),
            (r#"{"a":"\\\u0080"}"#, "`a`", "U+0080"),
            (r#"{"a":"\u007f"}"#, "`a`", "U+007F"),
            ("{\"a\":\"\u{85}\"}", "`a`", "U+0085"),
            (r#"{"k\u0001":1}"#, "`k\u{1}`", "U+0001"),
        ] {
            assert!(may_hold_forbidden_char(text.as_bytes()), "{text}");
            let err = from_str(text).unwrap_err().to_string();
            assert!(err.contains(path) && err.contains(code), "{text}: {err}");
        }
        // Escaped backslashes followed by letters that would make an escape.
        let fine = r#"{"a":"tab\there\nline\r\n","b":"\u00e9\u20ac\\u0000","c":"C:\\bin\\f"}"#;
        assert!(!may_hold_forbidden_char(fine.as_bytes()));
        // Text cut after a backslash or a lead byte is read to its end without a panic.
        for cut in [&b"{\"a\":\"x\\"[..], b"\\", b"\xc2", b"\\u00"] {
            assert!(!may_hold_forbidden_char(cut), "{cut:?}");
        }
        assert_eq!(
            from_str(fine).unwrap()["b"],
            Value::String("é€\\u0000".into())
        );
    }

    #[test]
    fn finds_the_control_characters_that_char_is_control_finds() {
        // Every character, alone and between multi-byte neighbours, against the definition.
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let expected = (c.is_control() && !matches!(c, '\t' | '\n' | '\r')).then_some(c);
            assert_eq!(
                forbidden_char(&c.to_string()),
                expected,
                "U+{:04X}",
                c as u32
            );
            let between = format!("é{c}\u{a0}x");
            assert_eq!(forbidden_char(&between), expected, "U+{:04X}", c as u32);
        }
        assert_eq!(
            forbidden_char("ok\u{a0}\u{c0}\t\u{85}\u{1}"),
            Some('\u{85}')
        );
    }

    #[test]
    fn reads_what_serde_json_reads_otherwise() {
        let text = r#"{"n":-1,"u":18446744073709551615,"f":1.5,"t":true,"z":null,"s":"x","l":[1,{"m":[]}]}"#;
        assert_eq!(
            from_str(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert!(from_str(r#"{"a":1} x"#).is_err(), "trailing characters");
    }
}
