//! Registry credentials: explicit ones, else the containers tools'
//! `auth.json` files, else Docker's `config.json` (credential helpers,
//! stored `auths`, the credential store), else anonymous.
//!
//! Identity tokens (`identitytoken` in `auths`, or a helper answering with
//! the username `<token>`) are passed on as HTTP Basic credentials with that
//! username; the OAuth2 refresh-token exchange Docker performs with them is
//! not implemented.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::encoding::decode_base64;
use crate::reference::ImageRef;
use crate::{Error, Result};

/// The key `docker login` uses for Docker Hub in `config.json` and with
/// credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Host names that all mean Docker Hub.
const DOCKER_HUB_HOSTS: &[&str] = &["index.docker.io", "docker.io", "registry-1.docker.io"];

/// Username a credential helper returns when the secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// What helpers print when they hold nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found";

/// Credentials for `image`'s repository, in priority order: the explicit
/// pair (from CLI flags or environment), then each credentials file that
/// exists, in this order (containers-auth.json(5)):
/// 1. `authfile` (`--authfile` or `REGISTRY_AUTH_FILE`);
/// 2. `$XDG_RUNTIME_DIR/containers/auth.json`;
/// 3. `~/.config/containers/auth.json`;
/// 4. Docker's `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`).
///
/// In each: a `credHelpers` entry for the registry, then the most specific
/// `auths` key (`host/namespace/repo`, …, `host`), then `credsStore`. The
/// first file that has credentials for the image wins; anonymous when none
/// has.
pub fn credentials_for(
    image: &ImageRef,
    explicit: Option<(String, String)>,
    authfile: Option<&Path>,
) -> Result<RegistryAuth> {
    if let Some((username, password)) = explicit {
        return Ok(RegistryAuth::Basic(username, password));
    }
    for path in credential_files(authfile) {
        if let Some(auth) = credentials_from_config(image, &path, None)? {
            return Ok(auth);
        }
    }
    Ok(RegistryAuth::Anonymous)
}

/// The credentials files, most important first.
fn credential_files(authfile: Option<&Path>) -> Vec<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from);
    let mut files: Vec<PathBuf> = authfile.map(Path::to_path_buf).into_iter().collect();
    if let Some(runtime) = env("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(runtime).join("containers/auth.json"));
    }
    if let Some(home) = &home {
        files.push(home.join(".config/containers/auth.json"));
    }
    match (env("DOCKER_CONFIG"), &home) {
        (Some(dir), _) => files.push(PathBuf::from(dir).join("config.json")),
        (None, Some(home)) => files.push(home.join(".docker/config.json")),
        (None, None) => {}
    }
    files
}

/// Credentials for `image` from the file at `config_path`; `None` when it
/// has none for it (or does not exist). Helpers are looked up in
/// `helper_path` (a `PATH`-style list) when given, else in `PATH`.
fn credentials_from_config(
    image: &ImageRef,
    config_path: &Path,
    helper_path: Option<&OsStr>,
) -> Result<Option<RegistryAuth>> {
    let Some(config) = read_config(config_path)? else {
        return Ok(None);
    };
    let registry = image.registry.as_str();
    let wanted = normalize_key(registry);
    let server = server_address(&wanted);

    if let Some(helper) = lookup(&config.cred_helpers, &wanted) {
        return run_helper(helper, &server, helper_path, registry);
    }
    let entry = most_specific(&config.auths, &wanted, &image.repository)
        .or_else(|| lookup(&config.auths, &wanted));
    if let Some(entry) = entry
        && let Some(auth) = entry.credentials(config_path, registry)?
    {
        return Ok(Some(auth));
    }
    match config.creds_store.as_deref() {
        Some(store) if !store.is_empty() => run_helper(store, &server, helper_path, registry),
        _ => Ok(None),
    }
}

/// The `auths` entry whose key names the longest prefix of
/// `registry/repository` on a `/` boundary (`host/team` matches
/// `host/team/app`, not `host/teamwork`), the registry alone excluded.
fn most_specific<'a>(
    auths: &'a BTreeMap<String, AuthEntry>,
    registry: &str,
    repository: &str,
) -> Option<&'a AuthEntry> {
    let full = format!("{registry}/{repository}");
    let mut key = full.as_str();
    while let Some((shorter, _)) = key.rsplit_once('/') {
        if let Some(entry) = auths.get(key) {
            return Some(entry);
        }
        key = shorter;
    }
    None
}

/// The parts of Docker's `config.json` that concern credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

