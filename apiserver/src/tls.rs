//! TLS of the API (rustls with the ring provider, as every Pacer process uses): the server's
//! configuration from PEM files, serving over it, and clients that trust the cluster's CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

use crate::ApiState;

pub use pacer_runtime::install_crypto;

/// The server side of the API's TLS: certificate chain and key, PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<RustlsConfig, String> {
    let config = pacer_runtime::tls::server_config(cert, key, None)?;
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// Serves the API over TLS on `listener` until `shutdown` resolves (requests in flight get
/// 10 s to finish).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: ApiState,
    tls: RustlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let listener = listener.into_std()?;
    axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(crate::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
}

/// An HTTP client of the API: trusting only the CA in `ca` (PEM) when given, sending `token`
/// as a Bearer token when given.
pub fn client(
    ca: Option<&Path>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    client_builder(ca, token)?
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// [`client`]'s builder, for callers that set more (a resolver, say).
pub fn client_builder(
    ca: Option<&Path>,
    token: Option<&str>,
) -> Result<reqwest::ClientBuilder, String> {
    install_crypto();
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| "the token holds characters a header cannot".to_string())?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    Ok(builder)
}
