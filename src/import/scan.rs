//! Reads a legacy file record by record without holding it: the import's
//! memory is bounded by a batch, whatever the file's size.
//!
//! The scanner walks the JSON structure byte by byte (strings, escapes,
//! nesting) and hands over the raw bytes of each value that sits where a
//! record sits (`users.G.U`, an element of the top-level array, a line).
//! Each record is parsed on its own, so what is wrong inside one record —
//! an invalid UTF-8 byte, a `NaN`, a duplicate key — rejects that record
//! alone. What breaks the structure itself (a truncated tail, a stray
//! bracket) ends the scan there, and the import says where: the byte
//! offset and the record it was in. A UTF-8 byte-order mark is skipped.

use std::io::BufRead;

/// Where a value sits: object keys, and array positions as `#1`, `#2`, …
pub type Path = Vec<String>;

/// What the scanner found.
#[derive(Debug)]
pub enum Found {
    /// A value at a record's place: its path, its raw bytes, and its
    /// number (the first record is 1).
    Record {
        path: Path,
        bytes: Vec<u8>,
        number: u64,
    },
    /// A key the format does not know, at a place that is not a record
    /// (a top-level `"version"` is known and skipped silently).
    Unknown { path: Path },
    /// The scan stopped: everything found before stands.
    Stop {
        offset: u64,
        number: u64,
        why: String,
    },
}

/// Which paths hold records, for one format.
pub trait Shape {
    /// Whether the value at `path` is one record.
    fn is_record(&self, path: &[String]) -> bool;
    /// Whether a value at `path` that is not a record is walked into (its
    /// keys or elements looked at); otherwise it is skipped and reported
    /// as unknown, unless `ignored` says it is known.
    fn is_container(&self, path: &[String]) -> bool;
    /// Known values that are neither (a top-level `version`).
    fn ignored(&self, path: &[String]) -> bool;
}

/// The scanner over one reader.
pub struct Scanner<R> {
    r: R,
    offset: u64,
    records: u64,
}

#[derive(Debug)]
enum Broken {
    Eof,
    Syntax(String),
    Io(String),
}

impl<R: BufRead> Scanner<R> {
    pub fn new(r: R) -> Self {
        Self {
            r,
            offset: 0,
            records: 0,
        }
    }

    /// Scans every top-level value (one document, or several one after
    /// another as in JSON lines), calling `emit` for each find. `emit`
    /// returns false to stop early (the import was interrupted).
    pub fn run(mut self, shape: &dyn Shape, emit: &mut dyn FnMut(Found) -> bool) {
        if let Err(e) = self.skip_bom() {
            emit(self.stop(e, "the start of the file"));
            return;
        }
        loop {
            match self.skip_ws() {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(e) => {
                    emit(self.stop(e, "between documents"));
                    return;
                }
            }
            let mut path = Vec::new();
            let mut go_on = true;
            if let Err(e) = self.walk(&mut path, shape, emit, &mut go_on) {
                let inside = format!("record {}", self.records + 1);
                emit(self.stop(e, &inside));
                return;
            }
            if !go_on {
                return;
            }
        }
    }

    fn stop(&self, e: Broken, inside: &str) -> Found {
        let why = match e {
            Broken::Eof => format!("the file ends inside {inside} (truncated?)"),
            Broken::Syntax(s) => format!("broken JSON in {inside}: {s}"),
            Broken::Io(s) => format!("reading the file failed: {s}"),
        };
        Found::Stop {
            offset: self.offset,
            number: self.records,
            why,
        }
    }

