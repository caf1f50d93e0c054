//! Masked forms and keyed hashes: what leaves the classifier instead of values.

use crate::types::DataType;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The value with most of it hidden, by type: enough to recognise it when you hold it, not
/// enough to use it.
pub fn mask(ty: DataType, v: &str) -> String {
    let alnum: Vec<char> = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let last = |k: usize| -> String { alnum[alnum.len().saturating_sub(k)..].iter().collect() };
    let first = |k: usize| -> String { alnum[..k.min(alnum.len())].iter().collect() };
    match ty {
        DataType::CreditCard => {
            let stars = alnum.len().saturating_sub(8);
            let mut s = first(4);
            let mut k = 0;
            while k < stars {
                s.push(' ');
                let g = (stars - k).min(4);
                s.push_str(&"*".repeat(g));
                k += g;
            }
            format!("{s} {}", last(4))
        }
        DataType::Email => {
            let (local, domain) = v.split_once('@').unwrap_or((v, ""));
            let tld = domain.rsplit('.').next().unwrap_or("");
            let l = local.chars().next().map(String::from).unwrap_or_default();
            let d = domain.chars().next().map(String::from).unwrap_or_default();
            format!("{l}***@{d}***.{tld}")
        }
        DataType::UsSsn => format!("***-**-{}", last(4)),
        DataType::Iban => format!("{} **** {}", first(4), last(4)),
        DataType::Phone | DataType::AbaRouting | DataType::NlBsn | DataType::InAadhaar => {
            format!("{}{}", "*".repeat(alnum.len().saturating_sub(2)), last(2))
        }
        DataType::IpAddress => {
            // Keep the network, hide the host part.
            if v.contains(':') {
                format!("{}:****", v.split(':').take(2).collect::<Vec<_>>().join(":"))
            } else {
                format!("{}.*.*", v.split('.').take(2).collect::<Vec<_>>().join("."))
            }
        }
        DataType::UkNino | DataType::EsDni | DataType::Passport => {
            format!("{}{}", "*".repeat(alnum.len().saturating_sub(2)), last(2))
        }
        DataType::DateOfBirth => "****-**-**".to_string(),
        DataType::Jwt => "eyJ***.eyJ***.***".to_string(),
        DataType::PrivateKey => format!("-----BEGIN {v}----- ***"),
        DataType::AwsAccessKeyId
        | DataType::GithubToken
        | DataType::GitlabToken
        | DataType::SlackToken
        | DataType::StripeKey
        | DataType::GoogleApiKey => {
            // The provider prefix says what it is; the last four let its owner find it.
            let cut = v.find(['_', '-']).filter(|&i| i < 11).map_or(4, |i| i + 1);
            format!("{}***{}", v.get(..cut).unwrap_or(""), if alnum.len() >= 20 { last(4) } else { String::new() })
        }
        DataType::Password
        | DataType::Secret
        | DataType::SessionId
        | DataType::AwsSecretKey
        | DataType::AzureStorageKey
        | DataType::AzureSas => "********".to_string(),
        DataType::Custom(_) => format!("{}{}", "*".repeat(alnum.len().saturating_sub(2).min(16)), last(2)),
    }
}

/// HMAC-SHA256 under `key` of the type and the normalized value (digits and letters only,
/// lower case, for most types), first 16 bytes in hex: equal values give equal hashes
/// whatever their formatting.
pub fn keyed_hash(key: &[u8], ty: DataType, v: &str) -> String {
    keyed_hash_with(&hasher(key), ty, v)
}

/// An HMAC keyed once (the key's pads computed), to be cloned per value.
pub fn hasher(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// `keyed_hash` with a prepared key.
pub fn keyed_hash_with(keyed: &Hmac<Sha256>, ty: DataType, v: &str) -> String {
    let mut mac = keyed.clone();
    mac.update(ty.name().as_bytes());
    mac.update(b":");
    let exact = matches!(
        ty,
        DataType::Password
            | DataType::Secret
            | DataType::SessionId
            | DataType::Jwt
            | DataType::AwsSecretKey
            | DataType::AzureStorageKey
            | DataType::AzureSas
            | DataType::GithubToken
            | DataType::GitlabToken
            | DataType::SlackToken
            | DataType::StripeKey
            | DataType::GoogleApiKey
            | DataType::AwsAccessKeyId
            | DataType::PrivateKey
    );
    if exact {
        mac.update(v.as_bytes());
    } else {
        let norm: Vec<u8> = v
            .bytes()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b':'))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        mac.update(&norm);
    }
    let out = mac.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in &out[..16] {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(DataType::CreditCard, "4111111111111111"), "4111 **** **** 1111");
        assert_eq!(mask(DataType::CreditCard, "3782-822463-10005"), "3782 **** *** 0005");
        assert_eq!(mask(DataType::Email, "jane.doe@example.com"), "j***@e***.com");
        assert_eq!(mask(DataType::UsSsn, "536-90-1234"), "***-**-1234");
        assert_eq!(mask(DataType::Password, "hunter2!"), "********");
        assert_eq!(mask(DataType::GithubToken, "ghp_abcdefghijklmnopqrstuvwxyz0123456789"), "ghp_***6789");
        assert_eq!(mask(DataType::IpAddress, "203.0.113.9"), "203.0.*.*");
    }

    #[test]
    fn hashes_correlate_formats_not_values() {
        let k = b"k";
        let a = keyed_hash(k, DataType::CreditCard, "4111 1111 1111 1111");
        assert_eq!(a, keyed_hash(k, DataType::CreditCard, "4111-1111-1111-1111"));
        assert_ne!(a, keyed_hash(k, DataType::CreditCard, "4012888888881881"));
        assert_ne!(a, keyed_hash(b"other", DataType::CreditCard, "4111 1111 1111 1111"));
        assert_eq!(a.len(), 32);
    }
}