/// One `auths` entry. `docker login` with a credential store leaves it
/// empty (`{}`), meaning "ask the store".
#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl AuthEntry {
    /// The credentials this entry holds, if any. An identity token takes
    /// the password's place, as Docker prefers it too.
    fn credentials(&self, config_path: &Path, registry: &str) -> Result<Option<RegistryAuth>> {
        let (user, pass) = match self.auth.as_deref().filter(|a| !a.is_empty()) {
            Some(encoded) => {
                let (user, pass) = decode_auth(encoded).map_err(|why| {
                    malformed_config(
                        config_path,
                        format!("the \"auth\" entry for {registry} {why}"),
                    )
                })?;
                (Some(user), Some(pass))
            }
            None => (self.username.clone(), self.password.clone()),
        };
        if let Some(token) = self.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            let user = user.unwrap_or_else(|| TOKEN_USERNAME.to_string());
            return Ok(Some(RegistryAuth::Basic(user, token.to_string())));
        }
        Ok(match (user, pass) {
            (Some(user), Some(pass)) => Some(RegistryAuth::Basic(user, pass)),
            _ => None,
        })
    }
}

/// Splits a base64 `username:password`; the error says what is wrong.
fn decode_auth(encoded: &str) -> std::result::Result<(String, String), &'static str> {
    let decoded = decode_base64(encoded).ok_or("is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "is not UTF-8")?;
    let (user, pass) = decoded
        .split_once(':')
        .ok_or("is not \"username:password\"")?;
    Ok((user.to_string(), pass.to_string()))
}

/// Treats an explicit JSON `null` like an absent field.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads and parses the config; `None` if there is no such file.
fn read_config(path: &Path) -> Result<Option<DockerConfig>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| malformed_config(path, format!("not a valid Docker config file: {e}")))
}

/// An error naming the config file and what is wrong with it.
fn malformed_config(path: &Path, message: String) -> Error {
    Error::io(path, io::Error::new(io::ErrorKind::InvalidData, message))
}

/// Reduces a registry name or config key to a comparable form: scheme and
/// path dropped, lowercase, every Docker Hub alias as `docker.io`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

/// The server address handed to credential helpers: Docker Hub's legacy
/// URL, else `host[:port]`.
fn server_address(normalized: &str) -> String {
    if normalized == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        normalized.to_string()
    }
}

/// The entry of `map` for the normalised registry `wanted`. Several keys may
/// normalise alike; the one written exactly like the server address wins,
/// then the first in key order, so the choice is deterministic.
fn lookup<'a, T>(map: &'a BTreeMap<String, T>, wanted: &str) -> Option<&'a T> {
    let server = server_address(wanted);
    map.get(&server).or_else(|| {
        map.iter()
            .find(|(key, _)| normalize_key(key) == wanted)
            .map(|(_, value)| value)
    })
}

/// The JSON a credential helper prints for `get`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// Runs `docker-credential-<name> get` with the server address on stdin.
/// A helper that holds nothing for the server means anonymous.
fn run_helper(
    name: &str,
    server: &str,
    helper_path: Option<&OsStr>,
    registry: &str,
) -> Result<Option<RegistryAuth>> {
    let program = format!("docker-credential-{name}");
    let failed = |message: String| Error::Auth {
        reference: registry.to_string(),
        message: format!("credential helper {program}: {message}"),
    };
    let mut command = Command::new(&program);
    if let Some(path) = helper_path {
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading; its answer tells us enough.
        let _ = writeln!(stdin, "{server}");
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(format!("cannot read its answer: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!(
            "{}: {}",
            output.status,
            first_non_empty(&[stderr.trim(), stdout.trim()])
        )));
    }
    let reply: HelperReply =
        serde_json::from_str(&stdout).map_err(|e| failed(format!("unexpected answer: {e}")))?;
    Ok(Some(RegistryAuth::Basic(reply.username, reply.secret)))
}

