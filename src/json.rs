//! A strict JSON reader for the hot path: one pass over the caller's text, validating
//! everything and building nothing but the few slices [`fields`](crate::fields) keeps.
//!
//! serde_json's generic visitor machinery was two thirds of the instructions of `track` and
//! `send` (callgrind); this reader accepts exactly what serde_json accepts when it skips a
//! value (`IgnoredAny`), which the differential tests below and the `json` fuzz target
//! check, and leaves the rare, slow things to serde_json: decoding an escaped key and
//! wording an error with its line and column.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// The text of one valid JSON value, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    pub fn get(self) -> &'a str {
        self.0
    }

    pub fn first_byte(self) -> u8 {
        // A value is never empty; a space says "none of the above" if one ever were.
        self.0.as_bytes().first().copied().unwrap_or(b' ')
    }

    pub fn is_null(self) -> bool {
        self.0 == "null"
    }

    /// The string this value holds (borrowed unless it has escapes); `None` for a non-string.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
        serde_json::from_str::<String>(self.0).ok().map(Cow::Owned)
    }
}

/// Where and why the text is not valid JSON; worded by [`Invalid::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub at: usize,
    pub expected: &'static str,
}

impl Invalid {
    /// A [`crate::ErrorKind::Json`] error for `text`, `"{prefix}: {detail}"`: serde_json's
    /// wording (line and column) when it agrees the text is invalid, ours otherwise.
    pub fn error(self, text: &str, prefix: &str) -> Error {
        let detail = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(e) if self.expected != EXPECTED_OBJECT => e.to_string(),
            _ => format!("expected {} at byte {}", self.expected, self.at),
        };
        Error::json(format!("{prefix}: {detail}"))
    }
}

const EXPECTED_OBJECT: &str = "a JSON object";

type Step<T> = std::result::Result<T, Invalid>;

/// An object key: borrowed from the text when it has no escapes.
pub struct Key<'a> {
    pub name: Cow<'a, str>,
    /// The index of its opening quote in the text.
    pub quote: usize,
}

/// The bytes that end the fast scan of a string: `"`, `\` and the control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The index of the first `"`, `\` or control byte at or after `pos` (`bytes.len()` if
/// none): eight bytes at a time (Mycroft's zero-byte test; its false positives can only
/// follow a true hit, so the lowest one flagged is exact), then one at a time.
#[inline]
fn string_stop(bytes: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return pos + found.trailing_zeros() as usize / 8;
        }
        pos += 8;
    }
    while bytes.get(pos).is_some_and(|&b| !STRING_STOP[b as usize]) {
        pos += 1;
    }
    pos
}

/// The open arrays and objects of the value being skipped: one bit each (set for an
/// object), 64 to a word, so nesting costs no allocation until it is 64 deep.
struct Frames {
    top: u64,
    depth: usize,
    below: Vec<u64>,
}

impl Frames {
    fn new() -> Self {
        Self {
            top: 0,
            depth: 0,
            below: Vec::new(),
        }
    }

    fn push(&mut self, object: bool) {
        if self.depth > 0 && self.depth % 64 == 0 {
            self.below.push(self.top);
            self.top = 0;
        }
        self.top = (self.top << 1) | u64::from(object);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.top >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth % 64 == 0 {
            self.top = self.below.pop().unwrap_or(0);
        }
    }

    /// `None` when nothing is open; else whether the innermost is an object.
    fn innermost(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.top & 1 == 1)
    }
}

