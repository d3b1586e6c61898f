//! Game data operators tune (shop, characters and banners) lives in TOML
//! files, checked at start. A bad file is refused with `file:line: message`,
//! so an operator can go straight to the line at fault.

/// A data file that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DataFileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Reads a data file: its text and its name for error messages.
pub fn read(path: &std::path::Path) -> Result<(String, String), DataFileError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, file)),
        Err(e) => Err(DataFileError {
            file,
            line: 1,
            message: format!("cannot read it: {e}"),
        }),
    }
}

/// The 1-based line of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Builds errors that point into one file's text.
pub struct Pointer<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Pointer<'_> {
    pub fn at(&self, offset: usize, message: impl Into<String>) -> DataFileError {
        DataFileError {
            file: self.file.to_owned(),
            line: line_of(self.text, offset),
            message: message.into(),
        }
    }

    /// A TOML syntax or shape error, on its line.
    pub fn toml(&self, e: &toml::de::Error) -> DataFileError {
        self.at(e.span().map_or(0, |s| s.start), e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_from_one() {
        let text = "a = 1\nb = 2\n\nc = 3";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, text.find('b').unwrap()), 2);
        assert_eq!(line_of(text, text.find('c').unwrap()), 4);
        assert_eq!(line_of(text, 10_000), 4, "past the end: the last line");
    }
}
