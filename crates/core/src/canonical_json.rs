//! JSON text that is already, byte for byte, what serde_json writes for it.
//!
//! A producer's request payload is often a long string full of escaped quotes (a GraphQL
//! field list). Reading it into a [`serde_json::Value`] unescapes every one of them, and
//! storing it escapes them all again, to get back the very text that came in: on the ingest
//! path that round trip cost about a fifth of the CPU. Text that [`check`] accepts is stored
//! as it came ([`crate::event_json::write_event_with_payload`]).

use serde_json::value::RawValue;

/// A JSON value's text exactly as `serde_json::to_string` writes that value: compact, with
/// serde_json's escapes, objects without a repeated key. Made only by [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanonicalJson<'t>(&'t str);

impl<'t> CanonicalJson<'t> {
    /// The text.
    pub fn as_str(&self) -> &'t str {
        self.0
    }
}

/// A string [`check`] shows its caller: its raw text between the quotes, whose escapes (if
/// any) are among `\"`, `\\`, `\n`, `\r` and `\t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen<'t> {
    /// An object's key.
    Key(&'t str),
    /// A string value (in an object, an array, or the whole text).
    String(&'t str),
}

/// Nesting deeper than this is left to serde_json (which refuses it at 128).
const MAX_DEPTH: usize = 100;

/// `text` as [`CanonicalJson`] if writing `serde_json::from_str::<Value>(text)` back gives
/// `text` itself, no object in it repeats a key, and `accept` takes every key and string in
/// it. `None` whenever in doubt: whitespace between tokens, a fraction or exponent, an
/// escape serde_json does not write (`\/`, `\u00e9`), very deep nesting. The caller then
/// reads the text as a `Value`, which also reports what is wrong with it, if anything.
pub fn check<'t>(
    text: &'t RawValue,
    accept: &mut dyn FnMut(Seen<'t>) -> bool,
) -> Option<CanonicalJson<'t>> {
    let text = text.get();
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        text,
        at: 0,
        accept,
    };
    (scanner.value(0) && scanner.at == text.len()).then_some(CanonicalJson(text))
}

struct Scanner<'t, 'a> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
    accept: &'a mut dyn FnMut(Seen<'t>) -> bool,
}

impl<'t> Scanner<'t, '_> {
    fn eat(&mut self, b: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&b);
        self.at += usize::from(found);
        found
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.bytes.get(self.at) {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self
                .string()
                .is_some_and(|s| (self.accept)(Seen::String(s))),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        let found = self.text[self.at..].starts_with(word);
        self.at += if found { word.len() } else { 0 };
        found
    }

    /// An integer serde_json keeps as one (`i64` or `u64`) and writes back the same.
    fn integer(&mut self) -> bool {
        let start = self.at;
        let negative = self.eat(b'-');
        let digits_start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &self.text[digits_start..self.at];
        let leading_zero = digits.len() > 1 && digits.starts_with('0');
        let fraction_or_exponent = matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E'));
        if digits.is_empty() || leading_zero || fraction_or_exponent || digits == "0" && negative {
            return false;
        }
        // Up to 18 digits always fit; longer ones must fit the type serde_json picks.
        digits.len() <= 18
            || if negative {
                self.text[start..self.at].parse::<i64>().is_ok()
            } else {
                digits.parse::<u64>().is_ok()
            }
    }

    /// A string's text between its quotes, if its escapes are serde_json's.
    fn string(&mut self) -> Option<&'t str> {
        let start = self.at + 1;
        let mut at = start;
        loop {
            at += memchr::memchr2(b'"', b'\\', &self.bytes[at..])?;
            if self.bytes[at] == b'"' {
                self.at = at + 1;
                return Some(&self.text[start..at]);
            }
            match self.bytes.get(at + 1) {
                Some(b'"' | b'\\' | b'n' | b'r' | b't') => at += 2,
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b']');
            }
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        // Canonical escapes stand for one text each: equal raw keys are equal keys.
        let mut keys: Vec<&str> = Vec::new();
        loop {
            if self.bytes.get(self.at) != Some(&b'"') {
                return false;
            }
            let Some(key) = self.string() else {
                return false;
            };
            if keys.contains(&key) || !(self.accept)(Seen::Key(key)) {
                return false;
            }
            keys.push(key);
            if !self.eat(b':') || !self.value(depth + 1) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b'}');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).unwrap()
    }

    fn canonical(text: &str) -> bool {
        check(&raw(text), &mut |_| true).is_some()
    }

    #[test]
    fn accepts_only_what_serde_json_writes_back_the_same() {
        // (text, accepted): every accepted text must round-trip through a `Value`; some that
        // would are still refused (fractions), which only costs the slower path.
        let cases = [
            (r#""plain""#, true),
            (r#""[\"_id\",\"teams{_id name}\"]""#, true),
            (r#""tab\tnew\nline\rback\\slash""#, true),
            (r#""é€😀""#, true),
            (r#""a\/b""#, false),
            (r#""\u00e9""#, false),
            (r#""\u0041""#, false),
            (r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#, true),
            (r#"{"a": 1}"#, false),
            (r#"[1, 2]"#, false),
            (r#"{}"#, true),
            (r#"[]"#, true),
            ("0", true),
            ("-0", false),
            ("-1", true),
            ("1.5", false),
            ("1e3", false),
            ("1E3", false),
            ("-9223372036854775808", true),
            ("-9223372036854775809", false),
            ("18446744073709551615", true),
            ("18446744073709551616", false),
            ("123456789012345678", true),
            (r#"{"a":1,"a":2}"#, false),
            (r#"{"a":{"x":1},"b":{"x":2}}"#, true),
        ];
        for (text, accepted) in cases {
            assert_eq!(canonical(text), accepted, "{text}");
            if accepted {
                let value: Value = serde_json::from_str(text).unwrap();
                assert_eq!(serde_json::to_string(&value).unwrap(), text);
            }
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert!(!canonical(&deep), "deep nesting is left to serde_json");
    }

    #[test]
    fn shows_every_key_and_string_and_stops_at_a_refusal() {
        let text = raw(r#"{"k":["s",{"t":"u\"v"}],"n":1}"#);
        let mut seen = Vec::new();
        assert!(check(&text, &mut |s| {
            seen.push(s);
            true
        })
        .is_some());
        assert_eq!(
            seen,
            [
                Seen::Key("k"),
                Seen::String("s"),
                Seen::Key("t"),
                Seen::String(r#"u\"v"#),
                Seen::Key("n"),
            ]
        );
        assert!(check(&text, &mut |s| s != Seen::Key("t")).is_none());
    }
}
