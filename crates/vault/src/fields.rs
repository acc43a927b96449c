//! Request-field parsing shared by every endpoint, with the leniency of Vault's framework and none of its silence.
//!
//! `bao write path k=v` sends every value as a JSON string, hvac sends typed JSON, and both must mean the same
//! thing: `"true"`, `"3"`, `"10m"`, `"a,b"` and a JSON-encoded map in a string are all accepted where a bool, a
//! number, a duration, a list or a map is expected. What cannot be read is a 400 naming the field and the form it
//! takes — never ignored: a security setting that is dropped while the server answers "Success" (a `num_uses`
//! that does not limit, a `replay_protection` that does not protect) is worse than a refusal.
//!
//! [`Fields::finish`] refuses fields the endpoint does not know, so a misspelt or unsupported setting is reported
//! instead of silently having no effect.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::VaultError;

/// The longest duration any field accepts (100 years): larger values are typos, and bounding them keeps every
/// `now + ttl` computation far from overflow.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// A request body read field by field; remembers which fields were read so [`Fields::finish`] can refuse the rest.
pub struct Fields<'a> {
    data: &'a Map<String, Value>,
    seen: BTreeSet<&'a str>,
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            data,
            seen: BTreeSet::new(),
        }
    }

    /// The raw value, `None` when absent or JSON `null`.
    pub fn raw(&mut self, field: &'a str) -> Option<&'a Value> {
        self.seen.insert(field);
        self.data.get(field).filter(|v| !v.is_null())
    }

    /// Whether the body carries the field at all (even as `null`).
    pub fn has(&self, field: &str) -> bool {
        self.data.contains_key(field)
    }

    /// Mark fields as known without reading them (accepted for client compatibility, handled elsewhere).
    pub fn accept(&mut self, fields: &[&'a str]) {
        self.seen.extend(fields.iter().copied());
    }

    pub fn string(&mut self, field: &'a str) -> Result<Option<String>, VaultError> {
        self.raw(field).map(|v| string(v, field)).transpose()
    }

    /// A string, `None` when absent, `null` or empty (Vault's framework reads an empty string as unset).
    pub fn text(&mut self, field: &'a str) -> Result<Option<String>, VaultError> {
        Ok(self.string(field)?.filter(|s| !s.is_empty()))
    }

    /// A string that must be present and non-empty.
    pub fn required_string(&mut self, field: &'a str, hint: &str) -> Result<String, VaultError> {
        match self.string(field)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(VaultError::bad(format!("field `{field}` is required{hint}"))),
        }
    }

    pub fn bool(&mut self, field: &'a str) -> Result<Option<bool>, VaultError> {
        self.raw(field).map(|v| boolean(v, field)).transpose()
    }

    pub fn u64(&mut self, field: &'a str) -> Result<Option<u64>, VaultError> {
        self.raw(field).map(|v| unsigned(v, field)).transpose()
    }

    /// Seconds, from a number or a Go-style duration string (`90`, `"90s"`, `"1h30m"`, `"7d"`).
    pub fn duration(&mut self, field: &'a str) -> Result<Option<u64>, VaultError> {
        self.raw(field).map(|v| duration(v, field)).transpose()
    }

    /// A JSON array of strings or one comma-separated string (the CLI's form).
    pub fn list(&mut self, field: &'a str) -> Result<Option<Vec<String>>, VaultError> {
        self.raw(field).map(|v| list(v, field)).transpose()
    }

    /// An object of strings, or the same object JSON-encoded in a string (`k='{"a":"b"}'` from the CLI).
    pub fn string_map(&mut self, field: &'a str) -> Result<Option<BTreeMap<String, String>>, VaultError> {
        self.raw(field).map(|v| string_map(v, field)).transpose()
    }

    /// An object of any JSON values, or the same object JSON-encoded in a string.
    pub fn object(&mut self, field: &'a str) -> Result<Option<Map<String, Value>>, VaultError> {
        self.raw(field).map(|v| object(v, field)).transpose()
    }

    /// Refuse every field that was neither read nor [`accept`](Fields::accept)ed.
    pub fn finish(self) -> Result<(), VaultError> {
        let unknown: Vec<&str> = self
            .data
            .keys()
            .map(String::as_str)
            .filter(|k| !self.seen.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = self.seen.iter().copied().collect();
        Err(VaultError::bad(format!(
            "unknown field{} {}: this endpoint takes {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            known.join(", ")
        )))
    }
}

pub fn string(v: &Value, field: &str) -> Result<String, VaultError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(VaultError::bad(format!("field `{field}` must be a string"))),
    }
}

/// Go's `strconv.ParseBool` spellings, which Vault's framework accepts.
pub fn boolean(v: &Value, field: &str) -> Result<bool, VaultError> {
    let err = || VaultError::bad(format!("field `{field}` must be true or false"));
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(err()),
        },
        Value::String(s) => match s.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(err()),
        },
        _ => Err(err()),
    }
}

pub fn unsigned(v: &Value, field: &str) -> Result<u64, VaultError> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 2f64.powi(63))
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| VaultError::bad(format!("field `{field}` must be a non-negative whole number")))
}

