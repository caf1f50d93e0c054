//! `apiwatch sink certs`: a CA and the certificates of a sink and its agents, for a test or
//! a pilot (a production fleet would use its own PKI). Files, all PEM, in one directory:
//! `ca.pem` / `ca-key.pem`, `sink.pem` / `sink-key.pem`, `agent-NAME.pem` /
//! `agent-NAME-key.pem`. An existing CA in that directory is reused, so more agents can be
//! added later. Keys are written readable by their owner only.

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};

pub struct CertsOptions<'a> {
    pub dir: &'a Path,
    /// Names (DNS or IP) the sink's certificate is valid for; empty: no sink certificate.
    pub sink_names: &'a [String],
    pub agents: &'a [String],
    pub days: i64,
    /// Agents whose certificate expired yesterday (for tests of refusal).
    pub expired_agents: &'a [String],
    /// Make the sink's certificate an expired one (for tests of refusal).
    pub expired_sink: bool,
}

fn write_key(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    Ok(())
}

fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Make (or reuse) the CA and issue the certificates asked for; returns the files written.
pub fn make(o: &CertsOptions) -> Result<Vec<String>> {
    std::fs::create_dir_all(o.dir).with_context(|| format!("cannot create {}", o.dir.display()))?;
    for a in o.agents.iter().chain(o.expired_agents) {
        if !name_ok(a) {
            bail!("agent name {a:?}: letters, digits, '-', '_' and '.' only");
        }
    }
    let mut written = Vec::new();
    let now = OffsetDateTime::now_utc();
    let (ca_pem, ca_key_pem) = (o.dir.join("ca.pem"), o.dir.join("ca-key.pem"));
    let (ca_cert, ca_key) = if ca_pem.exists() && ca_key_pem.exists() {
        let key = KeyPair::from_pem(&std::fs::read_to_string(&ca_key_pem)?)
            .with_context(|| format!("{}: not a private key", ca_key_pem.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&std::fs::read_to_string(&ca_pem)?)
            .with_context(|| format!("{}: not a CA certificate", ca_pem.display()))?;
        // Re-signing the same name with the same key gives an issuer that chains the same.
        (params.self_signed(&key)?, key)
    } else {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "apiwatch CA");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = now - Duration::days(1);
        p.not_after = now + Duration::days(o.days.max(1) * 2);
        let key = KeyPair::generate()?;
        let cert = p.self_signed(&key)?;
        std::fs::write(&ca_pem, cert.pem())?;
        write_key(&ca_key_pem, &key.serialize_pem())?;
        written.extend([ca_pem.display().to_string(), ca_key_pem.display().to_string()]);
        (cert, key)
    };
    let mut issue =
        |file: &str, cn: &str, sans: Vec<String>, eku: ExtendedKeyUsagePurpose, expired: bool| -> Result<()> {
            let mut p =
                CertificateParams::new(sans).with_context(|| format!("{cn}: a name is not a DNS name or IP"))?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            p.extended_key_usages = vec![eku];
            if expired {
                p.not_before = now - Duration::days(30);
                p.not_after = now - Duration::days(1);
            } else {
                p.not_before = now - Duration::days(1);
                p.not_after = now + Duration::days(o.days.max(1));
            }
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
            let (c, k) = (o.dir.join(format!("{file}.pem")), o.dir.join(format!("{file}-key.pem")));
            std::fs::write(&c, cert.pem()).with_context(|| format!("cannot write {}", c.display()))?;
            write_key(&k, &key.serialize_pem())?;
            written.extend([c.display().to_string(), k.display().to_string()]);
            Ok(())
        };
    if !o.sink_names.is_empty() {
        issue("sink", &o.sink_names[0], o.sink_names.to_vec(), ExtendedKeyUsagePurpose::ServerAuth, o.expired_sink)?;
    }
    for a in o.agents {
        issue(&format!("agent-{a}"), a, vec![a.clone()], ExtendedKeyUsagePurpose::ClientAuth, false)?;
    }
    for a in o.expired_agents {
        issue(&format!("agent-{a}"), a, vec![a.clone()], ExtendedKeyUsagePurpose::ClientAuth, true)?;
    }
    Ok(written)
}
