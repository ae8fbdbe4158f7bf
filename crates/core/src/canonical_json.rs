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
    /// A text of a stored event in the packed form, whose checksum shows it is the text
    /// its writer checked ([`crate::packed_event`]).
    pub(crate) fn stored(text: &'t str) -> Self {
        Self(text)
    }

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
    check_text(text.get(), accept)
}

/// [`check`] of any text, also one serde_json would refuse (a raw control character in a
/// string): refused too.
fn check_text<'t>(
    text: &'t str,
    accept: &mut dyn FnMut(Seen<'t>) -> bool,
) -> Option<CanonicalJson<'t>> {
    let mut scanner = Scanner::new(text, accept);
    (scanner.value(0) && scanner.at == text.len()).then_some(CanonicalJson(text))
}

/// Walks the object `text` in one pass, handing `member` each key and its value, if the
/// whole text is an object in serde_json's form (as [`check`] says) whose keys have no
/// escape and no repeat, and holds no control character (which serde_json refuses even
/// inside a string, so a text with one must go the way that reports it). `false` as soon as
/// it is not, or `member` refuses one.
///
/// The value of a key that `descend` names must be such an object too, and is walked in the
/// same pass: `member` gets each of its members with that key as their parent (`Some`),
/// then the key itself with its whole value (parent `None`), as it gets every other key.
///
/// A stored event's body is read so for an export: serde_json borrowing each field's text,
/// then [`check`] on every text, passed over every byte twice; walking its objects (the
/// actor, the outcome) once more for their fields cost a fifth of the pass again.
pub(crate) fn members<'t>(
    text: &'t str,
    descend: &dyn Fn(&str) -> bool,
    member: &mut dyn FnMut(Option<&'t str>, &'t str, CanonicalJson<'t>) -> bool,
) -> bool {
    let mut accept = |_: Seen<'t>| true;
    let mut scanner = Scanner::new(text, &mut accept);
    scanner.bytes.first() == Some(&b'{')
        && scanner.object_values(&mut |scanner, key| {
            if key.contains('\\') {
                return false;
            }
            let start = scanner.at;
            if descend(key) {
                let inner = scanner.bytes.get(scanner.at) == Some(&b'{')
                    && scanner.object_with(1, &mut |inner, value| {
                        !inner.contains('\\') && member(Some(key), inner, CanonicalJson(value))
                    });
                inner && member(None, key, CanonicalJson(&scanner.text[start..scanner.at]))
            } else {
                scanner.value(1)
                    && member(None, key, CanonicalJson(&scanner.text[start..scanner.at]))
            }
        })
        && scanner.at == text.len()
}

struct Scanner<'t, 'a> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
    accept: &'a mut dyn FnMut(Seen<'t>) -> bool,
}

impl<'t, 'a> Scanner<'t, 'a> {
    fn new(text: &'t str, accept: &'a mut dyn FnMut(Seen<'t>) -> bool) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            at: 0,
            accept,
        }
    }
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

    /// A string's text between its quotes, if its escapes are serde_json's and it holds no
    /// control character (which serde_json refuses).
    fn string(&mut self) -> Option<&'t str> {
        let bytes = self.bytes;
        let start = self.at + 1;
        let mut at = start;
        loop {
            // Eight bytes at a time up to the next byte that needs a look: most strings
            // have none, or few.
            while let Some(chunk) = bytes.get(at..at + 8) {
                let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let look = needs_a_look(word);
                if look != 0 {
                    // The lowest flag is exact (a false one only follows a true one).
                    at += look.trailing_zeros() as usize / 8;
                    break;
                }
                at += 8;
            }
            match *bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(&self.text[start..at]);
                }
                b'\\' => match bytes.get(at + 1) {
                    Some(b'"' | b'\\' | b'n' | b'r' | b't') => at += 2,
                    _ => return None,
                },
                0..0x20 => return None,
                _ => at += 1,
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
        self.object_with(depth, &mut |_, _| true)
    }

    /// An object, handing `member` each key and the text of its value.
    fn object_with(
        &mut self,
        depth: usize,
        member: &mut dyn FnMut(&'t str, &'t str) -> bool,
    ) -> bool {
        self.object_values(&mut |scanner, key| {
            let start = scanner.at;
            scanner.value(depth + 1) && member(key, &scanner.text[start..scanner.at])
        })
    }

    /// An object, handing `value` each key with the scanner at its value, which `value`
    /// must walk past.
    fn object_values(&mut self, value: &mut dyn FnMut(&mut Self, &'t str) -> bool) -> bool {
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        // Canonical escapes stand for one text each: equal raw keys are equal keys.
        let mut keys = SeenKeys::default();
        loop {
            if self.bytes.get(self.at) != Some(&b'"') {
                return false;
            }
            let Some(key) = self.string() else {
                return false;
            };
            if !keys.first_time(key) || !(self.accept)(Seen::Key(key)) || !self.eat(b':') {
                return false;
            }
            if !value(self, key) {
                return false;
            }
            if !self.eat(b',') {
                return self.eat(b'}');
            }
        }
    }
}

