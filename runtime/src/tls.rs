//! rustls configurations from PEM files (ring provider): servers (the API, agents' endpoints),
//! optionally requiring client certificates of a CA, and clients with an identity.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (a chain, or CA certificates).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A server with this certificate and key; with `client_ca`, only clients showing a
/// certificate that CA signed get through the handshake. ALPN offers HTTP/2 and HTTP/1.1.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client trusting the CA of `identity` and showing its certificate (an apiserver calling
/// agents, whose endpoints require one).
pub fn client_config(identity: &crate::client::EtcdTls) -> Result<rustls::ClientConfig, String> {
    client_builder(roots(&identity.ca)?)
        .with_client_auth_cert(read_certs(&identity.cert)?, read_key(&identity.key)?)
        .map_err(|e| format!("{}: {e}", identity.cert.display()))
}

/// A client trusting `roots` only, showing no certificate: the cluster's CA for Pacer's own
/// endpoints, none for clients that only speak plain HTTP to tasks. Unlike reqwest's default
/// it needs no system certificate store, which a minimal host may not have.
pub fn anonymous_client_config(
    roots: impl IntoIterator<Item = CertificateDer<'static>>,
) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        // A certificate that is not a CA is no trust anchor: skipped, trusted for nothing.
        let _ = store.add(root);
    }
    client_builder(store).with_no_client_auth()
}

fn client_builder(
    roots: rustls::RootCertStore,
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
}

/// The CA certificates of a PEM file as trust anchors.
fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(roots)
}