/// Seconds from a number or a duration string; units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, combinable (`1h30m`).
/// Sub-second parts are truncated. At most [`MAX_DURATION_SECS`].
pub fn duration(v: &Value, field: &str) -> Result<u64, VaultError> {
    let err = || {
        VaultError::bad(format!(
            "field `{field}` must be a duration such as \"30s\", \"1h30m\", \"7d\" or a number of seconds"
        ))
    };
    let secs = match v {
        Value::Number(_) => unsigned(v, field).map_err(|_| err())?,
        Value::String(s) => parse_duration_str(s.trim()).ok_or_else(err)?,
        _ => return Err(err()),
    };
    if secs > MAX_DURATION_SECS {
        return Err(VaultError::bad(format!(
            "field `{field}` is too long: at most {MAX_DURATION_SECS} seconds (100 years)"
        )));
    }
    Ok(secs)
}

fn parse_duration_str(s: &str) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    // Nanoseconds, so `1500ms` and `1.5s` add up exactly before truncation to seconds.
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num.matches('.').count() > 1 {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = int.checked_mul(scale)?;
        if !frac.is_empty() {
            let digits = frac.len().min(18) as u32;
            let f: u128 = frac.get(..digits as usize)?.parse().ok()?;
            part = part.checked_add(f.checked_mul(scale)? / 10u128.pow(digits))?;
        }
        total = total.checked_add(part)?;
        rest = tail;
    }
    u64::try_from(total / 1_000_000_000).ok()
}

pub fn list(v: &Value, field: &str) -> Result<Vec<String>, VaultError> {
    match v {
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Value::Array(a) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(VaultError::bad(format!("field `{field}` must be a list of strings"))),
            })
            .collect(),
        _ => Err(VaultError::bad(format!(
            "field `{field}` must be a list of strings or one comma-separated string"
        ))),
    }
}

pub fn object(v: &Value, field: &str) -> Result<Map<String, Value>, VaultError> {
    let err = || {
        VaultError::bad(format!(
            "field `{field}` must be an object, or a JSON object in a string such as '{{\"key\":\"value\"}}'"
        ))
    };
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::String(s) if s.trim().is_empty() => Ok(Map::new()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(err()),
        },
        _ => Err(err()),
    }
}

pub fn string_map(v: &Value, field: &str) -> Result<BTreeMap<String, String>, VaultError> {
    object(v, field)?
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            _ => Err(VaultError::bad(format!(
                "field `{field}`: the value of `{k}` must be a string"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn cli_strings_mean_what_typed_json_means() {
        let typed = body(json!({"n": 3, "b": true, "d": 600, "l": ["a", "b"], "m": {"k": "v"}}));
        let cli = body(json!({"n": "3", "b": "true", "d": "10m", "l": "a, b", "m": "{\"k\":\"v\"}"}));
        for data in [&typed, &cli] {
            let mut f = Fields::new(data);
            assert_eq!(f.u64("n").unwrap(), Some(3));
            assert_eq!(f.bool("b").unwrap(), Some(true));
            assert_eq!(f.duration("d").unwrap(), Some(600));
            assert_eq!(f.list("l").unwrap(), Some(vec!["a".to_string(), "b".to_string()]));
            assert_eq!(
                f.string_map("m").unwrap().unwrap().get("k").map(String::as_str),
                Some("v")
            );
            f.finish().unwrap();
        }
    }

    #[test]
    fn malformed_values_are_refused_with_the_field_name() {
        let data = body(json!({"n": "three", "b": "yes", "d": "soon", "m": "[1]", "l": {"a": 1}}));
        let mut f = Fields::new(&data);
        for e in [
            f.u64("n").unwrap_err(),
            f.bool("b").unwrap_err(),
            f.duration("d").unwrap_err(),
            f.string_map("m").unwrap_err(),
            f.list("l").unwrap_err(),
        ] {
            assert_eq!(e.status(), 400);
        }
        assert!(Fields::new(&data).u64("n").unwrap_err().to_string().contains("`n`"));
    }

    #[test]
    fn unknown_fields_are_refused_not_ignored() {
        let data = body(json!({"ttl": "1h", "num_usess": "1"}));
        let mut f = Fields::new(&data);
        f.duration("ttl").unwrap();
        let e = f.finish().unwrap_err().to_string();
        assert!(e.contains("`num_usess`") && e.contains("ttl"), "{e}");
    }

    #[test]
    fn durations_follow_go_syntax_and_are_bounded() {
        let d = |s: &str| duration(&json!(s), "d");
        assert_eq!(d("1h30m").unwrap(), 5400);
        assert_eq!(d("1.5h").unwrap(), 5400);
        assert_eq!(d("1500ms").unwrap(), 1);
        assert_eq!(d("7d").unwrap(), 7 * 86400);
        assert_eq!(d("").unwrap(), 0);
        assert!(d("10x").is_err() && d("h").is_err() && d("1..5s").is_err());
        assert!(duration(&json!(u64::MAX), "d").is_err());
        assert!(d("9223372036854775807s").is_err());
        assert!(d("99999999999999999999999999999h").is_err());
    }

    #[test]
    fn go_bool_spellings() {
        for (s, want) in [("t", true), ("TRUE", true), ("1", true), ("F", false), ("0", false)] {
            assert_eq!(boolean(&json!(s), "b").unwrap(), want);
        }
        assert!(boolean(&json!(2), "b").is_err());
    }
}
