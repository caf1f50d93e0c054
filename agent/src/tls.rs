//! TLS settings of both ends (rustls): the agent verifies the sink against a CA bundle or
//! the system's roots, can pin the sink's certificate and present its own; the sink
//! requires a client certificate issued by its CA. TLS 1.2 and 1.3 only (all rustls has).

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("{}: no PEM private key in it", path.display()))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(p) => {
            for c in load_certs(p)? {
                roots.add(c).with_context(|| format!("{}: a certificate cannot be a trust anchor", p.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                bail!("no system CA certificates found (install ca-certificates, or set ca_file)");
            }
        }
    }
    Ok(roots)
}

/// SHA-256 of a certificate (DER), as `openssl x509 -noout -fingerprint -sha256` shows it
/// without colons, lower case.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What the agent needs to reach a sink.
pub struct ClientTls {
    pub ca_file: Option<std::path::PathBuf>,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
    /// SHA-256 fingerprints (hex) one of which the sink's certificate must have, on top of
    /// the usual verification.
    pub pins: Vec<String>,
}

pub fn client_config(t: &ClientTls) -> Result<rustls::ClientConfig> {
    let roots = Arc::new(roots(t.ca_file.as_deref())?);
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?;
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .context("certificate verifier")?;
    let verifier: Arc<dyn ServerCertVerifier> = if t.pins.is_empty() {
        webpki
    } else {
        let pins = t.pins.iter().map(|p| p.to_ascii_lowercase().replace(':', "")).collect();
        Arc::new(Pinned { inner: webpki, pins })
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let cfg = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(load_certs(c)?, load_key(k)?)
            .with_context(|| format!("{} and {} do not make a client identity", c.display(), k.display()))?,
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("client_cert and client_key go together"),
    };
    Ok(cfg)
}

/// The usual verification, and then the certificate must be one of the pinned ones.
#[derive(Debug)]
struct Pinned {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    pins: Vec<String>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let fp = fingerprint(end_entity);
        if self.pins.contains(&fp) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!("the sink's certificate (sha256 {fp}) is not one of the pinned ones")))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The sink's side: its certificate, and the CA whose client certificates it accepts (all
/// clients must present one).
pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<rustls::ServerConfig> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(client_ca)? {
        roots.add(c).with_context(|| format!("{}: a certificate cannot be a trust anchor", client_ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| anyhow!("client certificate verifier: {e}"))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .with_context(|| format!("{} and {} do not make a server identity", cert.display(), key.display()))
}

/// Who a client certificate names: its subject's common name, else its first DNS name,
/// else its fingerprint.
pub fn peer_name(cert: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::*;
    if let Ok((_, x)) = X509Certificate::from_der(cert.as_ref()) {
        if let Some(cn) = x.subject().iter_common_name().next().and_then(|c| c.as_str().ok()) {
            return cn.to_string();
        }
        if let Ok(Some(san)) = x.subject_alternative_name() {
            for n in &san.value.general_names {
                if let GeneralName::DNSName(d) = n {
                    return d.to_string();
                }
            }
        }
    }
    format!("sha256:{}", fingerprint(cert))
}

/// A TLS failure in words a user can act on.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(mut err) = cur {
        // An io::Error's source() skips the error it wraps: look inside.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            err = inner;
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return match t {
                rustls::Error::InvalidCertificate(c) => match c {
                    rustls::CertificateError::UnknownIssuer => {
                        "the sink's certificate is not issued by a trusted CA (check ca_file)".into()
                    }
                    rustls::CertificateError::BadSignature => {
                        "the sink's certificate is not issued by a trusted CA: its signature does not verify with the CA of that name in ca_file (another CA with the same name?)".into()
                    }
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. } => {
                        format!("the sink's certificate is not valid for the name in the URL ({c:?})")
                    }
                    rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                        "the sink's certificate has expired".into()
                    }
                    other => format!("the sink's certificate is refused: {other:?}"),
                },
                rustls::Error::AlertReceived(a) => {
                    format!("the sink refused the handshake ({a:?}): is this agent's client certificate issued by the sink's CA and still valid?")
                }
                other => format!("TLS: {other}"),
            };
        }
        cur = err.source();
    }
    e.to_string()
}
