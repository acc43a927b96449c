//! Text that resembles credentials but is not one must produce no match from any builtin rule: placeholders,
//! templates, hashes, UUIDs, lockfiles, minified code, public keys, documentation values.
#![forbid(unsafe_code)]

use leakstop_rules::RuleSet;

const LOOKALIKES: &[(&str, &str)] = &[
    (
        ".env.example",
        "DATABASE_URL=postgres://user:password@localhost:5432/app\nREDIS_URL=redis://localhost:6379\n\
         SECRET_KEY=change-me-in-production\nGITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\
         API_KEY=<your-api-key>\nSTRIPE_SECRET=sk_test_your_key_here\nDB_PASSWORD=\nSMTP_PASSWORD=${SMTP_PASSWORD}\n",
    ),
    (
        "docker-compose.yml",
        "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set it}\n      \
         DATABASE_URL: postgres://app:${DB_PASS}@db:5432/app\n  api:\n    environment:\n      \
         API_TOKEN: \"{{ api_token }}\"\n      JWT_SECRET: ${JWT_SECRET}\n",
    ),
    (
        "package-lock.json",
        r#"{"node_modules/lodash": {"version": "4.17.21", "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz",
        "integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17LhbZVGedAJv8XZ1tvj5FvSg=="}}"#,
    ),
    (
        "Cargo.lock",
        "[[package]]\nname = \"aho-corasick\"\nversion = \"1.1.3\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
         checksum = \"8e60d3430d3a69478ad0993f19238d2df97c507009a52b3c10addcd7f6bcb916\"\n",
    ),
    (
        "ids.txt",
        "request_id=550e8400-e29b-41d4-a716-446655440000\ncommit 8f3a9c1d2e7b4a6f0c5d9e8b7a6f5e4d3c2b1a09\n\
         sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nsession_token_ttl = 3600\n",
    ),
    (
        "app.min.js",
        "!function(e){var t={};function n(r){if(t[r])return t[r].exports;var o=t[r]={i:r,l:!1,exports:{}};return \
         e[r].call(o.exports,o,o.exports,n),o.l=!0,o.exports}n.m=e,n.c=t,n.d=function(e,t,r){n.o(e,t)||Object.\
         defineProperty(e,t,{enumerable:!0,get:r})};var tokenizer=function(a){return a.split(/\\s+/)};\
         var password=document.getElementById(\"password\").value;var secret=cfg.secretKey}([]);",
    ),
    (
        "settings.py",
        "SECRET_KEY = os.environ['DJANGO_SECRET_KEY']\nDATABASES = {'default': {'PASSWORD': os.getenv('DB_PASSWORD')}}\n\
         AUTH_PASSWORD_VALIDATORS = [{'NAME': 'django.contrib.auth.password_validation.MinimumLengthValidator'}]\n\
         api_key = settings.API_KEY\ntoken = request.headers.get('Authorization')\n",
    ),
    (
        "main.tf",
        "variable \"db_password\" {\n  type      = string\n  sensitive = true\n}\nresource \"aws_db_instance\" \"db\" {\n  \
         password = var.db_password\n  secret_arn = aws_secretsmanager_secret.db.arn\n}\n",
    ),
    (
        "keys.md",
        "Add your public key:\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEk8cGq5DwVrG4s3aYw1mJ0o2nTn0mRz8GxYQd7Lw1bK you@host\n\n\
         -----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAc92P2+zHd3OC2pYwL82D\n-----END PUBLIC KEY-----\n\
         Never commit a file starting with `-----BEGIN RSA PRIVATE KEY-----`.\n",
    ),
    (
        "test_auth.py",
        "def test_login():\n    assert login('alice', 'hunter2') is False\n    headers = {'Authorization': 'Bearer <token>'}\n    \
         client.get('/', headers={'Authorization': f'Bearer {token}'})\n",
    ),
    (
        "k8s-secret-template.yaml",
        "apiVersion: v1\nkind: Secret\nstringData:\n  password: {{ .Values.db.password | quote }}\n  \
         token: \"{{ required \\\"token\\\" .Values.token }}\"\n",
    ),
    (
        "image.css",
        ".logo{background:url(data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAAGXRFWHRTb2Z0d2FyZQBBZG9iZSBJbWFnZVJlYWR5ccllPAAAAZ)}",
    ),
];

#[test]
fn no_builtin_rule_matches_lookalikes() {
    let set = RuleSet::builtin_strict().unwrap_or_else(|e| panic!("builtin rule files are invalid:\n{e}"));
    let mut failures = Vec::new();
    for (name, text) in LOOKALIKES {
        let lower = text.to_ascii_lowercase();
        for rule in set.rules() {
            if !rule.keywords.iter().any(|k| lower.contains(k.as_str())) {
                continue;
            }
            for m in rule.find_iter(text.as_bytes()) {
                failures.push(format!("{name}: rule {} matched {:?}", rule.id, &text[m.span.clone()]));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} false positive(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same harness finds planted secrets, one per kind, in an ordinary-looking config file.
#[test]
fn planted_secrets_are_found_by_the_right_rule() {
    let text = "\
# deploy settings
GITHUB_TOKEN=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
VAULT_TOKEN=lkss_SpxkMzN5E6EUCLDUdvdr0UwfMpf5rg7wOojm3JNxJK
DATABASE_URL=postgres://billing:Qz7r2LmX9vKp@db.internal:5432/billing
SESSION=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMDI5Mzg0NzU2IiwibmFtZSI6IkFkYSBCeXJvbiIsImlhdCI6MTcxNjIzOTAyMiwiZXhwIjoxNzE2MjQyNjIyfQ.U5GUmYRQaMy5cX-_GSsmjloOgig_kszJE0BR3iIVO20
WEBHOOK_SECRET=8Qx2vLm9TzK4pW7rYc3N
SOPS_AGE_KEY=AGE-SECRET-KEY-18HUG6AS6HGJG078NK33V30V0VZRQ3SMPZXW3Y920H77KD44LGY8UDUMSCF
";
    let set = RuleSet::builtin();
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<(&str, usize)> = Vec::new();
    for rule in set.rules() {
        if !rule.keywords.iter().any(|k| lower.contains(k.as_str())) {
            continue;
        }
        for m in rule.find_iter(text.as_bytes()) {
            let line = text[..m.secret.start].matches('\n').count() + 1;
            found.push((rule.id.as_str(), line));
        }
    }
    for (id, line) in [
        ("github-pat-classic", 2),
        ("leakstop-token", 3),
        ("uri-postgres", 4),
        ("jwt", 5),
        ("generic-secret", 6),
        ("age-secret-key", 7),
    ] {
        assert!(
            found.contains(&(id, line)),
            "{id} on line {line} not found; found {found:?}"
        );
    }
    let kind = set
        .get("leakstop-token")
        .and_then(|r| r.find_iter(text.as_bytes()).first().and_then(|m| m.kind));
    assert_eq!(kind, Some("service token"));
}
