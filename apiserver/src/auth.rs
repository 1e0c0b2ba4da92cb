//! Who is calling: an API token (`Authorization: Bearer <token>`, or DC/OS's `token=<token>`)
//! or one of Marathon's basic credentials (`--http-credentials`). Tokens are ApiToken records:
//! a cache fed by a watch holds them, so a revocation reaches every replica within a second.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use pacer_crd::{ApiToken, ApiTokenSpec};
use pacer_runtime::{Api, Reflector, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::{CancellationToken, DropGuard};

/// What a caller may do, least powerful first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The token's name, or the basic user's.
    pub name: String,
    pub role: Role,
    /// App id patterns (`/prod/*`) the caller is limited to; empty: every app.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the caller may act on app `id` (absolute, normalized).
    pub fn covers(&self, id: &str) -> bool {
        self.scopes.is_empty()
            || self
                .scopes
                .iter()
                .any(|s| pacer_crd::token::in_scope(s, id))
    }

    pub fn is_scoped(&self) -> bool {
        !self.scopes.is_empty()
    }
}

/// Why credentials were refused (always a 401; the reason goes to the log, never the token).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("the Authorization header is not Bearer, token= or Basic")]
    Scheme,
    #[error("no such token, or a wrong secret")]
    Token,
    #[error("the token expired")]
    Expired,
    #[error("wrong user name or password")]
    Basic,
}

/// A Marathon-style basic credential (`user:password`); basic users are admins, as
/// Marathon's `--http_credentials` gave full access.
#[derive(Clone)]
pub struct BasicUser {
    pub user: String,
    pub password: String,
}

impl BasicUser {
    pub fn parse(s: &str) -> Result<BasicUser, String> {
        match s.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(BasicUser {
                user: user.to_string(),
                password: password.to_string(),
            }),
            _ => Err(format!(
                "'{}' is not user:password",
                s.split(':').next().unwrap_or("")
            )),
        }
    }
}

impl std::fmt::Debug for BasicUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicUser({}, <password>)", self.user)
    }
}

/// Checks credentials against the token cache and the basic users.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Store<ApiToken>,
    /// For a token the cache does not hold yet (created a moment ago, on another replica).
    api: Api<ApiToken>,
    basic: Arc<Vec<BasicUser>>,
    /// Every caller is an admin: `--insecure` only.
    insecure: bool,
    _watch: Arc<DropGuard>,
}

impl Authenticator {
    /// Watches the ApiToken records of `api` until the last clone is dropped.
    pub fn new(api: Api<ApiToken>) -> Authenticator {
        let stop = CancellationToken::new();
        let cache = Reflector::start(api.clone(), "", stop.clone());
        Authenticator {
            tokens: cache.store(),
            api,
            basic: Arc::default(),
            insecure: false,
            _watch: Arc::new(stop.drop_guard()),
        }
    }

    pub fn with_basic(mut self, users: Vec<BasicUser>) -> Self {
        self.basic = Arc::new(users);
        self
    }

    /// No authentication: every caller acts as an admin (`pacer up --insecure`).
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The caller of a request with this `Authorization` header: `None` without one.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Option<Principal>, Refused> {
        if self.insecure {
            return Ok(Some(Principal {
                name: "anonymous".into(),
                role: Role::Admin,
                scopes: Vec::new(),
            }));
        }
        let Some(header) = header else {
            return Ok(None);
        };
        match Credential::parse(header)? {
            Credential::Token(token) => {
                // At start the cache may still be loading: a short wait, not a spurious 401.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), self.tokens.wait_ready()).await;
                let (name, secret) = split_token(token).ok_or(Refused::Token)?;
                check_token_name(name).map_err(|_| Refused::Token)?;
                let record = match self.tokens.get(name) {
                    Some(record) => record,
                    // A token just created may not have reached the cache: etcd decides.
                    // A revoked one is gone from both.
                    None => std::sync::Arc::new(
                        self.api
                            .get(name)
                            .await
                            .ok()
                            .flatten()
                            .ok_or(Refused::Token)?,
                    ),
                };
                verify(&record.spec, secret, pacer_crd::time::Timestamp::now())?;
                let role = Role::parse(&record.spec.role).ok_or(Refused::Token)?;
                Ok(Some(Principal {
                    name: name.to_string(),
                    role,
                    scopes: record.spec.scopes.clone(),
                }))
            }
            Credential::Basic(user, password) => {
                let known = self.basic.iter().find(|b| {
                    bool::from(b.user.as_bytes().ct_eq(user.as_bytes()))
                        & bool::from(b.password.as_bytes().ct_eq(password.as_bytes()))
                });
                known
                    .map(|b| {
                        Some(Principal {
                            name: b.user.clone(),
                            role: Role::Admin,
                            scopes: Vec::new(),
                        })
                    })
                    .ok_or(Refused::Basic)
            }
        }
    }
}

/// The credential an `Authorization` header carries.
#[derive(Debug, PartialEq)]
enum Credential<'a> {
    Token(&'a str),
    Basic(String, String),
}

