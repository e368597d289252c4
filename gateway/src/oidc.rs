//! OpenID Connect identity: bearer JWTs from the issuers configured as `[[auth.oidc]]`.
//!
//! A token names its issuer (`iss`); only a configured issuer's tokens are considered. The
//! issuer's discovery document (`{issuer}/.well-known/openid-configuration`) names its key set
//! (`jwks_uri`); both are fetched on first use and the keys kept for `jwks_refresh`. A token
//! signed with a key the set does not hold (the issuer rotated its keys) fetches the set again
//! at once — at most once a second per issuer, so a stream of made-up key ids cannot turn the
//! gateway against the issuer. Signatures: RS256/384/512, PS256/384/512, ES256/384 and EdDSA
//! (never `none` or the HMAC algorithms, whose key would be public). Claims: `iss` exactly the
//! configured issuer, `aud` naming the configured audience, `exp` required, `nbf` and `iat`
//! respected, each with `clock_skew` of tolerance.
//!
//! A verified token stands for the Archway user its `user_claim` names (created on first
//! sign-in where `create_users` is set); with a `groups_claim`, the user's group memberships
//! follow the groups that claim lists (those that exist in Archway). What the user may do is
//! the dataplane's decision, as for any other caller.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use archway_catalog::Principal;
use archway_dataplane::Dataplane;

/// The `[auth]` configuration section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// OpenID Connect issuers whose tokens the HTTP API and the STS endpoint accept.
    pub oidc: Vec<OidcIssuer>,
    /// The longest temporary S3 credentials (`AssumeRoleWithWebIdentity`) live: a longer
    /// `DurationSeconds` is cut to this.
    #[serde(with = "humantime_serde")]
    pub sts_max_duration: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            oidc: Vec::new(),
            sts_max_duration: Duration::from_secs(12 * 3600),
        }
    }
}

/// One `[[auth.oidc]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OidcIssuer {
    /// The issuer's URL, exactly as its tokens' `iss` claim says it (https; http only on a
    /// loopback address).
    pub issuer: String,
    /// The audience (client id) a token must be issued for (`aud`).
    pub audience: String,
    /// The claim that names the Archway user.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// The claim that lists the user's groups (none: memberships are Archway's alone).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Create a user on their first sign-in (otherwise an admin creates them first).
    #[serde(default)]
    pub create_users: bool,
    /// How far the gateway's clock and the issuer's may disagree on `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// How long a fetched key set is used before it is fetched again.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
}

fn default_user_claim() -> String {
    "preferred_username".into()
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(3600)
}

/// The most clock skew a configuration may allow.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The shortest and longest temporary credentials a configuration may allow.
const STS_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));

/// Fetches of an issuer's keys are at least this far apart when a token names an unknown key.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

impl AuthConfig {
    /// Problems with this section, as (key within the section, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let (lo, hi) = STS_DURATION_RANGE;
        if self.sts_max_duration < lo || self.sts_max_duration > hi {
            out.push((
                "sts_max_duration".into(),
                "must be between 1s and 7 days".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, o) in self.oidc.iter().enumerate() {
            let key = |k: &str| format!("oidc[{i}].{k}");
            if let Err(e) = check_issuer_url(&o.issuer) {
                out.push((key("issuer"), e));
            }
            if !seen.insert(o.issuer.as_str()) {
                out.push((
                    key("issuer"),
                    format!("`{}` is configured more than once", o.issuer),
                ));
            }
            if o.audience.trim().is_empty() {
                out.push((key("audience"), "may not be empty".into()));
            }
            if o.user_claim.trim().is_empty() {
                out.push((key("user_claim"), "may not be empty".into()));
            }
            if o.groups_claim
                .as_deref()
                .is_some_and(|g| g.trim().is_empty())
            {
                out.push((
                    key("groups_claim"),
                    "may not be empty (leave it out for none)".into(),
                ));
            }
            if o.clock_skew > MAX_CLOCK_SKEW {
                out.push((key("clock_skew"), "must be at most 5 minutes".into()));
            }
            if o.jwks_refresh < Duration::from_secs(1) {
                out.push((key("jwks_refresh"), "must be at least 1s".into()));
            }
        }
        out
    }
}

/// An issuer URL must be https, or http on a loopback address (a test or a sidecar).
fn check_issuer_url(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("`{issuer}` is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "`{issuer}` must be https (http only on a loopback address)"
        )),
        other => Err(format!("`{issuer}` has scheme `{other}`: it must be https")),
    }
}