/// A cursor over JSON text.
pub struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// `text[start..end]` where both are positions the reader stopped at: the end, or an
    /// ASCII byte (a quote, a bracket, the byte after a value), so char boundaries.
    #[inline]
    fn slice(&self, start: usize, end: usize) -> &'a str {
        debug_assert!(self.text.is_char_boundary(start) && self.text.is_char_boundary(end));
        debug_assert!(start <= end && end <= self.text.len());
        // SAFETY: the reader only stops at ASCII bytes or the end of the text, which are
        // char boundaries, and `start <= end <= len` (checked in debug builds above).
        unsafe { self.text.get_unchecked(start..end) }
    }

    fn fail<T>(&self, expected: &'static str) -> Step<T> {
        Err(Invalid {
            at: self.pos,
            expected,
        })
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        // Most JSON is compact: one comparison when there is none.
        if self.peek().is_some_and(|b| b > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    pub fn peek_token(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.peek()
    }

    fn eat(&mut self, byte: u8, expected: &'static str) -> Step<()> {
        self.skip_whitespace();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Step<()> {
        self.skip_whitespace();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            self.fail("the end of the text")
        }
    }

    /// Skips a string whose opening quote is at `pos`; whether it had escapes.
    #[inline]
    fn skip_string(&mut self) -> Step<bool> {
        self.pos = string_stop(self.bytes, self.pos + 1);
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(false);
        }
        self.skip_string_rest()
    }

    /// The rest of a string, from its first `\` or control byte.
    #[cold]
    fn skip_string_rest(&mut self) -> Step<bool> {
        let mut escaped = false;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.skip_escape()?;
                    self.pos = string_stop(self.bytes, self.pos);
                }
                Some(_) => return self.fail("no control character in a string"),
                None => return self.fail("the string's closing quote"),
            }
        }
    }

    /// An escape sequence at `pos` (a backslash). As serde_json when it skips a string,
    /// `\u` takes any four hex digits: pairing surrogates matters only when decoding.
    fn skip_escape(&mut self) -> Step<()> {
        match self.bytes.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let hex = self.bytes.get(self.pos + 2..self.pos + 6);
                if hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    self.pos += 6;
                    Ok(())
                } else {
                    self.pos += 2;
                    self.fail("four hex digits after \\u")
                }
            }
            _ => {
                self.pos += 1;
                self.fail("a valid escape sequence")
            }
        }
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self) -> Step<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.skip_digits();
            }
            _ => return self.fail("a digit"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.skip_digits() == 0 {
                return self.fail("a digit after the decimal point");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return self.fail("a digit in the exponent");
            }
        }
        Ok(())
    }

    fn skip_literal(&mut self, literal: &'static str) -> Step<()> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(())
        } else {
            self.fail("a value")
        }
    }

    /// A key at the next token (a string): decoded only when it has escapes.
    #[inline]
    pub fn key(&mut self) -> Step<Key<'a>> {
        self.skip_whitespace();
        let quote = self.pos;
        if self.peek() != Some(b'"') {
            return self.fail("a string key");
        }
        let name = if self.skip_string()? {
            self.decode_key(quote)?
        } else {
            Cow::Borrowed(self.slice(quote + 1, self.pos - 1))
        };
        Ok(Key { name, quote })
    }

    /// A key inside a value being skipped: as serde_json, not decoded.
    fn skip_key(&mut self) -> Step<()> {
        if self.peek_token() != Some(b'"') {
            return self.fail("a string key");
        }
        self.skip_string().map(drop)
    }

    /// Rare: serde_json decodes the key read from `quote` to `pos` (and refuses an unpaired
    /// surrogate, which no Rust string can hold).
    #[cold]
    fn decode_key(&mut self, quote: usize) -> Step<Cow<'a, str>> {
        match serde_json::from_str::<String>(self.slice(quote, self.pos)) {
            Ok(name) => Ok(Cow::Owned(name)),
            Err(_) => {
                self.pos = quote;
                self.fail("a key without unpaired surrogates")
            }
        }
    }

    /// Skips one value, returning its text.
    pub fn value(&mut self) -> Step<Raw<'a>> {
        self.skip_whitespace();
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.skip_string()?;
            }
            Some(b'-' | b'0'..=b'9') => self.skip_number()?,
            Some(b'{' | b'[') => self.skip_container()?,
            Some(b't') => self.skip_literal("true")?,
            Some(b'f') => self.skip_literal("false")?,
            Some(b'n') => self.skip_literal("null")?,
            _ => return self.fail("a value"),
        }
        Ok(Raw(self.slice(start, self.pos)))
    }

    /// Skips an array or object, iteratively: nesting depth costs no stack.
    fn skip_container(&mut self) -> Step<()> {
        let mut frames = Frames::new();
        loop {
            // A value is expected here.
            self.skip_whitespace();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.pos += 1;
                    let object = open == b'{';
                    if self.peek_token() == Some(if object { b'}' } else { b']' }) {
                        self.pos += 1;
                    } else {
                        frames.push(object);
                        if object {
                            self.skip_key()?;
                            self.eat(b':', "`:`")?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.skip_string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                Some(b't') => self.skip_literal("true")?,
                Some(b'f') => self.skip_literal("false")?,
                Some(b'n') => self.skip_literal("null")?,
                _ => return self.fail("a value"),
            }
            // After a value: close what it ends, up to the next value.
            loop {
                let Some(object) = frames.innermost() else {
                    return Ok(());
                };
                match self.peek_token() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.skip_key()?;
                            self.eat(b':', "`:`")?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        frames.pop();
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        frames.pop();
                    }
                    _ if object => return self.fail("`,` or `}`"),
                    _ => return self.fail("`,` or `]`"),
                }
            }
        }
    }

    /// Reads an object member by member: `member` gets each key with the reader just
    /// before its value, and must consume exactly that value.
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, Key<'a>) -> Step<()>) -> Step<()> {
        if self.peek_token() != Some(b'{') {
            return self.fail(EXPECTED_OBJECT);
        }
        self.pos += 1;
        if self.peek_token() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.eat(b':', "`:`")?;
            member(self, key)?;
            match self.peek_token() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.fail("`,` or `}`"),
            }
        }
    }

    /// Reads an array's elements, each as its text.
    pub fn array(&mut self) -> Step<Vec<Raw<'a>>> {
        if self.peek_token() != Some(b'[') {
            return self.fail("a JSON array");
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.peek_token() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value()?);
            match self.peek_token() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return self.fail("`,` or `]`"),
            }
        }
    }
}