    fn walk(
        &mut self,
        path: &mut Path,
        shape: &dyn Shape,
        emit: &mut dyn FnMut(Found) -> bool,
        go_on: &mut bool,
    ) -> Result<(), Broken> {
        self.skip_ws()?.ok_or(Broken::Eof)?;
        if shape.is_record(path) {
            let mut bytes = Vec::with_capacity(256);
            self.value(Some(&mut bytes))?;
            self.records += 1;
            *go_on = emit(Found::Record {
                path: path.clone(),
                bytes,
                number: self.records,
            });
            return Ok(());
        }
        let first = self.peek()?.ok_or(Broken::Eof)?;
        if !shape.is_container(path) || !(first == b'{' || first == b'[') {
            self.value(None)?;
            if !path.is_empty() && !shape.ignored(path) {
                *go_on = emit(Found::Unknown { path: path.clone() });
            }
            return Ok(());
        }
        self.bump();
        let close = if first == b'{' { b'}' } else { b']' };
        let mut index = 0u64;
        loop {
            let c = self.skip_ws()?.ok_or(Broken::Eof)?;
            if c == close {
                self.bump();
                return Ok(());
            }
            if index > 0 {
                if c != b',' {
                    return Err(Broken::Syntax(format!(
                        "expected ',' or '{}' at byte {}",
                        close as char, self.offset
                    )));
                }
                self.bump();
                self.skip_ws()?.ok_or(Broken::Eof)?;
            }
            index += 1;
            if first == b'{' {
                let key = self.key()?;
                let c = self.skip_ws()?.ok_or(Broken::Eof)?;
                if c != b':' {
                    return Err(Broken::Syntax(format!(
                        "expected ':' at byte {}",
                        self.offset
                    )));
                }
                self.bump();
                path.push(key);
            } else {
                path.push(format!("#{index}"));
            }
            let walked = self.walk(path, shape, emit, go_on);
            path.pop();
            walked?;
            if !*go_on {
                return Ok(());
            }
        }
    }

    /// An object key: decoded, or shown lossily (its record then fails to
    /// parse and is rejected with the reason).
    fn key(&mut self) -> Result<String, Broken> {
        if self.peek()? != Some(b'"') {
            return Err(Broken::Syntax(format!(
                "expected a quoted key at byte {}",
                self.offset
            )));
        }
        let mut raw = Vec::new();
        self.value(Some(&mut raw))?;
        Ok(serde_json::from_slice::<String>(&raw)
            .unwrap_or_else(|_| String::from_utf8_lossy(&raw).trim_matches('"').to_owned()))
    }