/// The first non-empty string, or a placeholder.
fn first_non_empty<'a>(candidates: &[&'a str]) -> &'a str {
    candidates
        .iter()
        .copied()
        .find(|s| !s.is_empty())
        .unwrap_or("no output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use tempfile::TempDir;

    /// A temp dir holding `config.json` with `json`, and fake helpers.
    struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        fn new(json: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("config.json"), json).unwrap();
            Fixture { dir }
        }

        fn config(&self) -> PathBuf {
            self.dir.path().join("config.json")
        }

        /// Installs `docker-credential-<name>`: a shell script with `body`.
        /// It is copied into place by a child process so no writable
        /// descriptor of ours can leak into a concurrently forked child
        /// (which would make exec fail with ETXTBSY).
        fn helper(&self, name: &str, body: &str) {
            let source = self.dir.path().join(format!("{name}.src"));
            std::fs::write(&source, format!("#!/bin/sh\n{body}\n")).unwrap();
            let target = self.dir.path().join(format!("docker-credential-{name}"));
            let status = Command::new("install")
                .arg("-m755")
                .arg(&source)
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
        }

        /// A PATH with our helpers and the system tools they use.
        fn path(&self) -> OsString {
            let mut path = self.dir.path().as_os_str().to_owned();
            path.push(":/usr/bin:/bin");
            path
        }

        fn get(&self, registry: &str) -> Result<RegistryAuth> {
            self.get_repo(registry, "team/app")
        }

        fn get_repo(&self, registry: &str, repository: &str) -> Result<RegistryAuth> {
            let image: ImageRef = format!("{registry}/{repository}").parse()?;
            credentials_from_config(&image, &self.config(), Some(&self.path()))
                .map(|auth| auth.unwrap_or(RegistryAuth::Anonymous))
        }
    }

    fn basic(user: &str, pass: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.into(), pass.into())
    }

    /// A helper that answers `user-for-<server>` / `secret`, logging the
    /// server it was asked about, and "not found" for `missing.example`.
    const ECHO_HELPER: &str = r#"
[ "$1" = get ] || exit 2
read -r server
echo "$server" >> "$(dirname "$0")/asked"
case "$server" in
  missing.example) echo "credentials not found in native keychain"; exit 1 ;;
  broken.example) echo "keychain locked" >&2; exit 3 ;;
  garbage.example) echo "not json"; exit 0 ;;
