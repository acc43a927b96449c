//! `sys/leaks/*`: `report` (no token: see [`crate::leaks`]), the records (`LIST sys/leaks`, `GET sys/leaks/:id`,
//! ACL-governed like any path) and `config` (sudo).

use leakstop_proto::leaks::{
    KvLocation, LeakAction, LeakKind, LeakRecord, ReportAnswer, ReportRequest, ReportedSecret, Reporter, Source,
};
use leakstop_proto::token::{Kind, parse};
use serde_json::{Map, Value, json};

use super::SysCall;
use super::seal::rfc3339;
use crate::core::Reply;
use crate::fields::Fields;
use crate::leaks::{CONFIG_PATH, LEASE_INDEX, MAX_SECRET_LEN, RECORDS, UNSEAL_SHARE_INDEX, record_id};
use crate::pipeline::Effects;
use crate::{Operation, VaultError};

pub(super) async fn handle(c: &SysCall<'_>, rest: &str, fx: &mut Effects) -> Result<Reply, VaultError> {
    use Operation::*;
    match (rest, c.lr.op) {
        ("leaks/report", Update | Create) => {
            let cfg = c.core.leaks.config(c.st)?;
            let req = parse_report(&c.lr.data, cfg.max_secrets)?;
            report(c, &req, Reporter::Report, fx).await
        }
        ("leaks/github", Update | Create) => github(c, fx).await,
        ("leaks", List) => {
            let keys = c.st.barrier.list(RECORDS)?;
            if keys.is_empty() {
                return Err(VaultError::NotFound);
            }
            Ok(Reply::data(json!({ "keys": keys })))
        }
        ("leaks/config", Read) => {
            let cfg = c.core.leaks.config(c.st)?;
            let mut v = serde_json::to_value(&cfg)?;
            if let Value::Object(m) = &mut v {
                m.remove("notify_secret");
                m.insert("notify_secret_set".into(), Value::Bool(cfg.notify_secret.is_some()));
            }
            Ok(Reply::data(v))
        }
        ("leaks/config", Update | Create) => write_config(c, fx),
        (id, Read) if id.strip_prefix("leaks/").is_some_and(|i| !i.contains('/')) => {
            let id = id.trim_start_matches("leaks/");
            let rec: LeakRecord =
                c.st.barrier
                    .get_json(&format!("{RECORDS}{id}"))?
                    .ok_or(VaultError::NotFound)?;
            Ok(Reply::data(serde_json::to_value(rec)?))
        }
        _ => Err(VaultError::UnsupportedPath),
    }
}

const SHAPE: &str = r#"send {"secrets": ["..."], "source": {"repository", "commit", "path", "line", "url"}}"#;

/// The report, checked by hand first: serde's messages quote the offending value, which may be a secret, and
/// errors reach the audit log and the caller.
fn parse_report(data: &Map<String, Value>, max: u64) -> Result<ReportRequest, VaultError> {
    if let Some(k) = data.keys().find(|k| *k != "secrets" && *k != "source") {
        return Err(VaultError::bad(format!(
            "unknown field `{k}` in the leak report: {SHAPE}"
        )));
    }
    let items = match data.get("secrets") {
        None => return Err(VaultError::bad(format!("field `secrets` is required: {SHAPE}"))),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(VaultError::bad(format!(
                "field `secrets` must be a list of strings (or of {{\"secret\", \"source\"}} objects): {SHAPE}"
            )));
        }
    };
    if items.is_empty() {
        return Err(VaultError::bad("field `secrets` is empty: send at least one secret"));
    }
    if items.len() as u64 > max {
        return Err(VaultError::bad(format!(
            "too many secrets in one report ({}; at most {max}): split it into several reports",
            items.len()
        )));
    }
    let mut secrets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let bad = |what: &str| VaultError::bad(format!("secrets[{i}] {what}"));
        let s = match item {
            Value::String(s) => ReportedSecret::Bare(s.clone()),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| *k != "secret" && *k != "source") {
                    return Err(bad(&format!(
                        "has an unknown field `{k}`: it takes `secret` and `source`"
                    )));
                }
                let Some(Value::String(secret)) = o.get("secret") else {
                    return Err(bad("needs a string field `secret`"));
                };
                ReportedSecret::WithSource {
                    secret: secret.clone(),
                    source: source(o.get("source"), &format!("secrets[{i}].source"))?,
                }
            }
            _ => return Err(bad("must be a string or a {\"secret\", \"source\"} object")),
        };
        if s.secret().is_empty() {
            return Err(bad("is empty"));
        }
        if s.secret().len() > MAX_SECRET_LEN {
            return Err(bad(&format!("is longer than {MAX_SECRET_LEN} bytes")));
        }
        secrets.push(s);
    }
    Ok(ReportRequest {
        secrets,
        source: source(data.get("source"), "source")?,
    })
}