/// Why a token was not accepted. The message never holds the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (three base64url parts with a JSON header and claims): {0}")]
    Malformed(String),
    #[error("no OpenID Connect issuer is configured on this gateway ([[auth.oidc]])")]
    NoIssuers,
    #[error("the token's issuer `{0}` is not one this gateway trusts ([[auth.oidc]])")]
    UnknownIssuer(String),
    #[error("the token is signed with `{0}`, which is not accepted")]
    Algorithm(String),
    #[error("the token's signature does not verify with the issuer's keys")]
    Signature,
    #[error("the token is not for this gateway: its audience does not include `{0}`")]
    Audience(String),
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    #[error("the issuer's keys could not be fetched: {0}")]
    Fetch(String),
}

impl TokenError {
    /// The STS error code for this refusal.
    pub fn sts_code(&self) -> &'static str {
        match self {
            TokenError::Expired => "ExpiredTokenException",
            TokenError::Fetch(_) => "IDPCommunicationError",
            _ => "InvalidIdentityToken",
        }
    }
}

/// What a verified token says.
#[derive(Clone, Debug)]
pub struct Claims {
    /// The issuer, as configured.
    pub issuer: String,
    pub subject: Option<String>,
    /// The configured audience (which the token includes).
    pub audience: String,
    /// The Archway user name the user claim gives.
    pub user: String,
    /// The groups claim's groups (None without a groups claim configured).
    pub groups: Option<Vec<String>>,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// Whether the user may be created on first sign-in.
    create_users: bool,
}

/// A public key from a key set.
#[derive(Clone, Debug)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`) on P-256 or P-384.
    Ec {
        p384: bool,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: PublicKey,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
    last_try: Option<Instant>,
}

struct Issuer {
    config: OidcIssuer,
    keys: tokio::sync::RwLock<KeySet>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// How long a sign-in (user created, memberships applied) is reused for the same user and
/// groups before the catalogue is consulted again.
const SIGN_IN_REUSE: Duration = Duration::from_secs(60);

/// Who signed in lately, (issuer, user), and with which groups, when.
type SignIns = HashMap<(String, String), (Option<Vec<String>>, Instant)>;

/// The configured issuers and their keys; one per gateway.
pub struct Identity {
    issuers: Vec<Issuer>,
    signed_in: std::sync::Mutex<SignIns>,
    http: reqwest::Client,
    /// The `[auth]` section's STS limit.
    pub sts_max_duration: Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|i| i.config.issuer.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new(&AuthConfig::default())
    }
}