/// The high bit of each of the eight bytes of `word` (read little-endian) that is a quote, a
/// backslash or a control character; a byte above a flagged one may be flagged wrongly
/// (the bit tricks of "Bit Twiddling Hacks": a zero byte, a byte less than n), so that none
/// is flagged exactly when none needs a look. [`crate::event_json::write_str`] skips words
/// so too: these are the bytes JSON escapes.
pub(crate) fn needs_a_look(word: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGHS: u64 = ONES * 0x80;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// The keys of one object so far, to find a repeat: on the stack up to 16 (an event's
/// objects have fewer), in a `Vec` beyond.
#[derive(Default)]
struct SeenKeys<'t> {
    few: [&'t str; 16],
    len: usize,
    more: Vec<&'t str>,
}

impl<'t> SeenKeys<'t> {
    /// Adds `key`; false if it was there already.
    fn first_time(&mut self, key: &'t str) -> bool {
        let few = &self.few[..self.len.min(16)];
        if few.contains(&key) || self.more.contains(&key) {
            return false;
        }
        if self.len < 16 {
            self.few[self.len] = key;
        } else {
            self.more.push(key);
        }
        self.len += 1;
        true
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
        // A control character, a quote or a backslash at every place in and around the
        // eight-byte steps of the string scan.
        for len in 0..20 {
            for at in 0..=len {
                for (special, accepted) in [
                    ("\u{1}", false),
                    ("\u{1f}", false),
                    ("\\\"", true),
                    ("\\\\", true),
                    ("\\u0041", false),
                    (" ", true),
                    ("é😀", true),
                ] {
                    let mut body = "x".repeat(len);
                    body.insert_str(at, special);
                    let text = format!("\"{body}\"");
                    assert_eq!(
                        check_text(&text, &mut |_| true).is_some(),
                        accepted,
                        "{text:?}"
                    );
                }
            }
        }
        // Repeated keys, also past the first sixteen.
        let keys: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(canonical(&format!("{{{}}}", keys.join(","))));
        let repeat = format!("{{{},\"k2\":0}}", keys.join(","));
        assert!(!canonical(&repeat));
        let late_repeat = format!("{{{},\"k18\":0}}", keys.join(","));
        assert!(!canonical(&late_repeat));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert!(!canonical(&deep), "deep nesting is left to serde_json");
    }

    #[test]
    fn members_are_those_serde_json_reads_and_anything_else_is_refused() {
        let members_of = |text: &str| {
            let mut seen = Vec::new();
            members(text, &|_| false, &mut |parent, k, v| {
                assert_eq!(parent, None);
                seen.push((k.to_string(), v.as_str().to_string()));
                true
            })
            .then_some(seen)
        };
        let text = r#"{"a":1,"b":{"c":[true,null]},"d":"x\"y"}"#;
        let seen = members_of(text).unwrap();
        let value: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(seen.len(), value.len());
        for (k, v) in &seen {
            assert_eq!(serde_json::to_string(&value[k]).unwrap(), *v);
        }
        assert_eq!(members_of("{}"), Some(vec![]));
        for refused in [
            r#"{"a":1,"a":2}"#,
            r#"{"a\"b":1}"#,
            r#"{"a": 1}"#,
            r#"{"a":1} "#,
            r#"{"a":1}{}"#,
            "{\"a\":\"tab\tinside\"}",
            r#"{"a":1.5}"#,
            r#"["a"]"#,
            r#"{"a":1"#,
            "",
        ] {
            assert_eq!(members_of(refused), None, "{refused}");
        }
        assert!(!members(r#"{"a":1,"b":2}"#, &|_| false, &mut |_, k, _| k == "a"));
    }

    #[test]
    fn objects_walked_in_the_same_pass_are_what_a_second_pass_would_read() {
        let descend = |key: &str| key == "b" || key == "e";
        let members_of = |text: &str| {
            let mut seen = Vec::new();
            members(text, &descend, &mut |parent, k, v| {
                seen.push((
                    parent.map(str::to_string),
                    k.to_string(),
                    v.as_str().to_string(),
                ));
                true
            })
            .then_some(seen)
        };
        let text = r#"{"a":1,"b":{"c":[true,null],"d":"x\"y"},"e":{},"f":{"g":2}}"#;
        let seen = members_of(text).unwrap();
        // The same as reading each object of the text on its own, parents after their
        // members.
        let mut expected = Vec::new();
        let top: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        for (k, v) in &top {
            if descend(k) {
                for (inner, w) in v.as_object().unwrap() {
                    let text = serde_json::to_string(w).unwrap();
                    expected.push((Some(k.clone()), inner.clone(), text));
                }
            }
            expected.push((None, k.clone(), serde_json::to_string(v).unwrap()));
        }
        assert_eq!(seen, expected);
        for refused in [
            r#"{"b":1}"#,
            r#"{"b":[1]}"#,
            r#"{"b":null}"#,
            r#"{"b":{"c":1,"c":2}}"#,
            r#"{"b":{"c\"":1}}"#,
            r#"{"b":{"c":1.5}}"#,
            r#"{"b":{"c":1}"#,
            r#"{"b":{"c":1},"b":{"d":1}}"#,
        ] {
            assert_eq!(members_of(refused), None, "{refused}");
        }
        // A refusal of an inner member stops the walk.
        assert!(!members(text, &descend, &mut |parent, k, _| parent
            .is_none()
            || k != "d"));
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
