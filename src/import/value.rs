//! How a legacy record's values are read: strictly where a guess could
//! change data (a duplicate key, an id that aliases another), leniently
//! where real bots wrote one thing several ways (numbers as strings or
//! integral floats, `null` for absent, timestamps with or without a zone).
//! Every accepted form is listed in the README's import section.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses one record, refusing a key written twice in one object (a plain
/// parse keeps the later one silently).
pub fn strict(bytes: &[u8]) -> Result<Value, String> {
    if let Some(word) = bare_non_number(bytes) {
        return Err(format!(
            "holds {word}, which is not a number JSON can carry (Python's json.dump writes it for a float that is not one)"
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = NoDuplicates.deserialize(&mut de).map_err(|e| {
        if e.to_string().contains("invalid unicode") || std::str::from_utf8(bytes).is_err() {
            "is not valid UTF-8".to_owned()
        } else {
            format!("not JSON: {e}")
        }
    })?;
    de.end().map_err(|e| format!("not JSON: {e}"))?;
    Ok(v)
}

/// `NaN`, `Infinity` or `-Infinity` outside a string.
fn bare_non_number(bytes: &[u8]) -> Option<&'static str> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'N' if bytes[i..].starts_with(b"NaN") => return Some("NaN"),
            b'I' if bytes[i..].starts_with(b"Infinity") => return Some("Infinity"),
            _ => {}
        }
    }
    None
}

struct NoDuplicates;

impl<'de> DeserializeSeed<'de> for NoDuplicates {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
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
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(NoDuplicates)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(NoDuplicates)?;
            if out.insert(k.clone(), v).is_some() {
                return Err(de::Error::custom(format!("the key {k:?} appears twice")));
            }
        }
        Ok(Value::Object(out))
    }
}

/// A record's fields, taken one by one; what is left over is unknown.
pub struct Fields {
    map: Map<String, Value>,
    taken: BTreeSet<&'static str>,
}

impl Fields {
    /// The record's object; anything else (an array, a number) is refused.
    pub fn of(v: Value) -> Result<Self, String> {
        match v {
            Value::Object(map) => Ok(Self {
                map,
                taken: BTreeSet::new(),
            }),
            Value::Array(_) => Err("is an array, not an object with named fields".to_owned()),
            other => Err(format!("is {other}, not an object with named fields")),
        }
    }

    /// A field; `null` counts as absent.
    pub fn take(&mut self, name: &'static str) -> Option<Value> {
        self.taken.insert(name);
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// The keys nobody took.
    pub fn unknown(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }
}

/// A whole number: a JSON integer, an integral float (`1250.0`, `1e3`,
/// `-0`) or a string holding one (`"1250"`); `None` when absent.
pub fn int(field: &str, v: Option<Value>) -> Result<Option<i64>, String> {
    let Some(v) = v else { return Ok(None) };
    let n = match &v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(integral))
        }
        _ => None,
    };
    n.map(Some)
        .ok_or_else(|| format!("{field} is {v}, not a whole number"))
}

/// A whole number within `min..=max`, 0 when absent.
pub fn bounded(field: &str, v: Option<Value>, min: i64, max: i64) -> Result<i64, String> {
    let n = int(field, v)?.unwrap_or(0);
    if n < min {
        return Err(format!("{field} is {n}, below {min}"));
    }
    if n > max {
        return Err(format!(
            "{field} is {n}, above the most kokoro keeps ({max})"
        ));
    }
    Ok(n)
}

fn integral(f: f64) -> Option<i64> {
    // Beyond 2^53 a float no longer holds every whole number exactly.
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

/// A Discord id, written one way only: a JSON integer, or a string of
/// digits without sign or leading zero, so that no two spellings alias
/// one id.
pub fn id(field: &str, v: &Value) -> Result<i64, String> {
    let bad = || format!("{field} {v} is not an id (decimal digits, no sign, no leading zero)");
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => canonical_id(s),
        _ => None,
    };
    n.filter(|n| *n > 0).ok_or_else(bad)
}

/// An id written as a key (`"620000000000000001"`).
pub fn canonical_id(s: &str) -> Option<i64> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n: &i64| *n > 0)
}

