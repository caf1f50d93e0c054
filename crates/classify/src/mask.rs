//! Masked forms and keyed hashes: what leaves the classifier instead of values.

use crate::text::{SmallStr, ValueHash};
use crate::types::DataType;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The value with most of it hidden, by type: enough to recognise it when you hold it, not
/// enough to use it.
pub fn mask(ty: DataType, v: &str) -> String {
    mask_into(ty, v).to_string()
}

/// `mask`, written in place (no allocation for the usual short masks).
pub fn mask_into(ty: DataType, v: &str) -> SmallStr {
    let mut s = SmallStr::new();
    // Letters and digits only (ASCII, so bytes are characters), gathered once (the first
    // 64; a longer value's last ones are found again when needed).
    let mut kept = [0u8; 64];
    let mut count = 0;
    for c in v.bytes().filter(u8::is_ascii_alphanumeric) {
        if count < kept.len() {
            kept[count] = c;
        }
        count += 1;
    }
    let first = |s: &mut SmallStr, k: usize| s.push_ascii(&kept[..k.min(count).min(kept.len())]);
    let last = |s: &mut SmallStr, k: usize| {
        let from = count.saturating_sub(k);
        if count <= kept.len() {
            s.push_ascii(&kept[from..count]);
        } else {
            let tail: Vec<u8> = v.bytes().filter(u8::is_ascii_alphanumeric).skip(from).collect();
            s.push_ascii(&tail);
        }
    };
    let stars = |s: &mut SmallStr, k: usize| {
        const STARS: &str = "****************";
        let mut k = k;
        while k > 0 {
            let n = k.min(STARS.len());
            s.push_str(&STARS[..n]);
            k -= n;
        }
    };
    match ty {
        DataType::CreditCard => {
            let hidden = count.saturating_sub(8);
            first(&mut s, 4);
            let mut k = 0;
            while k < hidden {
                s.push(' ');
                let g = (hidden - k).min(4);
                stars(&mut s, g);
                k += g;
            }
            s.push(' ');
            last(&mut s, 4);
        }
        DataType::Email => {
            let (local, domain) = v.split_once('@').unwrap_or((v, ""));
            let tld = domain.rsplit('.').next().unwrap_or("");
            if let Some(c) = local.chars().next() {
                s.push(c);
            }
            s.push_str("***@");
            if let Some(c) = domain.chars().next() {
                s.push(c);
            }
            s.push_str("***.");
            s.push_str(tld);
        }
        DataType::UsSsn => {
            s.push_str("***-**-");
            last(&mut s, 4);
        }
        DataType::Iban => {
            first(&mut s, 4);
            s.push_str(" **** ");
            last(&mut s, 4);
        }
        DataType::Phone
        | DataType::AbaRouting
        | DataType::NlBsn
        | DataType::InAadhaar
        | DataType::UkNino
        | DataType::EsDni
        | DataType::Passport => {
            stars(&mut s, count.saturating_sub(2));
            last(&mut s, 2);
        }
        DataType::IpAddress => {
            // Keep the network, hide the host part.
            let (sep, tail) = if v.contains(':') { (':', ":****") } else { ('.', ".*.*") };
            for (k, part) in v.split(sep).take(2).enumerate() {
                if k > 0 {
                    s.push(sep);
                }
                s.push_str(part);
            }
            s.push_str(tail);
        }
        DataType::DateOfBirth => s.push_str("****-**-**"),
        DataType::Jwt => s.push_str("eyJ***.eyJ***.***"),
        DataType::PrivateKey => {
            s.push_str("-----BEGIN ");
            s.push_str(v);
            s.push_str("----- ***");
        }
        DataType::AwsAccessKeyId
        | DataType::GithubToken
        | DataType::GitlabToken
        | DataType::SlackToken
        | DataType::StripeKey
        | DataType::GoogleApiKey => {
            // The provider prefix says what it is; the last four let its owner find it.
            let cut = v.find(['_', '-']).filter(|&i| i < 11).map_or(4, |i| i + 1);
            s.push_str(v.get(..cut).unwrap_or(""));
            s.push_str("***");
            if count >= 20 {
                last(&mut s, 4);
            }
        }
        DataType::Password
        | DataType::Secret
        | DataType::SessionId
        | DataType::AwsSecretKey
        | DataType::AzureStorageKey
        | DataType::AzureSas => s.push_str("********"),
        DataType::Custom(_) => {
            stars(&mut s, count.saturating_sub(2).min(16));
            last(&mut s, 2);
        }
    }
    s
}

/// HMAC-SHA256 under `key` of the type and the normalized value (digits and letters only,
/// lower case, for most types), first 16 bytes in hex: equal values give equal hashes
/// whatever their formatting.
pub fn keyed_hash(key: &[u8], ty: DataType, v: &str) -> String {
    keyed_hash_with(&hasher(key), ty, v).to_string()
}

/// An HMAC keyed once (the key's pads computed), to be cloned per value.
pub fn hasher(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// `keyed_hash` with a prepared key, as bytes.
pub fn keyed_hash_with(keyed: &Hmac<Sha256>, ty: DataType, v: &str) -> ValueHash {
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
        // Normalized through a buffer on the stack, a chunk at a time.
        let mut buf = [0u8; 64];
        let mut n = 0;
        for c in v.bytes().filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b':')) {
            if n == buf.len() {
                mac.update(&buf);
                n = 0;
            }
            buf[n] = c.to_ascii_lowercase();
            n += 1;
        }
        mac.update(&buf[..n]);
    }
    let out = mac.finalize().into_bytes();
    let mut h = [0u8; 16];
    h.copy_from_slice(&out[..16]);
    ValueHash(h)
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
