//! The PKCS#11 seal against a real SoftHSM2 token created by the test.
//!
//! SoftHSM reads SOFTHSM2_CONF once per process and PKCS#11 libraries initialize once per process, so each
//! scenario runs in a child process (this test binary re-executed with `--exact child_...`); that also makes
//! "unwrap after restart" a real restart.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use leakstop_seal::{Pin, PinSource, Pkcs11Config, Pkcs11Seal, Seal, SealConfig, SealError, SealKind, Zeroizing};

const PIN: &str = "1234";
const SO_PIN: &str = "5678";

fn softhsm_lib() -> PathBuf {
    for p in [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("libsofthsm2.so not found: install the Debian package `softhsm2` (apt-get install softhsm2)");
}

/// A temp dir with a softhsm2.conf and one initialized token labelled `label`.
fn token(label: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run softhsm2-util ({e}): install the Debian package `softhsm2`"));
    assert!(
        out.status.success(),
        "softhsm2-util failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, conf)
}

/// Run child scenario `name` with SOFTHSM2_CONF=`conf` and extra env; returns its stdout.
fn child(name: &str, conf: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("LEAKSTOP_SEAL_CHILD", "1")
        .env("SOFTHSM2_CONF", conf)
        .env("LS_TEST_LIB", softhsm_lib());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn line<'a>(out: &'a str, tag: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.split_once(tag).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no `{tag}` line in child output:\n{out}"))
}

fn in_child() -> bool {
    std::env::var_os("LEAKSTOP_SEAL_CHILD").is_some()
}

/// Config from the child's environment, through the same TOML path the server uses.
fn child_config() -> Result<Pkcs11Config, String> {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let toml_src = format!(
        "lib = {:?}\ntoken_label = {:?}\nkey_label = {:?}\npin_env = \"LS_TEST_PIN\"\ngenerate_key = {}\n",
        var("LS_TEST_LIB", ""),
        var("LS_TEST_TOKEN", "T"),
        var("LS_TEST_KEY", "leakstop-root"),
        var("LS_TEST_GENERATE", "false"),
    );
    toml::from_str(&toml_src).map_err(|e| e.to_string())
}

fn open_in_child() -> Result<Pkcs11Seal, String> {
    let cfg = child_config()?;
    let pin = cfg.pin.read().map_err(|e| e.to_string())?;
    Pkcs11Seal::open(&cfg, pin).map_err(|e| e.to_string())
}

#[test]
fn child_wrap() {
    if !in_child() {
        return;
    }
    let seal = open_in_child().unwrap();
    assert_eq!(seal.kind(), SealKind::Pkcs11);
    let root = hex::decode(std::env::var("LS_TEST_ROOT").unwrap()).unwrap();
    let blob = seal.wrap_root_key(&root).unwrap();
    assert_ne!(
        blob,
        seal.wrap_root_key(&root).unwrap(),
        "each wrap must use a fresh IV"
    );
    assert!(
        !blob.windows(root.len()).any(|w| w == root),
        "blob must not contain the root key"
    );
    assert_eq!(&seal.unwrap_root_key(&blob).unwrap()[..], &root[..]);
    println!("BLOB {}", hex::encode(&blob));
}

#[test]
fn child_unwrap() {
    if !in_child() {
        return;
    }
    let blob = hex::decode(std::env::var("LS_TEST_BLOB").unwrap()).unwrap();
    match open_in_child().and_then(|s| s.unwrap_root_key(&blob).map_err(|e| e.to_string())) {
        Ok(root) => println!("ROOT {}", hex::encode(&root[..])),
        Err(e) => println!("ERR {e}"),
    }
}

#[test]
fn child_open() {
    if !in_child() {
        return;
    }
    match open_in_child() {
        Ok(_) => println!("OPENED"),
        Err(e) => println!("ERR {e}"),
    }
}

#[test]
fn child_key_attributes() {
    if !in_child() {
        return;
    }
    use cryptoki::context::{CInitializeArgs, Pkcs11};
    use cryptoki::object::{Attribute, AttributeType};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ctx = Pkcs11::new(softhsm_lib()).unwrap();
    ctx.initialize(CInitializeArgs::OsThreads).unwrap();
    let slot = ctx.get_slots_with_token().unwrap()[0];
    let session = ctx.open_ro_session(slot).unwrap();
    session.login(UserType::User, Some(&AuthPin::new(PIN.into()))).unwrap();
    let keys = session
        .find_objects(&[Attribute::Label(b"leakstop-root".to_vec())])
        .unwrap();
    assert_eq!(keys.len(), 1);
    let attrs = session
        .get_attributes(
            keys[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
            ],
        )
        .unwrap();
    for a in attrs {
        println!("ATTR {a:?}");
    }
}

#[test]
fn child_relogin() {
    if !in_child() {
        return;
    }
    use cryptoki::context::Pkcs11;
    let seal = open_in_child().unwrap();
    let blob = seal.wrap_root_key(b"root key bytes").unwrap();
    // Log the application out of the token behind the seal's back (login state is per token, shared by all
    // sessions), as an HSM restart or an operator action would.
    let other = Pkcs11::new(softhsm_lib()).unwrap();
    let slot = other.get_slots_with_initialized_token().unwrap()[0];
    other.open_rw_session(slot).unwrap().logout().unwrap();
    // Finalizing here would tear down the library under the seal too.
    std::mem::forget(other);
    assert_eq!(&seal.unwrap_root_key(&blob).unwrap()[..], b"root key bytes");
    println!("RELOGIN ok");
}

fn root_hex() -> String {
    hex::encode((0..32u8).map(|i| i.wrapping_mul(7) ^ 0x5c).collect::<Vec<_>>())
}

#[test]
fn wrap_then_unwrap_in_a_restarted_process_and_reject_tampering() {
    let (_dir, conf) = token("T");
    let root = root_hex();
    let pin = [("LS_TEST_PIN", PIN)];
    // First start: the key does not exist yet and is generated.
    let out = child(
        "child_wrap",
        &conf,
        &[pin[0], ("LS_TEST_GENERATE", "true"), ("LS_TEST_ROOT", &root)],
    );
    let blob = line(&out, "BLOB ").to_owned();

    // Restart: a new process finds the key by label and unwraps.
    let out = child("child_unwrap", &conf, &[pin[0], ("LS_TEST_BLOB", &blob)]);
    assert_eq!(line(&out, "ROOT "), root);

    // The key never leaves the HSM.
    let out = child("child_key_attributes", &conf, &[]);
    assert!(out.contains("ATTR Sensitive(true)"), "{out}");
    assert!(out.contains("ATTR Extractable(false)"), "{out}");
    assert!(out.contains("ATTR Token(true)"), "{out}");

    // Tampered ciphertext, tampered IV: an error, never wrong data.
    let mut bytes = hex::decode(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let out = child("child_unwrap", &conf, &[pin[0], ("LS_TEST_BLOB", &hex::encode(&bytes))]);
    assert!(line(&out, "ERR ").contains("tampered"), "{out}");
    let mut bytes = hex::decode(&blob).unwrap();
    bytes[3] ^= 0x80;
    let out = child("child_unwrap", &conf, &[pin[0], ("LS_TEST_BLOB", &hex::encode(&bytes))]);
    assert!(line(&out, "ERR ").contains("tampered"), "{out}");

    // The seal logs in again when the token forgets its login.
    let out = child("child_relogin", &conf, &[pin[0]]);
    assert_eq!(line(&out, "RELOGIN "), "ok");

    // Generating again with the same label reuses the existing key instead of making a second one.
    let out = child(
        "child_wrap",
        &conf,
        &[pin[0], ("LS_TEST_GENERATE", "true"), ("LS_TEST_ROOT", &root)],
    );
    let blob2 = line(&out, "BLOB ").to_owned();
    let out = child("child_unwrap", &conf, &[pin[0], ("LS_TEST_BLOB", &blob2)]);
    assert_eq!(line(&out, "ROOT "), root);
}

#[test]
fn a_blob_from_another_hsm_key_is_rejected() {
    let (_a, conf_a) = token("T");
    let (_b, conf_b) = token("T");
    let root = root_hex();
    let gen_env = [
        ("LS_TEST_PIN", PIN),
        ("LS_TEST_GENERATE", "true"),
        ("LS_TEST_ROOT", root.as_str()),
    ];
    let blob = line(&child("child_wrap", &conf_a, &gen_env), "BLOB ").to_owned();
    child("child_wrap", &conf_b, &gen_env);
    let out = child(
        "child_unwrap",
        &conf_b,
        &[("LS_TEST_PIN", PIN), ("LS_TEST_BLOB", &blob)],
    );
    assert!(line(&out, "ERR ").contains("wrong key"), "{out}");
}

#[test]
fn wrong_pin_is_a_clear_error() {
    let (_dir, conf) = token("T");
    let out = child(
        "child_open",
        &conf,
        &[("LS_TEST_PIN", "9999"), ("LS_TEST_GENERATE", "true")],
    );
    let err = line(&out, "ERR ");
    assert!(err.contains("PIN rejected by token T"), "{err}");
    assert!(!err.contains("9999"), "the PIN must not appear in errors: {err}");
}

#[test]
fn missing_key_label_is_a_clear_error() {
    let (_dir, conf) = token("T");
    let out = child(
        "child_open",
        &conf,
        &[("LS_TEST_PIN", PIN), ("LS_TEST_KEY", "no-such-key")],
    );
    let err = line(&out, "ERR ");
    assert!(err.contains("no AES key with label `no-such-key` on token T"), "{err}");
    assert!(err.contains("generate_key"), "the error must say how to fix it: {err}");
}

#[test]
fn unknown_token_label_lists_the_available_ones() {
    let (_dir, conf) = token("T");
    let out = child(
        "child_open",
        &conf,
        &[("LS_TEST_PIN", PIN), ("LS_TEST_TOKEN", "prod-hsm")],
    );
    let err = line(&out, "ERR ");
    assert!(
        err.contains("no PKCS#11 token with label `prod-hsm`") && err.contains("`T`"),
        "{err}"
    );
}

#[test]
fn missing_library_names_the_package() {
    let cfg: Pkcs11Config = toml::from_str(
        "lib = \"/nonexistent/libsofthsm2.so\"\ntoken_label = \"T\"\nkey_label = \"k\"\npin_env = \"P\"\n",
    )
    .unwrap();
    let err = Pkcs11Seal::open(&cfg, Pin::new(Zeroizing::new("1234".into()))).unwrap_err();
    assert!(matches!(err, SealError::LibraryLoad { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/libsofthsm2.so") && msg.contains("softhsm2"),
        "{msg}"
    );
}

fn write_pin_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pin");
    std::fs::write(&p, "1234\n").unwrap();
    // Keep the dir alive by leaking it for the test's duration.
    (dir, p)
}

#[test]
fn pin_sources_are_read_apart_from_the_config_and_never_printed() {
    let (_dir, pin_file) = write_pin_file();
    let cfg: Pkcs11Config = toml::from_str(&format!(
        "lib = \"/x.so\"\ntoken_label = \"T\"\nkey_label = \"k\"\npin_file = {:?}\n",
        pin_file.display().to_string()
    ))
    .unwrap();
    assert_eq!(cfg.pin, PinSource::File(pin_file.clone()));
    let pin = cfg.pin.read().unwrap();
    assert_eq!(pin.expose(), "1234", "one trailing newline is stripped");
    assert!(!format!("{pin:?}").contains("1234"), "Debug must not show the PIN");

    let err = toml::from_str::<Pkcs11Config>("lib = \"/x.so\"\ntoken_label = \"T\"\nkey_label = \"k\"\n").unwrap_err();
    assert!(err.to_string().contains("pin_env"), "{err}");
    // A variable that is not set is no config error (the config parses); reading it names the variable.
    let cfg = toml::from_str::<Pkcs11Config>(
        "lib = \"/x.so\"\ntoken_label = \"T\"\nkey_label = \"k\"\npin_env = \"LEAKSTOP_TEST_SURELY_UNSET_VAR\"\n",
    )
    .unwrap();
    let err = cfg.pin.read().unwrap_err().to_string();
    assert!(
        err.contains("environment variable LEAKSTOP_TEST_SURELY_UNSET_VAR (pin_env in [seal]) is not set"),
        "{err}"
    );
    std::fs::write(&pin_file, "\n").unwrap();
    let err = PinSource::File(pin_file.clone()).read().unwrap_err().to_string();
    assert!(err.contains("is empty") && err.contains("pin_file"), "{err}");
    let err = toml::from_str::<Pkcs11Config>("lib = \"/x.so\"\nkey_label = \"k\"\npin_env = \"HOME\"\n").unwrap_err();
    assert!(err.to_string().contains("token_label"), "{err}");
}

#[test]
fn seal_config_table_selects_the_seal() {
    let (_dir, pin_file) = write_pin_file();
    let cfg: SealConfig = toml::from_str(&format!(
        "type = \"pkcs11\"\nlib = \"/x.so\"\nslot = 3\nkey_label = \"k\"\npin_file = {:?}\ngenerate_key = true\n",
        pin_file.display().to_string()
    ))
    .unwrap();
    let SealConfig::Pkcs11(p) = cfg else {
        panic!("expected pkcs11")
    };
    assert_eq!((p.slot, p.generate_key, p.key_label.as_str()), (Some(3), true, "k"));
    assert!(matches!(
        toml::from_str::<SealConfig>("type = \"shamir\"").unwrap(),
        SealConfig::Shamir
    ));
    let err = toml::from_str::<SealConfig>("type = \"awskms\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("awskms") && err.contains("pkcs11"), "{err}");
}