impl Identity {
    pub fn new(config: &AuthConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        Identity {
            issuers: config
                .oidc
                .iter()
                .map(|c| Issuer {
                    config: c.clone(),
                    keys: tokio::sync::RwLock::new(KeySet::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
                .collect(),
            http,
            signed_in: std::sync::Mutex::new(HashMap::new()),
            sts_max_duration: config.sts_max_duration,
        }
    }

    /// Whether any issuer is configured.
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Whether `token` looks like a JWT (and not like an Archway API token).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// Verifies `token` and reads its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if self.issuers.is_empty() {
            return Err(TokenError::NoIssuers);
        }
        let parts: Vec<&str> = token.trim().split('.').collect();
        let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
            return Err(TokenError::Malformed("it does not have three parts".into()));
        };
        let header: Value = decode_json(header_b64, "header")?;
        let claims: Value = decode_json(claims_b64, "claims")?;
        let signature = decode_b64(signature_b64, "signature")?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::MissingClaim("iss".into()))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| TokenError::UnknownIssuer(iss.chars().take(200).collect()))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str);
        let algorithm = Algorithm::parse(alg)?;
        let signed = &token.trim()[..header_b64.len() + 1 + claims_b64.len()];
        self.check_signature(issuer, algorithm, alg, kid, signed.as_bytes(), &signature)
            .await?;
        check_claims(&issuer.config, &claims, now_seconds())
    }

    async fn check_signature(
        &self,
        issuer: &Issuer,
        algorithm: Algorithm,
        alg: &str,
        kid: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        let fresh = {
            let set = issuer.keys.read().await;
            let fresh = set
                .fetched
                .is_some_and(|t| t.elapsed() < issuer.config.jwks_refresh);
            if fresh {
                match try_keys(&set, algorithm, alg, kid, message, signature) {
                    Tried::Verified => return Ok(()),
                    // The named key is there and the signature is wrong: no fetch helps.
                    Tried::Failed if kid.is_some() => return Err(TokenError::Signature),
                    // A key the set does not hold: the issuer may have rotated its keys.
                    Tried::Failed | Tried::NoKey => {}
                }
            }
            fresh
        };
        self.refresh(issuer, !fresh).await?;
        let set = issuer.keys.read().await;
        match try_keys(&set, algorithm, alg, kid, message, signature) {
            Tried::Verified => Ok(()),
            Tried::Failed | Tried::NoKey => Err(TokenError::Signature),
        }
    }

    /// Fetches an issuer's key set again, unless another request did less than
    /// [`REFETCH_AT_MOST_EVERY`] ago (then its outcome stands). Keys fetched before keep
    /// verifying tokens while the issuer does not answer.
    async fn refresh(&self, issuer: &Issuer, stale: bool) -> Result<(), TokenError> {
        let _one = issuer.fetching.lock().await;
        let (recent, have_keys) = {
            let set = issuer.keys.read().await;
            let recent = set
                .last_try
                .is_some_and(|t| t.elapsed() < REFETCH_AT_MOST_EVERY);
            (recent, set.fetched.is_some())
        };
        if recent {
            return if have_keys {
                Ok(())
            } else {
                Err(TokenError::Fetch(
                    "the last try, less than a second ago, failed".into(),
                ))
            };
        }
        issuer.keys.write().await.last_try = Some(Instant::now());
        match self.fetch_keys(&issuer.config.issuer).await {
            Ok(keys) => {
                let mut set = issuer.keys.write().await;
                set.keys = keys;
                set.fetched = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.config.issuer, stale, error = %e, "cannot fetch the OpenID Connect issuer's keys");
                if have_keys {
                    Ok(())
                } else {
                    Err(TokenError::Fetch(e))
                }
            }
        }
    }

    async fn fetch_keys(&self, issuer: &str) -> Result<Vec<Jwk>, String> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.get_json(&discovery).await?;
        let said = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if said != issuer {
            return Err(format!(
                "{discovery} names the issuer `{said}`, not `{issuer}`"
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{discovery} has no jwks_uri"))?;
        check_issuer_url(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        let set = self.get_json(jwks_uri).await?;
        let keys = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{jwks_uri} is not a key set (no `keys` list)"))?;
        let parsed: Vec<Jwk> = keys.iter().filter_map(parse_jwk).collect();
        if parsed.is_empty() {
            return Err(format!("{jwks_uri} holds no signing key Archway can use"));
        }
        Ok(parsed)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} is larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))
    }

    /// The Archway caller a verified token stands for: the user its claim names (created
    /// first where the issuer allows it), with the groups claim's memberships applied. The
    /// catalogue is written only when something changed; a user whose last sign-in here, less
    /// than [`SIGN_IN_REUSE`] ago, had the same groups is taken from the in-memory view.
    pub async fn principal(
        &self,
        dataplane: &Dataplane,
        claims: &Claims,
    ) -> Result<Principal, archway_dataplane::DataplaneError> {
        let mut groups = claims.groups.clone();
        if let Some(g) = groups.as_mut() {
            g.sort();
            g.dedup();
        }
        let who = (claims.issuer.clone(), claims.user.clone());
        let recent = self
            .signed_in
            .lock()
            .ok()
            .and_then(|m| m.get(&who).cloned())
            .is_some_and(|(g, t)| g == groups && t.elapsed() < SIGN_IN_REUSE);
        if recent && let Ok(p) = dataplane.catalog().principal(&claims.user).await {
            return Ok(p);
        }
        let p = dataplane
            .sign_in(
                &claims.user,
                claims.create_users,
                groups.as_deref(),
                &claims.issuer,
            )
            .await?;
        if let Ok(mut m) = self.signed_in.lock() {
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(who, (groups, Instant::now()));
        }
        Ok(p)
    }
}

/// What trying a key set on a signature found.
enum Tried {
    Verified,
    /// Keys that fit the token were there; none verified the signature.
    Failed,
    /// No key fits the token (its `kid`, `alg` and key type).
    NoKey,
}

fn try_keys(
    set: &KeySet,
    algorithm: Algorithm,
    alg: &str,
    kid: Option<&str>,
    message: &[u8],
    signature: &[u8],
) -> Tried {
    let mut fitting = set
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg))
        .filter(|k| algorithm.fits(&k.key))
        .peekable();
    if fitting.peek().is_none() {
        return Tried::NoKey;
    }
    if fitting.any(|k| algorithm.verify(&k.key, message, signature)) {
        Tried::Verified
    } else {
        Tried::Failed
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Rs(u16),
    Ps(u16),
    Es256,
    Es384,
    EdDsa,
}

