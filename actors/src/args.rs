//! Reading a command's arguments: the primitive every feature's parser
//! uses, and the error a bad argument is. Below the features and the
//! command that gathers them, as mini-redis keeps `Parse` in its own file.

use serde_json::{Map, Value};

use crate::ids::UserId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("{0}")]
    InvalidArgument(String),
}

impl ParseError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
}

/// Reads named arguments and remembers how many were read, so unexpected
/// extra arguments are refused instead of silently ignored.
pub struct Args<'a> {
    map: &'a Map<String, Value>,
    used: usize,
}

impl<'a> Args<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self { map, used: 0 }
    }

    pub fn get(&mut self, name: &str) -> Option<&'a Value> {
        let v = self.map.get(name).filter(|v| !v.is_null());
        if self.map.contains_key(name) {
            self.used += 1;
        }
        v
    }

    pub fn required(&mut self, name: &str) -> Result<&'a Value, ParseError> {
        self.get(name)
            .ok_or_else(|| ParseError::invalid(format!("missing argument {name:?}")))
    }

    pub fn integer(&mut self, name: &str, min: i64, max: i64) -> Result<i64, ParseError> {
        let v = self.required(name)?;
        to_integer(name, v, min, max)
    }

    pub fn optional_integer(
        &mut self,
        name: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ParseError> {
        self.get(name)
            .map(|v| to_integer(name, v, min, max))
            .transpose()
    }

    pub fn optional_str(&mut self, name: &str) -> Result<Option<&'a str>, ParseError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ParseError::invalid(format!("{name} must be a string"))),
        }
    }

    pub fn user_id(&mut self, name: &str) -> Result<UserId, ParseError> {
        user_id(name, self.required(name)?)
    }

    /// An id that may be left out (`null` counts as left out).
    pub fn optional_user_id(&mut self, name: &str) -> Result<Option<UserId>, ParseError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => user_id(name, v).map(Some),
        }
    }

    pub(crate) fn no_extras(&self) -> Result<(), ParseError> {
        if self.used == self.map.len() {
            return Ok(());
        }
        let mut extra: Vec<&str> = self.map.keys().map(String::as_str).collect();
        extra.sort_unstable();
        Err(ParseError::invalid(format!(
            "unexpected argument(s) among {extra:?} for this command"
        )))
    }
}

fn user_id(name: &str, v: &Value) -> Result<UserId, ParseError> {
    match v {
        Value::String(s) => s
            .parse()
            .map_err(|e| ParseError::invalid(format!("{name} {e}"))),
        _ => Err(ParseError::invalid(format!(
            "{name} must be a decimal string (ids do not fit in a JSON number)"
        ))),
    }
}

fn to_integer(name: &str, v: &Value, min: i64, max: i64) -> Result<i64, ParseError> {
    let n = v
        .as_i64()
        .ok_or_else(|| ParseError::invalid(format!("{name} must be a whole number")))?;
    if n < min || n > max {
        return Err(ParseError::invalid(format!(
            "{name} must be between {min} and {max}"
        )));
    }
    Ok(n)
}