fn source(v: Option<&Value>, field: &str) -> Result<Option<Source>, VaultError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|_| {
            VaultError::bad(format!(
                "field `{field}` must be an object with string fields repository, commit, path and url and a whole \
                 number line"
            ))
        }),
    }
}

/// Act on each secret of a report (revoke or flag), stage its record, and answer alike for known and unknown.
pub(crate) async fn report(
    c: &SysCall<'_>,
    req: &ReportRequest,
    reporter: Reporter,
    fx: &mut Effects,
) -> Result<Reply, VaultError> {
    let outcomes = act_on_all(c, req, reporter, fx).await?;
    Ok(Reply::data(serde_json::to_value(ReportAnswer {
        received: req.secrets.len(),
        receipts: outcomes.into_iter().map(|(id, _)| id).collect(),
    })?))
}

/// Each secret's record id and whether the service issued or stores it (acted on now or before).
async fn act_on_all(
    c: &SysCall<'_>,
    req: &ReportRequest,
    reporter: Reporter,
    fx: &mut Effects,
) -> Result<Vec<(String, bool)>, VaultError> {
    let mut out = Vec::with_capacity(req.secrets.len());
    let mut done = std::collections::HashMap::new();
    let mut recorded = Vec::new();
    for item in &req.secrets {
        let id = record_id(c.st, item.secret())?;
        if let Some(known) = done.get(&id) {
            out.push((id, *known));
            continue;
        }
        let key = format!("{RECORDS}{id}");
        // Idempotent: a secret already recorded was already acted on.
        let known = if c.st.barrier.get(&key)?.is_some() {
            true
        } else if let Some(rec) = act(c, item.secret(), id.clone(), fx).await? {
            let rec = LeakRecord {
                source: item.source(req.source.as_ref()).cloned(),
                reporter,
                ..rec
            };
            tracing::info!(id = %rec.id, kind = ?rec.kind, action = ?rec.action, "leak reported");
            fx.put_json(key, &rec)?;
            recorded.push(rec);
            true
        } else {
            false
        };
        done.insert(id.clone(), known);
        out.push((id, known));
    }
    if !recorded.is_empty() {
        let cfg = c.core.leaks.config(c.st)?;
        // Only once the records are committed: an event never announces what did not happen.
        fx.after(move || crate::leaks::notify(&cfg, recorded));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct GithubMatch {
    token: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// GitHub's partner endpoint: verify the signature over the raw body, act on each token, answer the feedback
/// array (`true_positive` for what this service issued or stores, revoked now or before).
async fn github(c: &SysCall<'_>, fx: &mut Effects) -> Result<Reply, VaultError> {
    use crate::leaks::partner::{BODY_FIELD, KEY_ID_FIELD, SIGNATURE_FIELD, unauthorized};
    let field = |f: &str| c.lr.data.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (Some(signature), Some(key_id)) = (field(SIGNATURE_FIELD), field(KEY_ID_FIELD)) else {
        return Err(unauthorized(
            "the Github-Public-Key-Signature or Github-Public-Key-Identifier header is missing",
        ));
    };
    let body = field(BODY_FIELD).unwrap_or_default();
    let cfg = c.core.leaks.config(c.st)?;
    c.core
        .leaks
        .github_keys
        .verify(&cfg.github_api_url, key_id, signature, body.as_bytes())
        .await?;
    let matches: Vec<GithubMatch> = serde_json::from_str(body)
        .map_err(|_| VaultError::bad("the body must be a JSON array of {\"token\", \"type\", \"url\", \"source\"}"))?;
    if matches.len() as u64 > cfg.max_secrets {
        return Err(VaultError::bad(format!(
            "too many tokens in one request ({}; at most {})",
            matches.len(),
            cfg.max_secrets
        )));
    }
    let req = ReportRequest {
        secrets: matches
            .iter()
            .map(|m| ReportedSecret::WithSource {
                secret: m.token.clone(),
                source: Some(Source {
                    url: m.url.clone(),
                    repository: m.source.clone(),
                    ..Default::default()
                }),
            })
            .collect(),
        source: None,
    };
    let outcomes = act_on_all(c, &req, Reporter::Github, fx).await?;
    let feedback: Vec<Value> = matches
        .iter()
        .zip(outcomes)
        .map(|(m, (_, known))| {
            json!({
                "token_hash": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(m.token.as_bytes())),
                "token_type": m.kind,
                "label": if known { "true_positive" } else { "false_positive" },
            })
        })
        .collect();
    Ok(Reply::raw(Value::Array(feedback)))
}

/// What the service knows `secret` as, and what it did: `None` when it is unknown (nothing is kept of it).
async fn act(c: &SysCall<'_>, secret: &str, id: String, fx: &mut Effects) -> Result<Option<LeakRecord>, VaultError> {
    let now = c.lr.now_unix();
    let record = |kind, action, path: String| LeakRecord {
        id: id.clone(),
        kind,
        action,
        path,
        version: None,
        locations: Vec::new(),
        reported_at: rfc3339(now).unwrap_or_default(),
        source: None,
        reporter: Reporter::Report,
    };
    // A leakstop token: only a well-formed one with a valid checksum is looked up.
    if matches!(parse(secret.as_bytes()), Some(Kind::Service | Kind::Batch)) {
        if let Some(e) = c.st.tokens.lookup(secret, now)? {
            c.core.revoke_token_tree(c.st, &e.hash, now).await?;
            return Ok(Some(record(LeakKind::Token, LeakAction::Revoked, e.path.clone())));
        }
        return Ok(None);
    }
    // An unseal key share of this server: it cannot be revoked by itself (a rekey replaces every share), so it is
    // flagged where operators look.
    if parse(secret.as_bytes()) == Some(Kind::Unseal) {
        let index = format!("{UNSEAL_SHARE_INDEX}{}", c.st.barrier.keyed_hash(secret.as_bytes())?);
        if c.st.barrier.get(&index)?.is_some() {
            return Ok(Some(record(LeakKind::Unseal, LeakAction::Flagged, "sys/unseal".into())));
        }
        return Ok(None);
    }
    // A credential issued under a lease: revoking the lease revokes it at its issuer too.
    let index = format!("{LEASE_INDEX}{}", c.st.barrier.keyed_hash(secret.as_bytes())?);
    if let Some(lease_id) = c.st.barrier.get(&index)? {
        let lease_id = String::from_utf8_lossy(&lease_id).into_owned();
        if crate::leases::get(c.core, &lease_id)?.is_some() {
            if let Err(e) = crate::leases::revoke_all(c.core, std::slice::from_ref(&lease_id), now).await {
                // Not recorded: a later report (or the lease's expiry) tries again. The answer stays the same.
                tracing::warn!(error = %e, "revoking a reported lease failed");
                return Ok(None);
            }
            fx.delete(index);
            let prefix = lease_id.rsplit_once('/').map_or(lease_id.as_str(), |(p, _)| p);
            return Ok(Some(record(LeakKind::Lease, LeakAction::Revoked, prefix.to_string())));
        }
    }
    // A value stored in a KV mount: flagged where it is stored.
    let mounts = c.st.mounts.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut locations = Vec::new();
    for m in mounts {
        let view = c.st.view(&m, false);
        let found = m.backend.find_leaked(secret, c.lr.now, &view).await?;
        fx.extend(view.take_pending());
        // A static role's password: the engine rotated it (or will, as soon as its database answers).
        if let Some(f) = found.iter().find(|f| f.rotated) {
            return Ok(Some(record(
                LeakKind::Static,
                LeakAction::Rotated,
                format!("{}{}", m.entry.path, f.path),
            )));
        }
        locations.extend(found.into_iter().map(|f| KvLocation {
            path: format!("{}{}", m.entry.path, f.path),
            version: f.version,
        }));
    }
    let Some(first) = locations.first() else {
        return Ok(None);
    };
    Ok(Some(LeakRecord {
        version: Some(first.version),
        ..record(LeakKind::Kv, LeakAction::Flagged, first.path.clone())
    })
    .map(|r| LeakRecord { locations, ..r }))
}

fn write_config(c: &SysCall<'_>, fx: &mut Effects) -> Result<Reply, VaultError> {
    let mut cfg = c.core.leaks.config(c.st)?;
    let mut f = Fields::new(&c.lr.data);
    let url = |field: &str, v: String| {
        if v.starts_with("https://") || v.starts_with("http://") {
            Ok(v.trim_end_matches('/').to_string())
        } else {
            Err(VaultError::bad(format!(
                "field `{field}` must be an http(s) URL, e.g. https://api.github.com"
            )))
        }
    };
    if let Some(u) = f.string("github_api_url")? {
        cfg.github_api_url = url("github_api_url", u)?;
    }
    if let Some(u) = f.string("notify_url")? {
        cfg.notify_url = if u.is_empty() {
            None
        } else {
            Some(url("notify_url", u)?)
        };
    }
    if let Some(k) = f.string("notify_secret")? {
        cfg.notify_secret = (!k.is_empty()).then_some(k);
    }
    for (field, slot) in [
        ("rate_burst", &mut cfg.rate_burst),
        ("rate_per_second", &mut cfg.rate_per_second),
        ("max_secrets", &mut cfg.max_secrets),
    ] {
        if let Some(n) = f.u64(field)? {
            if n == 0 {
                return Err(VaultError::bad(format!("field `{field}` must be at least 1")));
            }
            *slot = n;
        }
    }
    f.finish()?;
    fx.put_json(CONFIG_PATH, &cfg)?;
    let core = c.core.clone();
    fx.after(move || core.leaks.set_config(cfg));
    Ok(Reply::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ReportRequest, String> {
        parse_report(v.as_object().unwrap(), 3).map_err(|e| e.to_string())
    }

    #[test]
    fn malformed_reports_are_refused_without_echoing_the_secret() {
        let secret = "lkss_do-not-echo-me";
        for (body, says) in [
            (json!({}), "`secrets` is required"),
            (json!({"secrets": secret}), "must be a list"),
            (json!({"secrets": []}), "is empty"),
            (json!({"secrets": [secret, 1]}), "secrets[1] must be a string"),
            (json!({"secrets": [""]}), "secrets[0] is empty"),
            (json!({"secrets": ["a", "b", "c", "d"]}), "too many secrets"),
            (json!({"secrets": [secret], "extra": secret}), "unknown field `extra`"),
            (
                json!({"secrets": [secret], "source": secret}),
                "field `source` must be an object",
            ),
            (
                json!({"secrets": [{"secret": secret, "source": {"line": secret}}]}),
                "secrets[0].source",
            ),
            (json!({"secrets": [{"token": secret}]}), "unknown field `token`"),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
            assert!(!e.contains("do-not-echo"), "{body}: {e}");
        }
        let ok = parse(json!({"secrets": ["a", {"secret": "b", "source": {"path": "x", "line": 2}}]})).unwrap();
        assert_eq!(ok.secrets.len(), 2);
    }
}