impl Algorithm {
    fn parse(alg: &str) -> Result<Self, TokenError> {
        Ok(match alg {
            "RS256" => Algorithm::Rs(256),
            "RS384" => Algorithm::Rs(384),
            "RS512" => Algorithm::Rs(512),
            "PS256" => Algorithm::Ps(256),
            "PS384" => Algorithm::Ps(384),
            "PS512" => Algorithm::Ps(512),
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "EdDSA" => Algorithm::EdDsa,
            other => return Err(TokenError::Algorithm(other.chars().take(20).collect())),
        })
    }

    fn fits(self, key: &PublicKey) -> bool {
        matches!(
            (self, key),
            (Algorithm::Rs(_) | Algorithm::Ps(_), PublicKey::Rsa { .. })
                | (Algorithm::Es256, PublicKey::Ec { p384: false, .. })
                | (Algorithm::Es384, PublicKey::Ec { p384: true, .. })
                | (Algorithm::EdDsa, PublicKey::Ed25519(_))
        )
    }

    fn verify(self, key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
        match (self, key) {
            (Algorithm::Rs(bits) | Algorithm::Ps(bits), PublicKey::Rsa { n, e }) => {
                let params: &signature::RsaParameters = match (self, bits) {
                    (Algorithm::Rs(_), 256) => &signature::RSA_PKCS1_2048_8192_SHA256,
                    (Algorithm::Rs(_), 384) => &signature::RSA_PKCS1_2048_8192_SHA384,
                    (Algorithm::Rs(_), _) => &signature::RSA_PKCS1_2048_8192_SHA512,
                    (_, 256) => &signature::RSA_PSS_2048_8192_SHA256,
                    (_, 384) => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .verify(params, message, sig)
                .is_ok()
            }
            (Algorithm::Es256, PublicKey::Ec { point, .. }) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Algorithm::Es384, PublicKey::Ec { point, .. }) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (Algorithm::EdDsa, PublicKey::Ed25519(x)) => {
                UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// A key set entry Archway can verify with; None for others (encryption keys, other types).
fn parse_jwk(v: &Value) -> Option<Jwk> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let b = |k: &str| s(k).and_then(|x| decode_b64(x, k).ok());
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match s("kty")? {
        "RSA" => PublicKey::Rsa {
            n: b("n")?,
            e: b("e")?,
        },
        "EC" => {
            let (p384, len) = match s("crv")? {
                "P-256" => (false, 32),
                "P-384" => (true, 48),
                _ => return None,
            };
            let (x, y) = (b("x")?, b("y")?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::Ec { p384, point }
        }
        "OKP" if s("crv") == Some("Ed25519") => PublicKey::Ed25519(b("x")?),
        _ => return None,
    };
    Some(Jwk {
        kid: s("kid").map(str::to_string),
        alg: s("alg").map(str::to_string),
        key,
    })
}

fn decode_b64(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(format!("its {what} is not base64url")))
}

fn decode_json(part: &str, what: &str) -> Result<Value, TokenError> {
    let bytes = decode_b64(part, what)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed(format!("its {what} is not JSON")))?;
    if !v.is_object() {
        return Err(TokenError::Malformed(format!(
            "its {what} is not a JSON object"
        )));
    }
    Ok(v)
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks a signed token's claims against its issuer's configuration at time `now`.
fn check_claims(config: &OidcIssuer, claims: &Value, now: i64) -> Result<Claims, TokenError> {
    let skew = config.clock_skew.as_secs() as i64;
    let number = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as i64);
    let exp = number("exp").ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
    if now >= exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    if number("nbf").is_some_and(|nbf| now < nbf.saturating_sub(skew))
        || number("iat").is_some_and(|iat| now < iat.saturating_sub(skew))
    {
        return Err(TokenError::NotYetValid);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == config.audience,
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(config.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::Audience(config.audience.clone()));
    }
    let user = claims
        .get(&config.user_claim)
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| TokenError::MissingClaim(config.user_claim.clone()))?;
    let groups = config
        .groups_claim
        .as_ref()
        .map(|claim| match claims.get(claim) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(|g| g.trim_start_matches('/').to_string())
                .collect(),
            Some(Value::String(g)) => vec![g.trim_start_matches('/').to_string()],
            _ => Vec::new(),
        });
    Ok(Claims {
        issuer: config.issuer.clone(),
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        audience: config.audience.clone(),
        user: user.to_string(),
        groups,
        expires_at: exp,
        create_users: config.create_users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer() -> OidcIssuer {
        OidcIssuer {
            issuer: "https://sso.example.org/realms/esa".into(),
            audience: "archway".into(),
            user_claim: default_user_claim(),
            groups_claim: Some("groups".into()),
            create_users: false,
            clock_skew: Duration::from_secs(60),
            jwks_refresh: default_jwks_refresh(),
        }
    }

    #[test]
    fn check_claims_enforces_exp_nbf_iat_and_audience_with_bounded_skew() {
        let c = issuer();
        let now = 1_800_000_000;
        let ok = json!({"iss": c.issuer, "aud": ["other", "archway"], "exp": now + 10,
            "nbf": now - 5, "iat": now - 5, "preferred_username": "alice", "sub": "s-1",
            "groups": ["/xmm", "planck"]});
        let got = check_claims(&c, &ok, now).unwrap();
        assert_eq!(got.user, "alice");
        assert_eq!(got.groups.unwrap(), vec!["xmm", "planck"]);
        // Expired beyond the skew; within it still accepted.
        let mut v = ok.clone();
        v["exp"] = json!(now - 61);
        assert_eq!(check_claims(&c, &v, now).unwrap_err(), TokenError::Expired);
        v["exp"] = json!(now - 30);
        assert!(check_claims(&c, &v, now).is_ok());
        let mut v = ok.clone();
        v["nbf"] = json!(now + 120);
        assert_eq!(
            check_claims(&c, &v, now).unwrap_err(),
            TokenError::NotYetValid
        );
        let mut v = ok.clone();
        v["iat"] = json!(now + 120);
        assert_eq!(
            check_claims(&c, &v, now).unwrap_err(),
            TokenError::NotYetValid
        );
        let mut v = ok.clone();
        v["aud"] = json!("someone-else");
        assert!(matches!(
            check_claims(&c, &v, now),
            Err(TokenError::Audience(_))
        ));
        let mut v = ok.clone();
        v.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check_claims(&c, &v, now).unwrap_err(),
            TokenError::MissingClaim("exp".into())
        );
        let mut v = ok;
        v.as_object_mut().unwrap().remove("preferred_username");
        assert_eq!(
            check_claims(&c, &v, now).unwrap_err(),
            TokenError::MissingClaim("preferred_username".into())
        );
    }

    #[test]
    fn algorithms_none_and_hmac_are_refused() {
        for alg in ["none", "HS256", "HS512", ""] {
            assert!(matches!(
                Algorithm::parse(alg),
                Err(TokenError::Algorithm(_))
            ));
        }
        assert_eq!(Algorithm::parse("RS256").unwrap(), Algorithm::Rs(256));
    }

    #[test]
    fn config_problems_name_the_key() {
        let mut c = AuthConfig {
            oidc: vec![issuer(), issuer()],
            ..Default::default()
        };
        c.oidc[0].issuer = "http://sso.example.org".into();
        c.oidc[1].audience = String::new();
        c.oidc[1].clock_skew = Duration::from_secs(3600);
        c.sts_max_duration = Duration::ZERO;
        let keys: Vec<String> = c.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "sts_max_duration",
                "oidc[0].issuer",
                "oidc[1].audience",
                "oidc[1].clock_skew"
            ]
        );
        assert!(check_issuer_url("http://127.0.0.1:8080/realm").is_ok());
    }

    #[tokio::test]
    async fn tokens_of_unconfigured_issuers_are_refused_before_any_fetch() {
        let id = Identity::new(&AuthConfig {
            oidc: vec![issuer()],
            ..Default::default()
        });
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.{}",
            enc(json!({"alg": "RS256", "kid": "k"})),
            enc(json!({"iss": "https://evil.example", "aud": "archway", "exp": 4_000_000_000u64})),
            URL_SAFE_NO_PAD.encode(b"sig")
        );
        assert!(Identity::looks_like_jwt(&token));
        assert_eq!(
            id.verify(&token).await.unwrap_err(),
            TokenError::UnknownIssuer("https://evil.example".into())
        );
        assert!(matches!(
            id.verify("eyJ.not.jwt").await,
            Err(TokenError::Malformed(_))
        ));
        let none = Identity::default();
        assert_eq!(
            none.verify(&token).await.unwrap_err(),
            TokenError::NoIssuers
        );
    }
}