    /// Consumes one value, copying its bytes into `out` if given. Only
    /// the structure is checked here; what is inside is for serde.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), Broken> {
        let mut depth: Vec<u8> = Vec::new();
        loop {
            let c = self.next_byte()?.ok_or(Broken::Eof)?;
            if let Some(o) = out.as_deref_mut() {
                o.push(c);
            }
            match c {
                b'"' => self.rest_of_string(out.as_deref_mut())?,
                b'{' => depth.push(b'}'),
                b'[' => depth.push(b']'),
                b'}' | b']' => {
                    if depth.pop() != Some(c) {
                        return Err(Broken::Syntax(format!(
                            "unexpected '{}' at byte {}",
                            c as char,
                            self.offset - 1
                        )));
                    }
                }
                c if c.is_ascii_whitespace() || c == b',' || c == b':' => {
                    if depth.is_empty() {
                        return Err(Broken::Syntax(format!(
                            "expected a value at byte {}",
                            self.offset - 1
                        )));
                    }
                }
                _ => {
                    // A bare word (number, true, null, NaN…): to its end.
                    while let Some(n) = self.peek()? {
                        if n.is_ascii_whitespace() || b",:]}[{\"".contains(&n) {
                            break;
                        }
                        self.bump();
                        if let Some(o) = out.as_deref_mut() {
                            o.push(n);
                        }
                    }
                }
            }
            if depth.is_empty() {
                return Ok(());
            }
        }
    }

    /// After an opening quote: to the closing one, escapes included.
    fn rest_of_string(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), Broken> {
        loop {
            let c = self.next_byte()?.ok_or(Broken::Eof)?;
            if let Some(o) = out.as_deref_mut() {
                o.push(c);
            }
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let e = self.next_byte()?.ok_or(Broken::Eof)?;
                    if let Some(o) = out.as_deref_mut() {
                        o.push(e);
                    }
                }
                _ => {}
            }
        }
    }

    fn skip_bom(&mut self) -> Result<(), Broken> {
        let buf = self.r.fill_buf().map_err(|e| Broken::Io(e.to_string()))?;
        if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.r.consume(3);
            self.offset += 3;
        }
        Ok(())
    }

    /// Skips whitespace; the next byte, not consumed (`None` at the end).
    fn skip_ws(&mut self) -> Result<Option<u8>, Broken> {
        loop {
            match self.peek()? {
                Some(c) if c.is_ascii_whitespace() => self.bump(),
                other => return Ok(other),
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Broken> {
        let buf = self.r.fill_buf().map_err(|e| Broken::Io(e.to_string()))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) {
        self.r.consume(1);
        self.offset += 1;
    }

    fn next_byte(&mut self) -> Result<Option<u8>, Broken> {
        let c = self.peek()?;
        if c.is_some() {
            self.bump();
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Users;
    impl Shape for Users {
        fn is_record(&self, path: &[String]) -> bool {
            path.len() == 3 && path[0] == "users"
        }
        fn is_container(&self, path: &[String]) -> bool {
            path.is_empty() || (path[0] == "users" && path.len() < 3)
        }
        fn ignored(&self, path: &[String]) -> bool {
            path == ["version"]
        }
    }

    fn scan(text: &[u8], shape: &dyn Shape) -> Vec<Found> {
        let mut out = Vec::new();
        Scanner::new(text).run(shape, &mut |f| {
            out.push(f);
            true
        });
        out
    }

    fn record_paths(found: &[Found]) -> Vec<String> {
        found
            .iter()
            .filter_map(|f| match f {
                Found::Record { path, .. } => Some(path.join(".")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn records_are_found_where_the_shape_says() {
        let text = br#"{"version": 2, "users": {"1": {"2": {"a": "}\"{"}, "3": [1, {"x": 2}]}}, "extra": {"y": 1}}"#;
        let found = scan(text, &Users);
        assert_eq!(record_paths(&found), ["users.1.2", "users.1.3"]);
        let Found::Record { bytes, .. } = &found[0] else {
            panic!("{found:?}")
        };
        assert_eq!(bytes, br#"{"a": "}\"{"}"#);
        assert!(matches!(&found[2], Found::Unknown { path } if path == &["extra".to_owned()]));
    }

    #[test]
    fn bad_bytes_inside_a_record_stay_inside_it() {
        let mut text =
            br#"{"users": {"1": {"2": {"name": "X"}, "3": {"n": NaN}, "4": {"k": 1}}}}"#.to_vec();
        let at = text.iter().position(|c| *c == b'X').unwrap();
        text[at] = 0xFF;
        let found = scan(&text, &Users);
        assert_eq!(
            record_paths(&found),
            ["users.1.2", "users.1.3", "users.1.4"]
        );
    }

    #[test]
    fn a_truncated_tail_keeps_what_came_before_and_says_where() {
        let text = b"\xEF\xBB\xBF[{\"a\": 1}, {\"b\": 2}, {\"c\": [3, ";
        struct Array;
        impl Shape for Array {
            fn is_record(&self, path: &[String]) -> bool {
                path.len() == 1
            }
            fn is_container(&self, path: &[String]) -> bool {
                path.is_empty()
            }
            fn ignored(&self, _: &[String]) -> bool {
                false
            }
        }
        let found = scan(text, &Array);
        assert_eq!(record_paths(&found), ["#1", "#2"]);
        let Some(Found::Stop {
            number,
            why,
            offset,
        }) = found.last()
        else {
            panic!("{found:?}")
        };
        assert_eq!(*number, 2);
        assert!(why.contains("record 3"), "{why}");
        assert_eq!(*offset as usize, text.len());
    }
}
