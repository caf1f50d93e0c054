//! JSON Web Tokens as a passive observer can judge them: the algorithm, the subject, the
//! expiry, and whether the HMAC secret is one of the secrets people leave in place.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC secrets found in tutorials, framework defaults and leaked configurations. A token
/// signed with one of them can be forged by anyone.
const WEAK_SECRETS: &[&str] = &[
    "secret",
    "secretkey",
    "secret_key",
    "secret-key",
    "mysecret",
    "my_secret",
    "my-secret",
    "jwt_secret",
    "jwtsecret",
    "jwt-secret",
    "your-256-bit-secret",
    "your_jwt_secret",
    "supersecret",
    "super-secret",
    "changeme",
    "change-me",
    "changeit",
    "password",
    "passw0rd",
    "123456",
    "12345678",
    "1234567890",
    "qwerty",
    "admin",
    "default",
    "test",
    "testing",
    "dev",
    "development",
    "key",
    "private",
    "shhhhh",
    "shhhhhared-secret",
    "s3cr3t",
    "hello",
    "token",
    "jwt",
    "auth",
    "api",
];

/// What a JWT says of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwt {
    /// The `alg` header, lower case (`none`, `hs256`, `rs256`...).
    pub alg: String,
    pub sub: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<i64>,
    /// HS256 with a secret from the list.
    pub weak_secret: bool,
    /// Who it acts as: `jwt:SUB` (redacted), or `jwt:HASH` of the token without a `sub`.
    pub principal: String,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Read `token` if it is a JWT (three base64url parts, a JSON header with `alg`).
pub fn read(token: &str) -> Option<Jwt> {
    let mut parts = token.splitn(3, '.');
    let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if h.len() > 4096 || p.len() > 16384 || sig.contains('.') {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&b64(h)?).ok()?;
    let alg = header.get("alg")?.as_str()?.to_ascii_lowercase();
    let payload: serde_json::Value = serde_json::from_slice(&b64(p)?).ok()?;
    let sub = payload.get("sub").and_then(|v| match v {
        serde_json::Value::String(s) => Some(s.chars().take(64).collect()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let exp = payload.get("exp").and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    let weak_secret = alg == "hs256" && weak_hs256(&token[..h.len() + 1 + p.len()], sig);
    let principal = match &sub {
        Some(s) => format!("jwt:{}", crate::inspect::redact_user(s)),
        None => format!("jwt:{}", crate::inspect::short_hash(token.as_bytes())),
    };
    Some(Jwt { alg, sub, exp, weak_secret, principal })
}

/// Whether `signature` is the HS256 of `signed` under one of the weak secrets.
fn weak_hs256(signed: &str, signature: &str) -> bool {
    let Some(want) = b64(signature) else { return false };
    if want.len() != 32 {
        return false;
    }
    WEAK_SECRETS.iter().any(|secret| {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
        mac.update(signed.as_bytes());
        mac.verify_slice(&want).is_ok()
    })
}

/// The last tokens read, by a hash of their text: clients send the same token with every
/// call, and the secret check costs a few dozen HMACs. Direct-mapped, fixed size.
pub struct Cache {
    slots: Vec<Option<(u64, Option<Jwt>)>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { slots: vec![None; 256] }
    }
}

impl Cache {
    pub fn read(&mut self, token: &str) -> Option<&Jwt> {
        let h = key(token.as_bytes());
        let i = (h >> 56) as usize % 256;
        if !matches!(&self.slots[i], Some((k, _)) if *k == h) {
            self.slots[i] = Some((h, read(token)));
        }
        self.slots[i].as_ref().and_then(|(_, v)| v.as_ref())
    }
}

/// A token's cache key: its length and its first 16 and last 64 bytes (the signature,
/// which differs between tokens whose header and payload are alike).
fn key(b: &[u8]) -> u64 {
    use crate::detector::hash_bytes;
    let tail = &b[b.len().saturating_sub(64)..];
    let h = hash_bytes(hash_bytes(b.len() as u64, &b[..b.len().min(16)]), tail);
    h ^ (h >> 32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A JWT with this header and payload, HS256-signed with `secret` (or unsigned).
    pub fn make(header: &str, payload: &str, secret: Option<&str>) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!("{}.{}", e.encode(header), e.encode(payload));
        let sig = match secret {
            Some(s) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(s.as_bytes()).unwrap();
                mac.update(signed.as_bytes());
                e.encode(mac.finalize().into_bytes())
            }
            None => String::new(),
        };
        format!("{signed}.{sig}")
    }

    #[test]
    fn reads_what_a_token_says() {
        let t = make(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"sub":"alice","exp":1700000000}"#, Some("secret"));
        let j = read(&t).unwrap();
        assert_eq!(
            (j.alg.as_str(), j.sub.as_deref(), j.exp, j.weak_secret),
            ("hs256", Some("alice"), Some(1700000000), true)
        );
        let strong = make(r#"{"alg":"HS256"}"#, r#"{"sub":42}"#, Some("k9$Vq2!xP0-long-random-material-7f3a"));
        let j = read(&strong).unwrap();
        assert_eq!((j.sub.as_deref(), j.exp, j.weak_secret), (Some("42"), None, false));
        let none = make(r#"{"alg":"none"}"#, r#"{"sub":"bob"}"#, None);
        assert_eq!(read(&none).unwrap().alg, "none");
        assert!(read("not.a.jwt").is_none());
        assert!(read("abc").is_none());
        let mut c = Cache::default();
        assert_eq!(c.read(&t).cloned(), read(&t));
        assert_eq!(c.read(&t).cloned(), read(&t));
    }
}