/// An instant, in Unix milliseconds: RFC 3339 (`2024-05-01T10:00:00Z`),
/// a naive ISO timestamp as Python's `isoformat()` writes it (taken as
/// UTC), a date (its midnight, UTC), or epoch seconds (a number or a
/// string of digits).
pub fn instant_ms(field: &str, v: &Value) -> Result<i64, String> {
    let bad = || format!("broken timestamp {field} {v}");
    match v {
        Value::Number(_) => {
            let secs = int(field, Some(v.clone()))
                .map_err(|_| bad())?
                .ok_or_else(bad)?;
            secs.checked_mul(1000).ok_or_else(bad)
        }
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return instant_ms(field, &Value::from(s.parse::<i64>().map_err(|_| bad())?));
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Ok(t.timestamp_millis());
            }
            for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
                    return Ok(t.and_utc().timestamp_millis());
                }
            }
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// A calendar day: `2024-05-01`, or the date part of any timestamp
/// `instant_ms` reads (as written, so a naive local time keeps its date).
pub fn day(field: &str, v: &Value) -> Result<chrono::NaiveDate, String> {
    if let Value::String(s) = v {
        let s = s.trim();
        if let Some(d) = s
            .get(..10)
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        {
            if s.len() == 10 || instant_ms(field, v).is_ok() {
                return Ok(d);
            }
        }
    }
    let ms = instant_ms(field, v).map_err(|_| format!("broken date {field} {v}"))?;
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.date_naive())
        .ok_or_else(|| format!("broken date {field} {v}"))
}

/// A text field: trimmed, without control characters (PostgreSQL refuses
/// a NUL byte, and none belongs in a name or a link).
pub fn text(field: &str, v: Option<Value>, max_chars: usize) -> Result<Option<String>, String> {
    let Some(v) = v else { return Ok(None) };
    let Value::String(s) = &v else {
        return Err(format!("{field} is {v}, not text"));
    };
    let s = s.trim();
    if s.chars().any(char::is_control) {
        return Err(format!("{field} holds a control character"));
    }
    if s.chars().count() > max_chars {
        return Err(format!("{field} is longer than {max_chars} characters"));
    }
    Ok(Some(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_written_the_ways_bots_wrote_them() {
        for v in [
            json!(1250),
            json!("1250"),
            json!(1250.0),
            json!(" 1250 "),
            json!("1250.0"),
        ] {
            assert_eq!(int("gold", Some(v.clone())), Ok(Some(1250)), "{v}");
        }
        assert_eq!(int("gold", Some(json!(1e3))), Ok(Some(1000)));
        assert_eq!(int("gold", Some(json!(-0.0))), Ok(Some(0)));
        assert_eq!(int("gold", None), Ok(None));
        for v in [
            json!(1.5),
            json!("ten"),
            json!(true),
            json!([1]),
            json!(1e300),
        ] {
            assert!(int("gold", Some(v.clone())).is_err(), "{v}");
        }
        assert!(bounded("xp", Some(json!(i64::MAX)), 0, 1_000).is_err());
    }

    #[test]
    fn an_id_has_one_spelling() {
        assert_eq!(
            id("user", &json!("620000000000000902")),
            Ok(620000000000000902)
        );
        assert_eq!(
            id("user", &json!(620000000000000902_i64)),
            Ok(620000000000000902)
        );
        for v in [
            json!("+620000000000000902"),
            json!("0620000000000000902"),
            json!(" 62"),
            json!(6.2e17),
            json!("0"),
            json!(-5),
        ] {
            assert!(id("user", &v).is_err(), "{v}");
        }
    }

    #[test]
    fn duplicate_keys_nan_and_bad_bytes_are_refused() {
        assert!(strict(br#"{"a": 1, "b": {"c": 2}}"#).is_ok());
        assert!(strict(br#"{"a": 1, "a": 2}"#)
            .unwrap_err()
            .contains("twice"));
        assert!(strict(br#"{"a": {"c": 1, "c": 1}}"#)
            .unwrap_err()
            .contains("twice"));
        assert!(strict(br#"{"a": NaN}"#).unwrap_err().contains("NaN"));
        assert!(strict(br#"{"a": "NaN is fine in a string"}"#).is_ok());
        assert!(strict(b"{\"a\": \"\xff\"}").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn timestamps_with_and_without_a_zone() {
        let utc = instant_ms("t", &json!("2024-05-01T10:00:00Z")).unwrap();
        assert_eq!(instant_ms("t", &json!("2024-05-01T10:00:00")), Ok(utc));
        assert_eq!(
            instant_ms("t", &json!("2024-05-01 10:00:00.000000")),
            Ok(utc)
        );
        assert_eq!(instant_ms("t", &json!(utc / 1000)), Ok(utc));
        assert_eq!(instant_ms("t", &json!((utc / 1000).to_string())), Ok(utc));
        assert!(instant_ms("t", &json!("yesterday")).is_err());
        assert_eq!(
            day("d", &json!("2024-05-01")).unwrap().to_string(),
            "2024-05-01"
        );
        assert_eq!(
            day("d", &json!("2024-05-01T23:30:00")).unwrap().to_string(),
            "2024-05-01"
        );
        assert!(day("d", &json!("2025-02-30")).is_err());
    }
}
