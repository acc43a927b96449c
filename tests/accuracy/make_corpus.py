#!/usr/bin/env python3
"""Generate a labelled accuracy corpus for leakstop (issue 18).

Every value is made up here from public format facts (prefix, charset, length, checksum), not taken from any rule's
`examples`, so the corpus measures how rules generalise. Positives and hard negatives are embedded in realistic files
of many formats under OUT_DIR/tree; OUT_DIR/labels.jsonl records one line per labelled value:
  {"path": <relative>, "line": first line, "end_line": last line, "family": ..., "is_secret": true|false, "kind": ...}

Usage: make_corpus.py OUT_DIR [--seed N] [--files-per-family N]
Deterministic for a given seed. Writes nothing outside OUT_DIR.
"""

import argparse
import base64
import binascii
import hashlib
import json
import pathlib
import random
import string
import sys
import uuid

UPPER = string.ascii_uppercase
LOWER = string.ascii_lowercase
DIGITS = string.digits
HEX = "0123456789abcdef"
ALNUM = DIGITS + UPPER + LOWER
BASE62 = DIGITS + UPPER + LOWER  # GitHub's checksum alphabet order
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"


class Gen:
    """Random helpers bound to one seeded generator."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def s(self, alphabet, n):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def mixed(self, alphabet, n):
        # Real tokens mix classes; a run of one class looks like a placeholder to any scanner.
        while True:
            v = self.s(alphabet, n)
            need_digits = 2 if any(c.isdigit() for c in alphabet) else 0
            need_alpha = 2 if any(c.isalpha() for c in alphabet) else 0
            if sum(c.isdigit() for c in v) >= need_digits and sum(c.isalpha() for c in v) >= need_alpha:
                return v

    def password(self):
        core = self.mixed(ALNUM, self.r.randint(12, 20))
        return core[:5] + self.r.choice("!#%^*-_.") + core[5:]

    def word(self):
        return self.r.choice(["orders", "billing", "ledger", "inventory", "reports", "auth", "search", "mailer"])

    def host(self):
        return f"{self.word()}-{self.r.randint(1, 9)}.{self.r.choice(['internal', 'prod.corp', 'svc.cluster.local'])}"


def base62_6(v):
    out = []
    for _ in range(6):
        out.append(BASE62[v % 62])
        v //= 62
    return "".join(reversed(out))


def crc_token(g, prefix, random_len=30):
    body = g.mixed(ALNUM, random_len)
    return prefix + body + base62_6(binascii.crc32(body.encode()) & 0xFFFFFFFF)


def bad_crc_token(g, prefix, random_len=30):
    tok = crc_token(g, prefix, random_len)
    last = tok[-1]
    return tok[:-1] + ("A" if last != "A" else "B")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(g):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": str(g.r.randint(10**6, 10**7)), "name": "svc-" + g.word(),
                                 "iat": 1700000000 + g.r.randint(0, 10**7)}).encode())
    sig = b64url(bytes(g.r.getrandbits(8) for _ in range(32)))
    return f"{header}.{payload}.{sig}"


def pem_block(g, label, nbytes=1190):
    raw = bytes(g.r.getrandbits(8) for _ in range(nbytes))
    if "OPENSSH" in label:
        # The format's magic, then cipher "none", kdf "none", empty kdf options, one key.
        raw = b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00\x00\x00\x00\x01" + raw
    else:
        raw = b"\x30\x82" + (nbytes - 4).to_bytes(2, "big") + raw[4:]  # DER SEQUENCE header, as every key has
    body = base64.b64encode(raw).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return [f"-----BEGIN {label}-----"] + lines + [f"-----END {label}-----"]


def aws_secret(g):
    return g.mixed(ALNUM + "+/", 40)


# --- families --------------------------------------------------------------------------------------------------
# Each family: (key name used in the file, positive generator, list of negative generators).
# A generator returns a str (one-line value) or a list of str (a multi-line block written verbatim).

def fam_table(g):
    t = {}
    t["github-pat"] = ("GITHUB_TOKEN", lambda: crc_token(g, "ghp_"), [
        lambda: bad_crc_token(g, "ghp_"),                     # checksum wrong
        lambda: "ghp_" + g.mixed(ALNUM, 20),                 # too short
        lambda: "ghp_" + "x" * 36,
    ])
    t["github-oauth"] = ("GH_OAUTH_TOKEN", lambda: crc_token(g, g.r.choice(["gho_", "ghu_", "ghs_", "ghr_"])), [
        lambda: bad_crc_token(g, "gho_"),
    ])
    t["github-fine-grained"] = ("GITHUB_PAT", lambda: "github_pat_" + g.mixed(ALNUM, 22) + "_" + g.mixed(ALNUM, 59), [
        lambda: "github_pat_<your-token-here>",
    ])
    t["npm"] = ("NPM_TOKEN", lambda: crc_token(g, "npm_"), [lambda: bad_crc_token(g, "npm_")])
    t["gitlab-pat"] = ("GITLAB_TOKEN", lambda: "glpat-" + g.mixed(B64URL, 20), [
        lambda: "glpat-" + g.mixed(ALNUM, 8),
        lambda: "glpat-xxxxxxxxxxxxxxxxxxxx",
    ])
    t["aws-access-key"] = ("AWS_ACCESS_KEY_ID", lambda: "AKIA" + g.mixed(UPPER + "234567", 16), [
        lambda: "AKIA" + g.s(UPPER, 10),                      # too short
        lambda: "AKIA" + "X" * 16,
    ])
    t["aws-secret-key"] = ("aws_secret_access_key", lambda: aws_secret(g), [
        lambda: "${AWS_SECRET_ACCESS_KEY}",
        lambda: "<your-secret-access-key>",
    ])
    t["slack-bot"] = ("SLACK_BOT_TOKEN",
                      lambda: f"xoxb-{g.s(DIGITS, 12)}-{g.s(DIGITS, 13)}-{g.mixed(ALNUM, 24)}", [
        lambda: "xoxb-your-bot-token",
        lambda: "xoxb-XXXXXXXXXXXX-XXXXXXXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXX",
    ])
    t["slack-webhook"] = ("SLACK_WEBHOOK_URL",
                          lambda: f"https://hooks.slack.com/services/T{g.mixed(UPPER + DIGITS, 10)}/"
                                  f"B{g.mixed(UPPER + DIGITS, 10)}/{g.mixed(ALNUM, 24)}", [
        lambda: "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ])
    t["stripe-live"] = ("STRIPE_SECRET_KEY", lambda: "sk_live_" + g.mixed(ALNUM, g.r.choice([24, 99])), [
        lambda: "sk_live_" + "x" * 24,
        lambda: "pk_live_" + g.mixed(ALNUM, 24),              # publishable: public by design
    ])
    t["google-api-key"] = ("GOOGLE_API_KEY", lambda: "AIza" + g.mixed(B64URL, 35), [
        lambda: "AIza" + g.mixed(B64URL, 20),
    ])
    t["openai"] = ("OPENAI_API_KEY", lambda: "sk-proj-" + g.mixed(B64URL, 74) + "T3BlbkFJ" + g.mixed(B64URL, 74), [
        lambda: "sk-proj-...",
        lambda: "sk-your-openai-key",
    ])
    t["anthropic"] = ("ANTHROPIC_API_KEY", lambda: "sk-ant-api03-" + g.mixed(B64URL, 93) + "AA", [
        lambda: "sk-ant-api03-REPLACE_ME",
    ])
    t["sendgrid"] = ("SENDGRID_API_KEY", lambda: "SG." + g.mixed(B64URL, 22) + "." + g.mixed(B64URL, 43), [
        lambda: "SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ])
    t["twilio-api-key"] = ("TWILIO_API_KEY", lambda: "SK" + g.mixed(HEX, 32), [
        lambda: "SK" + "0" * 32,
    ])
    t["mailgun"] = ("MAILGUN_API_KEY", lambda: "key-" + g.mixed(HEX, 32), [lambda: "key-" + g.mixed(HEX, 12)])
    t["shopify"] = ("SHOPIFY_ACCESS_TOKEN", lambda: g.r.choice(["shpat_", "shpca_", "shppa_"]) + g.mixed(HEX, 32), [
        lambda: "shpat_" + g.mixed(ALNUM.replace("a", ""), 32).upper(),   # wrong charset (not hex)
    ])
    t["digitalocean"] = ("DIGITALOCEAN_TOKEN", lambda: "dop_v1_" + g.mixed(HEX, 64), [
        lambda: "dop_v1_" + g.mixed(HEX, 20),
    ])
    t["vault-token"] = ("VAULT_TOKEN", lambda: "hvs." + g.mixed(B64URL, 90), [lambda: "hvs.example"])
    t["docker-hub"] = ("DOCKERHUB_TOKEN", lambda: "dckr_pat_" + g.mixed(B64URL, 27), [lambda: "dckr_pat_changeme"])
    t["huggingface"] = ("HF_TOKEN", lambda: "hf_" + g.mixed(UPPER + LOWER, 34), [lambda: "hf_" + "x" * 34])
    t["age-key"] = ("AGE_SECRET_KEY", lambda: "AGE-SECRET-KEY-1" + g.s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58), [
        lambda: "AGE-SECRET-KEY-1" + g.s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 10),
    ])
    t["databricks"] = ("DATABRICKS_TOKEN", lambda: "dapi" + g.mixed(HEX, 32), [lambda: "dapi" + g.mixed(HEX, 8)])
    t["pulumi"] = ("PULUMI_ACCESS_TOKEN", lambda: "pul-" + g.mixed(HEX, 40), [lambda: "pul-" + "0" * 40])
    t["newrelic-user"] = ("NEW_RELIC_API_KEY", lambda: "NRAK-" + g.mixed(UPPER + DIGITS, 27), [
        lambda: "NRAK-XXXXXXXXXXXXXXXXXXXXXXXXXXX",
    ])
    t["grafana-sa"] = ("GRAFANA_TOKEN", lambda: "glsa_" + g.mixed(ALNUM, 32) + "_" + g.mixed(HEX, 8), [
        lambda: "glsa_<token>",
    ])
    t["planetscale"] = ("PLANETSCALE_TOKEN", lambda: "pscale_tkn_" + g.mixed(B64URL, 43), [
        lambda: "pscale_tkn_" + "x" * 43,
    ])
    t["supabase"] = ("SUPABASE_ACCESS_TOKEN", lambda: "sbp_" + g.mixed(HEX, 40), [lambda: "sbp_" + g.mixed(HEX, 10)])
    t["postman"] = ("POSTMAN_API_KEY", lambda: "PMAK-" + g.mixed(HEX, 24) + "-" + g.mixed(HEX, 34), [
        lambda: "PMAK-your-api-key",
    ])
    t["rubygems"] = ("GEM_HOST_API_KEY", lambda: "rubygems_" + g.mixed(HEX, 48), [lambda: "rubygems_" + "0" * 48])
    t["sentry-user"] = ("SENTRY_AUTH_TOKEN", lambda: "sntryu_" + g.mixed(HEX, 64), [lambda: "sntryu_" + g.mixed(HEX, 8)])
    t["doppler"] = ("DOPPLER_TOKEN", lambda: "dp.pt." + g.mixed(ALNUM, 43), [lambda: "dp.pt.example"])
    t["linear"] = ("LINEAR_API_KEY", lambda: "lin_api_" + g.mixed(ALNUM, 40), [lambda: "lin_api_" + "x" * 40])
    t["telegram-bot"] = ("TELEGRAM_BOT_TOKEN", lambda: f"{g.r.randint(10**8, 10**10 - 1)}:AA{g.mixed(B64URL, 33)}", [
        lambda: "123456789:your-telegram-bot-token",
    ])
    t["discord-webhook"] = ("DISCORD_WEBHOOK",
                            lambda: f"https://discord.com/api/webhooks/{g.s(DIGITS, 18)}/{g.mixed(B64URL, 68)}", [
        lambda: "https://discord.com/api/webhooks/<id>/<token>",
    ])
    t["jwt"] = ("ID_TOKEN", lambda: jwt(g), [lambda: "eyJhbGciOi...truncated"])
    t["azure-storage"] = ("AZURE_STORAGE_CONNECTION_STRING",
                          lambda: f"DefaultEndpointsProtocol=https;AccountName={g.word()}{g.r.randint(10, 99)};"
                                  f"AccountKey={base64.b64encode(bytes(g.r.getrandbits(8) for _ in range(64))).decode()};"
                                  "EndpointSuffix=core.windows.net", [
        lambda: "UseDevelopmentStorage=true",
    ])
    t["uri-postgres"] = ("DATABASE_URL", lambda: f"postgres://app_{g.word()}:{g.password()}@{g.host()}:5432/{g.word()}", [
        lambda: "postgres://user:password@localhost:5432/db",
        lambda: "postgres://${DB_USER}:${DB_PASSWORD}@db:5432/app",
    ])
    t["uri-mysql"] = ("MYSQL_URL", lambda: f"mysql://{g.word()}:{g.password()}@{g.host()}:3306/{g.word()}", [
        lambda: "mysql://root:changeme@localhost/test",
    ])
    t["uri-mongodb"] = ("MONGO_URI", lambda: f"mongodb+srv://{g.word()}:{g.password()}@cluster0.{g.s(LOWER, 5)}.mongodb.net/{g.word()}", [
        lambda: "mongodb://localhost:27017/test",
    ])
    t["uri-redis"] = ("REDIS_URL", lambda: f"redis://default:{g.password()}@{g.host()}:6379/0", [
        lambda: "redis://localhost:6379/0",
    ])
    t["uri-amqp"] = ("AMQP_URL", lambda: f"amqps://{g.word()}:{g.password()}@{g.host()}:5671/vhost", [
        lambda: "amqp://guest:guest@localhost:5672/",
    ])
    t["jdbc"] = ("spring.datasource.url",
                 lambda: f"jdbc:postgresql://{g.host()}:5432/{g.word()}?user={g.word()}&password={g.password()}", [
        lambda: f"jdbc:postgresql://{g.host()}:5432/app",
    ])
    t["adonet"] = ("ConnectionString",
                   lambda: f"Server={g.host()};Database={g.word()};User Id=sa_{g.word()};Password={g.password()};", [
        lambda: "Server=localhost;Database=app;Integrated Security=true;",
    ])
    t["generic-password"] = ("password", lambda: g.password(), [
        lambda: "changeme",
        lambda: "${DB_PASSWORD}",
        lambda: "<your-password>",
        lambda: "xxxxxxxxxxxx",
        lambda: "password",
        lambda: "example-password",
    ])
    t["generic-secret"] = ("client_secret", lambda: g.mixed(ALNUM, 32), [
        lambda: "{{ .Values.clientSecret }}",
        lambda: "REPLACE_WITH_CLIENT_SECRET",
        lambda: "test",
    ])
    t["generic-api-key"] = ("api_key", lambda: g.mixed(HEX, 32), [
        lambda: "YOUR_API_KEY_HERE",
        lambda: "%(API_KEY)s",
    ])
    t["private-key-rsa"] = ("private_key", lambda: pem_block(g, "RSA PRIVATE KEY"), [
        lambda: pem_block(g, "CERTIFICATE", 600),     # certificates are public
        lambda: pem_block(g, "PUBLIC KEY", 270),
    ])
    t["private-key-openssh"] = ("ssh_key", lambda: pem_block(g, "OPENSSH PRIVATE KEY", 1000), [
        lambda: ["-----BEGIN OPENSSH PRIVATE KEY-----", "...", "-----END OPENSSH PRIVATE KEY-----"],
    ])
    t["basic-auth-header"] = ("Authorization",
                              lambda: "Basic " + base64.b64encode(f"{g.word()}:{g.password()}".encode()).decode(), [
        lambda: "Basic " + base64.b64encode(b"user:password").decode(),
    ])
    t["netrc"] = ("netrc", lambda: f"machine {g.host()} login {g.word()} password {g.password()}", [
        lambda: "machine example.com login anonymous password anonymous",
    ])
    return t


# Hard negatives that belong to no family: values a scanner must leave alone in any file.
def standalone_negatives(g):
    return {
        "uuid": lambda: str(uuid.UUID(int=g.r.getrandbits(128))),
        "sha1-commit": lambda: hashlib.sha1(g.s(ALNUM, 20).encode()).hexdigest(),
        "sha256": lambda: hashlib.sha256(g.s(ALNUM, 20).encode()).hexdigest(),
        "integrity": lambda: "sha512-" + base64.b64encode(hashlib.sha512(g.s(ALNUM, 9).encode()).digest()).decode(),
        "image-data": lambda: "data:image/png;base64," + base64.b64encode(bytes(g.r.getrandbits(8) for _ in range(90))).decode(),
        "env-lookup": lambda: None,  # rendered specially: os.environ / process.env lookups
    }


# --- file renderers ---------------------------------------------------------------------------------------------
# A renderer takes a list of (key, value) pairs and returns (lines, {index -> (start, end)}) with 1-based lines.

def _quote(v):
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(lines, items, fmt_one, fmt_multi, header=(), footer=()):
    out = list(header)
    spans = {}
    for i, (k, v) in enumerate(items):
        out.append("")
        start = len(out) + 1
        if isinstance(v, list):
            out.extend(fmt_multi(k, v))
        else:
            out.append(fmt_one(k, v))
        spans[i] = (start, len(out))
    out.extend(footer)
    return out, spans


def r_env(items):
    return _block(None, items, lambda k, v: f"{k.upper().replace('.', '_')}={v}",
                  lambda k, v: [f'{k.upper()}="{v[0]}'] + v[1:-1] + [f'{v[-1]}"'],
                  header=["# service configuration", "APP_ENV=production", "PORT=8080"])


def r_yaml(items):
    return _block(None, items, lambda k, v: f"  {k}: {_quote(v)}",
                  lambda k, v: [f"  {k}: |"] + ["    " + x for x in v],
                  header=["app:", "  name: billing", "  replicas: 3"])


def r_json(items):
    out = ["{", '  "name": "service",', '  "debug": false,']
    spans = {}
    for i, (k, v) in enumerate(items):
        start = len(out) + 1
        val = "\\n".join(v) if isinstance(v, list) else v
        out.append(f'  {json.dumps(k)}: {json.dumps(val)},')
        spans[i] = (start, start)
    out.append('  "timeout": 30')
    out.append("}")
    return out, spans


def r_toml(items):
    return _block(None, items, lambda k, v: f"{k} = {_quote(v)}",
                  lambda k, v: [f'{k} = """'] + v + ['"""'], header=["[service]", 'name = "ledger"', "workers = 4"])


def r_ini(items):
    return _block(None, items, lambda k, v: f"{k} = {v}", lambda k, v: [f"{k} = {v[0]}"] + ["  " + x for x in v[1:]],
                  header=["[database]", "host = 10.0.0.12", "port = 5432"])


def r_properties(items):
    return _block(None, items, lambda k, v: f"{k}={v}",
                  lambda k, v: [f"{k}={v[0]}\\"] + [x + "\\" for x in v[1:-1]] + [v[-1]],
                  header=["server.port=8080", "spring.application.name=orders"])


def r_xml(items):
    return _block(None, items, lambda k, v: f'  <add key="{k}" value="{v}" />',
                  lambda k, v: [f"  <{k.replace(' ', '')}>"] + v + [f"  </{k.replace(' ', '')}>"],
                  header=['<?xml version="1.0" encoding="utf-8"?>', "<configuration>", "  <appSettings>"],
                  footer=["  </appSettings>", "</configuration>"])


def r_hcl(items):
    return _block(None, items, lambda k, v: f"  {k.lower().replace('.', '_')} = {_quote(v)}",
                  lambda k, v: [f"  {k} = <<EOT"] + v + ["EOT"],
                  header=['resource "aws_lambda_function" "worker" {', '  runtime = "python3.12"'], footer=["}"])


def r_shell(items):
    return _block(None, items, lambda k, v: f"export {k.upper().replace('.', '_')}='{v}'",
                  lambda k, v: [f"cat > /tmp/key <<'EOF'"] + v + ["EOF"],
                  header=["#!/usr/bin/env bash", "set -euo pipefail"], footer=['exec ./server "$@"'])


def r_python(items):
    return _block(None, items, lambda k, v: f"{k.upper().replace('.', '_')} = {_quote(v)}",
                  lambda k, v: [f'{k.upper()} = """{v[0]}'] + v[1:-1] + [f'{v[-1]}"""'],
                  header=['"""Settings for the worker."""', "import os", "", "DEBUG = False"])


def r_js(items):
    return _block(None, items, lambda k, v: f"  {k.replace('.', '_')}: {_quote(v)},",
                  lambda k, v: [f"  {k}: `{v[0]}"] + v[1:-1] + [f"{v[-1]}`,"],
                  header=["// runtime configuration", "module.exports = {", "  port: 3000,"], footer=["};"])


def r_ts(items):
    return _block(None, items, lambda k, v: f"export const {k.upper().replace('.', '_')}: string = {_quote(v)};",
                  lambda k, v: [f"export const {k.upper()} = `{v[0]}"] + v[1:-1] + [f"{v[-1]}`;"],
                  header=["import { Config } from './types';", ""])


def r_go(items):
    return _block(None, items, lambda k, v: f"\t{k.title().replace('_', '').replace('.', '')} = {_quote(v)}",
                  lambda k, v: [f"\t{k.title().replace('_', '')} = `{v[0]}"] + v[1:-1] + [f"{v[-1]}`"],
                  header=["package config", "", "const ("], footer=[")"])


def r_java(items):
    return _block(None, items,
                  lambda k, v: f"    private static final String {k.upper().replace('.', '_')} = {_quote(v)};",
                  lambda k, v: [f"    private static final String {k.upper()} = \"{v[0]}\\n\" +"]
                  + [f'        "{x}\\n" +' for x in v[1:-1]] + [f'        "{v[-1]}";'],
                  header=["package com.example.billing;", "", "public final class Settings {"], footer=["}"])


def r_csharp(items):
    return _block(None, items, lambda k, v: f"        public const string {k.title().replace('_', '').replace('.', '')} = {_quote(v)};",
                  lambda k, v: [f'        public const string {k.title().replace("_", "")} = @"{v[0]}'] + v[1:-1] + [f'{v[-1]}";'],
                  header=["namespace Billing", "{", "    public static class Settings", "    {"], footer=["    }", "}"])


def r_php(items):
    return _block(None, items, lambda k, v: f"    '{k}' => '{v}',",
                  lambda k, v: [f"    '{k}' => '{v[0]}"] + v[1:-1] + [f"{v[-1]}',"],
                  header=["<?php", "", "return ["], footer=["];"])


def r_ruby(items):
    return _block(None, items, lambda k, v: f"  config.{k.lower().replace('.', '_')} = {_quote(v)}",
                  lambda k, v: [f"  config.{k} = <<~KEY"] + ["    " + x for x in v] + ["  KEY"],
                  header=["Rails.application.configure do"], footer=["end"])


def r_sql(items):
    return _block(None, items, lambda k, v: f"INSERT INTO settings (name, value) VALUES ('{k}', '{v}');",
                  lambda k, v: [f"INSERT INTO settings (name, value) VALUES ('{k}', '{v[0]}"] + v[1:-1] + [f"{v[-1]}');"],
                  header=["-- seed data", "BEGIN;"], footer=["COMMIT;"])


def r_dockerfile(items):
    return _block(None, items, lambda k, v: f"ENV {k.upper().replace('.', '_')}={v}",
                  lambda k, v: ["RUN mkdir -p /root/.ssh && printf '%s\\n' \\"] + [f"    '{x}' \\" for x in v] + ["    > /root/.ssh/id"],
                  header=["FROM python:3.12-slim", "WORKDIR /app"], footer=['CMD ["python", "-m", "app"]'])


def r_k8s(items):
    return _block(None, items, lambda k, v: f"  {k.lower().replace('.', '-').replace('_', '-')}: {_quote(v)}",
                  lambda k, v: [f"  {k.lower().replace('_', '-')}: |"] + ["    " + x for x in v],
                  header=["apiVersion: v1", "kind: Secret", "metadata:", "  name: app-secrets", "type: Opaque",
                          "stringData:"])


def r_gha(items):
    return _block(None, items, lambda k, v: f"      {k.upper().replace('.', '_')}: {_quote(v)}",
                  lambda k, v: [f"      {k.upper()}: |"] + ["        " + x for x in v],
                  header=["name: deploy", "on: [push]", "jobs:", "  deploy:", "    runs-on: ubuntu-latest", "    env:"],
                  footer=["    steps:", "      - uses: actions/checkout@v4", "      - run: make deploy"])


def r_ipynb(items):
    # A notebook: each value in Python source inside one code cell, one JSON string per source line.
    out = ["{", ' "cells": [', "  {", '   "cell_type": "code",', '   "execution_count": null,', '   "metadata": {},',
           '   "outputs": [],', '   "source": [', '    "import os\\n",']
    spans = {}
    for i, (k, v) in enumerate(items):
        name = k.upper().replace(".", "_").replace(" ", "_")
        src = [f"{name} = {_quote(v)}"] if not isinstance(v, list) else (
            [f'{name} = """{v[0]}'] + v[1:-1] + [f'{v[-1]}"""'])
        start = len(out) + 1
        out.extend(f"    {json.dumps(x + chr(10))}," for x in src)
        spans[i] = (start, len(out))
    out += ['    "print(\'ready\')"', "   ]", "  }", " ],", ' "metadata": {},', ' "nbformat": 4,', ' "nbformat_minor": 5', "}"]
    return out, spans


RENDERERS = {
    "analysis.ipynb": r_ipynb,
    ".env": r_env, "config.yaml": r_yaml, "settings.json": r_json, "config.toml": r_toml, "app.ini": r_ini,
    "application.properties": r_properties, "web.config": r_xml, "main.tf": r_hcl, "deploy.sh": r_shell,
    "settings.py": r_python, "config.js": r_js, "config.ts": r_ts, "config.go": r_go, "Settings.java": r_java,
    "Settings.cs": r_csharp, "config.php": r_php, "production.rb": r_ruby, "seed.sql": r_sql,
    "Dockerfile": r_dockerfile, "secret.yaml": r_k8s, ".github/workflows/deploy.yml": r_gha,
}

ENV_LOOKUPS = {
    "settings.py": 'API_TOKEN = os.environ["API_TOKEN"]',
    "config.js": "  apiToken: process.env.API_TOKEN,",
    "config.ts": "export const API_TOKEN = process.env.API_TOKEN ?? '';",
    "config.go": '\tApiToken = "" // set from os.Getenv("API_TOKEN")',
    "deploy.sh": 'export API_TOKEN="${API_TOKEN:?set API_TOKEN}"',
    "production.rb": '  config.api_token = ENV.fetch("API_TOKEN")',
    ".github/workflows/deploy.yml": "      API_TOKEN: ${{ secrets.API_TOKEN }}",
}


def build(out, seed, per_family):
    g = Gen(seed)
    fams = fam_table(g)
    negs = standalone_negatives(g)
    names = sorted(RENDERERS)
    labels = []
    n_file = 0
    for fam in sorted(fams):
        key, pos, neg_gens = fams[fam]
        for rep in range(per_family):
            # Each file: one positive plus one hard negative of the family, plus one standalone negative.
            kind_neg = neg_gens[rep % len(neg_gens)]
            extra_kind = sorted(negs)[(rep + n_file) % len(negs)]
            fname = names[(n_file * 7) % len(names)]  # 7 is coprime with the renderer count: all are used
            n_file += 1
            items = [(key, pos(), fam, True, "positive"), (key, kind_neg(), fam, False, "look-alike")]
            if extra_kind != "env-lookup":
                items.append((g.r.choice(["checksum", "build_id", "commit", "asset", "id"]), negs[extra_kind](),
                              "hard-negative", False, extra_kind))
            g.r.shuffle(items)
            lines, spans = RENDERERS[fname]([(k, v) for k, v, *_ in items])
            if extra_kind == "env-lookup" and fname in ENV_LOOKUPS:
                lines.append(ENV_LOOKUPS[fname])
                spans[len(items)] = (len(lines), len(lines))
                items.append(("API_TOKEN", None, "hard-negative", False, "env-lookup"))
            rel = f"{fam}/{rep:02d}/{fname}"
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
            for i, (_k, _v, family, is_secret, kind) in enumerate(items):
                start, end = spans[i]
                labels.append({"path": rel, "line": start, "end_line": end, "family": family,
                               "is_secret": is_secret, "kind": kind})
    # Files that must produce no finding at all: a lockfile and documentation full of placeholders.
    lock = out / "clean" / "package-lock.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(40):
        name = f"pkg-{g.s(LOWER, 6)}"
        entries.append(f'    "node_modules/{name}": {{\n      "version": "1.{i}.0",\n'
                       f'      "resolved": "https://registry.npmjs.org/{name}/-/{name}-1.{i}.0.tgz",\n'
                       f'      "integrity": "{negs["integrity"]()}"\n    }}')
    lock.write_text('{\n  "lockfileVersion": 3,\n  "packages": {\n' + ",\n".join(entries) + "\n  }\n}\n")
    (out / "clean" / "README.md").write_text(
        "# Setup\n\nCopy `.env.example` to `.env` and set:\n\n```\nAPI_KEY=<your-api-key>\nDB_PASSWORD=changeme\n"
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nAWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY}\n```\n")
    (out / "clean" / "go.sum").write_text("".join(
        f"github.com/{g.s(LOWER, 6)}/{g.s(LOWER, 5)} v1.{i}.0 h1:{base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode()}\n"
        for i in range(30)))
    with open(out.parent / "labels.jsonl", "w") as f:
        for lab in labels:
            f.write(json.dumps(lab) + "\n")
    return labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--files-per-family", type=int, default=8)
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()):
        print(f"make_corpus: {a.out} is not empty; pass a fresh directory", file=sys.stderr)
        return 2
    (a.out / "tree").mkdir(parents=True, exist_ok=True)
    labels = build(a.out / "tree", a.seed, a.files_per_family)
    pos = sum(lab["is_secret"] for lab in labels)
    print(f"make_corpus: {len(labels)} labels ({pos} secrets) in {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
