//! Role statements: how `creation_statements` and `revocation_statements` arrive (a string, a JSON array, either
//! of them base64-encoded) and how their templates are filled in.

use base64::Engine as _;
use serde_json::Value;

use crate::VaultError;

/// The statements a field carries, each element run as one simple-protocol batch (so `;` inside a `$$` body is
/// safe). Empty elements are dropped.
pub fn parse(v: &Value, field: &str) -> Result<Vec<String>, VaultError> {
    let err = || {
        VaultError::bad(format!(
            "field `{field}` must be SQL as a string, a JSON array of strings, or base64 of either"
        ))
    };
    let items = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().map(String::from).ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()?,
        Value::String(s) => from_string(s, true).ok_or_else(err)?,
        _ => return Err(err()),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

fn from_string(s: &str, may_decode: bool) -> Option<Vec<String>> {
    let t = s.trim();
    if t.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<String>>(t)
    {
        return Some(list);
    }
    if may_decode
        && !t.is_empty()
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(t)
        && let Ok(text) = String::from_utf8(bytes)
    {
        return from_string(&text, false);
    }
    Some(vec![s.to_string()])
}

/// The values a statement's templates stand for.
pub struct Vars<'a> {
    pub username: &'a str,
    pub password: Option<&'a str>,
    pub expiration: Option<&'a str>,
}

/// `stmt` with `{{name}}`/`{{username}}`, `{{password}}` and `{{expiration}}` filled in (spaces inside the braces
/// allowed, as Vault's templates allow them).
pub fn render(stmt: &str, vars: &Vars<'_>) -> String {
    let mut out = String::with_capacity(stmt.len() + 64);
    let mut rest = stmt;
    while let Some(open) = rest.find("{{") {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after.find("}}") else {
            out.push_str(after);
            return out;
        };
        let inner = after.get(2..close).unwrap_or_default().trim();
        let value = match inner {
            "name" | "username" => Some(vars.username),
            "password" => vars.password,
            "expiration" => vars.expiration,
            _ => None,
        };
        match value {
            Some(v) => out.push_str(v),
            None => out.push_str(after.get(..close + 2).unwrap_or_default()),
        }
        rest = after.get(close + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// A PostgreSQL identifier, quoted.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_arrive_as_string_array_or_base64() {
        let sql = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'; GRANT SELECT ON a, b TO "{{name}}";"#;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let arr = json!([sql, "GRANT x TO y"]).to_string();
        assert_eq!(parse(&json!(sql), "c").unwrap(), vec![sql.to_string()]);
        assert_eq!(parse(&json!(b64(sql)), "c").unwrap(), vec![sql.to_string()]);
        assert_eq!(parse(&json!([sql, " "]), "c").unwrap(), vec![sql.to_string()]);
        assert_eq!(parse(&json!(arr), "c").unwrap().len(), 2);
        assert_eq!(parse(&json!(b64(&arr)), "c").unwrap().len(), 2);
        assert!(parse(&json!(3), "c").is_err());
        assert!(parse(&json!([1]), "c").is_err());
    }

    #[test]
    fn templates_are_filled_and_unknown_ones_kept() {
        let vars = Vars {
            username: "v-u",
            password: Some("pw"),
            expiration: Some("2030-01-01 00:00:00+0000"),
        };
        assert_eq!(
            render(
                "CREATE ROLE \"{{name}}\" PASSWORD '{{ password }}' VALID UNTIL '{{expiration}}' {{other}} {{username}}",
                &vars
            ),
            "CREATE ROLE \"v-u\" PASSWORD 'pw' VALID UNTIL '2030-01-01 00:00:00+0000' {{other}} v-u"
        );
        assert_eq!(render("x {{name", &vars), "x {{name");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