impl<'a> Credential<'a> {
    fn parse(header: &'a str) -> Result<Credential<'a>, Refused> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Credential::Token(rest.trim()));
        }
        if let Some(token) = header.strip_prefix("token=") {
            return Ok(Credential::Token(token.trim()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| Refused::Basic)?;
            let text = String::from_utf8(decoded).map_err(|_| Refused::Basic)?;
            let (user, password) = text.split_once(':').ok_or(Refused::Basic)?;
            return Ok(Credential::Basic(user.to_string(), password.to_string()));
        }
        Err(Refused::Scheme)
    }
}

/// A token is `<name>.<secret>`: the name finds the record, the secret is checked against its
/// hash.
pub(crate) fn split_token(token: &str) -> Option<(&str, &str)> {
    let (name, secret) = token.rsplit_once('.')?;
    (!name.is_empty() && !secret.is_empty()).then_some((name, secret))
}

/// Checks `secret` against a token record, in time independent of where they differ.
fn verify(
    spec: &ApiTokenSpec,
    secret: &str,
    now: pacer_crd::time::Timestamp,
) -> Result<(), Refused> {
    let hash = hash_secret(secret);
    if !bool::from(hash.as_bytes().ct_eq(spec.hash.as_bytes())) {
        return Err(Refused::Token);
    }
    match spec.expires.as_deref() {
        None => Ok(()),
        Some(text) => match pacer_crd::time::parse(Some(text)) {
            Some(expires) if now < expires => Ok(()),
            _ => Err(Refused::Expired),
        },
    }
}

/// SHA-256 of a token's secret, hex: what the record keeps. The secret is 256 random bits, so a
/// fast hash is enough (no password stretching needed).
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token for record `name`: the token to hand out once, and the hash to store.
pub fn new_token(name: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let secret = hex(&bytes);
    (format!("{name}.{secret}"), hash_secret(&secret))
}

/// Checks a token's name: a DNS label, as record names are.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a token name: 1 to 63 lowercase letters, digits and '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hash: String, expires: Option<&str>) -> ApiTokenSpec {
        ApiTokenSpec {
            role: "read".into(),
            scopes: vec![],
            expires: expires.map(str::to_string),
            hash,
        }
    }

    #[test]
    fn a_new_token_verifies_against_its_hash_and_no_other_secret_does() {
        let (token, hash) = new_token("ci");
        let (name, secret) = split_token(&token).expect("name.secret");
        assert_eq!(name, "ci");
        assert_eq!(secret.len(), 64);
        let now = pacer_crd::time::Timestamp::now();
        assert_eq!(verify(&spec(hash.clone(), None), secret, now), Ok(()));
        assert_eq!(
            verify(&spec(hash.clone(), None), "x", now),
            Err(Refused::Token)
        );
        let (_, other) = new_token("ci");
        assert_ne!(other, hash, "two tokens share no secret");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let (token, hash) = new_token("ci");
        let secret = split_token(&token).expect("name.secret").1;
        let now = pacer_crd::time::parse(Some("2026-06-01T00:00:00Z")).expect("a time");
        let later = spec(hash.clone(), Some("2026-06-02T00:00:00Z"));
        let earlier = spec(hash, Some("2026-05-31T00:00:00Z"));
        assert_eq!(verify(&later, secret, now), Ok(()));
        assert_eq!(verify(&earlier, secret, now), Err(Refused::Expired));
    }

    #[test]
    fn headers_of_each_scheme_are_read() {
        assert_eq!(
            Credential::parse("Bearer a.b"),
            Ok(Credential::Token("a.b"))
        );
        assert_eq!(
            Credential::parse("bearer  a.b "),
            Ok(Credential::Token("a.b"))
        );
        assert_eq!(Credential::parse("token=a.b"), Ok(Credential::Token("a.b")));
        // "marathon:s3cr:t" in base64: the password may hold a colon.
        assert_eq!(
            Credential::parse("Basic bWFyYXRob246czNjcjp0"),
            Ok(Credential::Basic("marathon".into(), "s3cr:t".into()))
        );
        assert_eq!(Credential::parse("Basic !!"), Err(Refused::Basic));
        assert_eq!(Credential::parse("Digest x"), Err(Refused::Scheme));
        assert_eq!(split_token("nodot"), None);
        assert_eq!(split_token(".secret"), None);
    }

    #[test]
    fn basic_credentials_parse_and_never_print_the_password() {
        let user = BasicUser::parse("marathon:s3cr:t").expect("user:password");
        assert_eq!(
            (user.user.as_str(), user.password.as_str()),
            ("marathon", "s3cr:t")
        );
        assert!(!format!("{user:?}").contains("s3cr"));
        assert!(BasicUser::parse("nopassword").is_err());
        assert!(BasicUser::parse(":x").is_err());
    }

    #[test]
    fn scoped_principals_cover_their_apps_only() {
        let p = Principal {
            name: "t".into(),
            role: Role::Write,
            scopes: vec!["/prod/*".into()],
        };
        assert!(p.covers("/prod/web"));
        assert!(!p.covers("/staging/web"));
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
        assert!(check_token_name("ci-bot").is_ok());
        assert!(check_token_name("CI").is_err());
        assert!(check_token_name("a.b").is_err());
    }
}