esac
printf '{"ServerURL":"%s","Username":"user-for-%s","Secret":"secret"}\n' "$server" "$server""#;

    #[test]
    fn explicit_credentials_win() {
        let image: ImageRef = "quay.io/a/b".parse().unwrap();
        let auth = credentials_for(&image, Some(("u".into(), "p".into())), None).unwrap();
        assert_eq!(auth, basic("u", "p"));
    }

    #[test]
    fn auths_entries() {
        // "dTpw" is base64("u:p"); "dTpwOng=" is base64("u:p:x").
        let f = Fixture::new(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
                "quay.io": {"auth": "dTpwOng="},
                "https://ghcr.io/v2/": {"username": "gu", "password": "gp"},
                "http://localhost:5000": {"auth": "bG9jYWw6cHc"},
                "tok.example": {"identitytoken": "T0K"},
                "acr.example": {"auth": "MDAwMDo=", "identitytoken": "REFRESH"},
                "empty.example": {}
            }}"#,
        );
        let cases = [
            ("registry-1.docker.io", basic("hub", "hubpw")),
            ("docker.io", basic("hub", "hubpw")),
            ("index.docker.io", basic("hub", "hubpw")),
            ("quay.io", basic("u", "p:x")),
            ("QUAY.IO", basic("u", "p:x")),
            ("ghcr.io", basic("gu", "gp")),
            ("localhost:5000", basic("local", "pw")),
            ("localhost:5001", RegistryAuth::Anonymous),
            ("tok.example", basic(TOKEN_USERNAME, "T0K")),
            // base64("0000:") with a token: the token replaces the password.
            ("acr.example", basic("0000", "REFRESH")),
            ("empty.example", RegistryAuth::Anonymous),
            ("other.example", RegistryAuth::Anonymous),
        ];
        for (registry, want) in cases {
            assert_eq!(f.get(registry).unwrap(), want, "{registry}");
        }
    }

    #[test]
    fn hub_aliases_as_keys() {
        for key in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            let f = Fixture::new(&format!(r#"{{"auths": {{"{key}": {{"auth": "dTpw"}}}}}}"#));
            assert_eq!(
                f.get("registry-1.docker.io").unwrap(),
                basic("u", "p"),
                "{key}"
            );
        }
    }

    #[test]
    fn cred_helpers_then_auths_then_store() {
        let f = Fixture::new(
            r#"{
                "auths": {"quay.io": {"auth": "dTpw"}, "https://index.docker.io/v1/": {}},
                "credHelpers": {"quay.io": "echo", "gcr.io": "echo", "missing.example": "echo"},
                "credsStore": "store"
            }"#,
        );
        f.helper("echo", ECHO_HELPER);
        f.helper(
            "store",
            "read -r s; printf '{\"Username\":\"store\",\"Secret\":\"%s\"}' \"$s\"",
        );
        // credHelpers beat auths.
        assert_eq!(
            f.get("quay.io").unwrap(),
            basic("user-for-quay.io", "secret")
        );
        assert_eq!(f.get("gcr.io").unwrap(), basic("user-for-gcr.io", "secret"));
        // The helper holds nothing: anonymous, not the store.
        assert_eq!(f.get("missing.example").unwrap(), RegistryAuth::Anonymous);
        // An empty auths entry defers to the store, asked with Hub's key.
        assert_eq!(
            f.get("registry-1.docker.io").unwrap(),
            basic("store", DOCKER_HUB_KEY)
        );
        assert_eq!(
            f.get("localhost:5000").unwrap(),
            basic("store", "localhost:5000")
        );
        let asked = std::fs::read_to_string(f.dir.path().join("asked")).unwrap();
        assert_eq!(asked, "quay.io\ngcr.io\nmissing.example\n");
    }

    #[test]
    fn helper_failures_are_errors() {
        let f = Fixture::new(
            r#"{"credHelpers": {
                "broken.example": "echo",
                "garbage.example": "echo",
                "absent.example": "nonexistent"
            }}"#,
        );
        f.helper("echo", ECHO_HELPER);
        for (registry, fragment) in [
            ("broken.example", "keychain locked"),
            ("garbage.example", "unexpected answer"),
            ("absent.example", "cannot run it"),
        ] {
            match f.get(registry) {
                Err(Error::Auth { reference, message }) => {
                    assert_eq!(reference, registry);
                    assert!(message.contains(fragment), "{registry}: {message}");
                    assert!(message.contains("docker-credential-"), "{message}");
                }
                other => panic!("{registry}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_config_is_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let image: ImageRef = "quay.io/a/b".parse().unwrap();
        let auth = credentials_from_config(&image, &dir.path().join("config.json"), None);
        assert_eq!(auth.unwrap(), None);
    }

    #[test]
    fn the_most_specific_namespace_key_wins() {
        // base64 of "host:h", "team:t", "app:a", "hub:x".
        let f = Fixture::new(
            r#"{"auths": {
                "reg.example": {"auth": "aG9zdDpo"},
                "reg.example/team": {"auth": "dGVhbTp0"},
                "reg.example/team/app": {"auth": "YXBwOmE="},
                "docker.io/library": {"auth": "aHViOng="}
            }}"#,
        );
        assert_eq!(
            f.get_repo("reg.example", "team/app").unwrap(),
            basic("app", "a")
        );
        assert_eq!(
            f.get_repo("reg.example", "team/other").unwrap(),
            basic("team", "t")
        );
        assert_eq!(
            f.get_repo("reg.example", "teamwork/x").unwrap(),
            basic("host", "h")
        );
        assert_eq!(f.get_repo("reg.example", "x").unwrap(), basic("host", "h"));
        assert_eq!(
            f.get_repo("docker.io", "busybox").unwrap(),
            basic("hub", "x")
        );
        assert_eq!(
            f.get_repo("other.example", "team/app").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn null_sections_are_empty() {
        let f = Fixture::new(r#"{"auths": null, "credHelpers": null, "credsStore": null}"#);
        assert_eq!(f.get("quay.io").unwrap(), RegistryAuth::Anonymous);
    }

    #[test]
    fn malformed_config_names_the_file() {
        for json in [
            "{not json",
            r#"{"auths": []}"#,
            r#"{"auths": {"quay.io": {"auth": "!!!"}}}"#,
            r#"{"auths": {"quay.io": {"auth": "bm9jb2xvbg"}}}"#, // "nocolon"
            r#"{"auths": {"quay.io": {"auth": "dTpwO"}}}"#,      // truncated
        ] {
            let f = Fixture::new(json);
            match f.get("quay.io") {
                Err(e @ Error::Io { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(&*f.config().to_string_lossy()), "{text}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn base64_decoding() {
        let cases: [(&str, Option<&[u8]>); 8] = [
            ("", Some(b"")),
            ("dQ==", Some(b"u")),
            ("dQ", Some(b"u")),
            ("dTo=", Some(b"u:")),
            ("dTpw", Some(b"u:p")),
            ("aGVsbG8gd29ybGQ/Pz8+", Some(b"hello world???>")),
            ("d", None),
            ("dT!w", None),
        ];
        for (text, want) in cases {
            assert_eq!(decode_base64(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn keys_normalise() {
        let cases = [
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("Docker.IO", "docker.io"),
            ("http://localhost:5000/v2/", "localhost:5000"),
            ("quay.io", "quay.io"),
            ("[::1]:5000", "[::1]:5000"),
        ];
        for (key, want) in cases {
            assert_eq!(normalize_key(key), want, "{key}");
        }
    }
}
