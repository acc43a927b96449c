//! The end-to-end tests: one binary driving the built `leakstop` (scanner, hook, action, service). Each module is
//! one area; shared helpers (running the binary, temporary directories, a server per test) are in the
//! `leakstop_tests` library, which also says how to add a test.
#![forbid(unsafe_code)]

mod action_credentials;
mod action_github;
mod audit_log;
mod audit_verify;
mod confidence_cli;
mod database;
mod database_lifecycle;
mod federation_e2e;
mod git_scan;
mod ha;
mod hook_native;
mod jwt_auth;
mod kv_storage;
mod leak_loop;
mod listener_limits;
mod rules_cli;
mod scan_archives_cli;
mod scan_cli;
mod scan_fixtures;
mod seal_pkcs11;
mod security;
mod server_cli;
mod storage_pg;