/// `text` as one JSON value (surrounding whitespace allowed), or why not.
pub fn value(text: &str) -> Step<Raw<'_>> {
    let mut reader = Reader::new(text);
    let raw = reader.value()?;
    reader.end()?;
    Ok(raw)
}

/// `text` as a JSON array of values.
pub fn array(text: &str) -> Result<Vec<Raw<'_>>> {
    let mut reader = Reader::new(text);
    reader
        .array()
        .and_then(|items| reader.end().map(|()| items))
        .map_err(|e| e.error(text, "message array is invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    fn agree(text: &str) {
        assert_eq!(
            value(text).is_ok(),
            serde_accepts(text),
            "the reader and serde_json disagree on {text:?}"
        );
        if let Ok(raw) = value(text) {
            assert_eq!(raw.get(), text.trim_matches([' ', '\n', '\r', '\t']));
        }
    }

    #[test]
    fn accepts_and_refuses_as_serde_json_does() {
        for text in [
            "0",
            "-0",
            "1.5",
            "-1.5e10",
            "1E+2",
            "1e-2",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "+1",
            "00",
            "-01",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "truex",
            "\"\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"\\ud800\"",
            "\"\\u00g0\"",
            "\"\\x\"",
            "\"a\tb\"",
            "\"a",
            "[]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{}",
            "{\"a\":1,}",
            "{\"a\"1}",
            "{1:1}",
            "{\"a\":1 \"b\":2}",
            " [ 1 , { \"a\" : [ ] } ] ",
            "[1]]",
            "{\"a\":{}}}",
            "[{]",
            "[\"\\/\"]",
            "{\"\\ud800\":1}",
            "\"é\"",
            "[[[[[[]]]]]]",
            "",
            "   ",
            "[\"\u{1}\"]",
            "{\"a\":[1,{\"b\":[true,false,null]}],\"c\":\"d\"}",
            "[1,\n2]",
            "1 2",
        ] {
            agree(text);
        }
    }

    #[test]
    fn deep_nesting_needs_no_stack() {
        // Under Miri, which runs about 1000 times slower, 1 000 levels still grow the bit stack.
        let deepest = if cfg!(miri) { 1_000 } else { 100_000 };
        for depth in [63, 64, 65, 127, 128, 129, 200, deepest] {
            let text = format!("{}{}", "[{\"a\":".repeat(depth), "1}]".repeat(depth));
            agree(&text);
            let broken = format!("{}{}", "[{\"a\":".repeat(depth), "1]}".repeat(depth));
            agree(&broken);
        }
    }

    /// Random JSON text, valid and damaged, judged by both readers.
    #[test]
    fn random_texts_are_judged_as_serde_json_judges_them() {
        const PIECES: &[&str] = &[
            "{", "}", "[", "]", ",", ":", " ", "\"", "\"k\"", "\"v\\n\"", "\\u12", "\\", "1", "-",
            "0", ".", "e", "+", "2", "true", "fals", "null", "\"é\"", "\t", "\u{1f}",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200_000 {
            let n = rng.usize(1..12);
            let text: String = (0..n).map(|_| PIECES[rng.usize(..PIECES.len())]).collect();
            agree(&text);
        }
        for _ in 0..20_000 {
            let value = crate::message::tests::random_value(&mut rng, 0);
            let mut text = if rng.bool() {
                serde_json::to_string(&value).unwrap()
            } else {
                serde_json::to_string_pretty(&value).unwrap()
            };
            agree(&text);
            // One damaged byte.
            if !text.is_empty() {
                let at = rng.usize(..text.len());
                if text.is_char_boundary(at) && text.is_char_boundary(at + 1) {
                    let b = PIECES[rng.usize(..PIECES.len())];
                    text.replace_range(at..at + 1, b);
                    agree(&text);
                }
            }
        }
    }

    #[test]
    fn objects_give_keys_and_raw_values() {
        let text = r#" {"a" : [1, {"x":2}], "b\u0041":"s", "c":{} } "#;
        let mut seen = Vec::new();
        let mut reader = Reader::new(text);
        reader
            .object(|r, key| {
                let v = r.value()?;
                seen.push((key.name.into_owned(), key.quote, v.get()));
                Ok(())
            })
            .unwrap();
        reader.end().unwrap();
        assert_eq!(
            seen,
            vec![
                ("a".to_owned(), 2, "[1, {\"x\":2}]"),
                ("bA".to_owned(), 22, "\"s\""),
                ("c".to_owned(), 37, "{}"),
            ]
        );
        assert_eq!(&text[22..23], "\"");
        let invalid = Reader::new("[1]").object(|_, _| Ok(())).unwrap_err();
        assert_eq!(invalid.expected, EXPECTED_OBJECT);
    }

    #[test]
    fn strings_are_read_back() {
        assert_eq!(value("\"abc\"").unwrap().as_str().unwrap(), "abc");
        assert_eq!(value(r#""a\u00e9\n""#).unwrap().as_str().unwrap(), "aé\n");
        assert!(value("12").unwrap().as_str().is_none());
        assert!(matches!(
            value("\"plain\"").unwrap().as_str(),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn errors_keep_serde_json_wording() {
        let e = value("{\"a\" 1}")
            .unwrap_err()
            .error("{\"a\" 1}", "properties are invalid");
        assert!(
            e.to_string().contains("expected `:` at line 1 column 6"),
            "{e}"
        );
        let e = Invalid {
            at: 0,
            expected: EXPECTED_OBJECT,
        }
        .error("[1]", "properties are invalid");
        assert!(
            e.to_string().contains("expected a JSON object at byte 0"),
            "{e}"
        );
    }
}
