//! TLS for the HTTP/WebSocket listener: a rustls server configuration (ring provider, the
//! same stack as MQTT and the webhooks) from a PEM certificate chain and private key.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Reads `cert_file` and `key_file` into a server configuration offering HTTP/1.1.
pub fn server_config(cert_file: &str, key_file: &str) -> Result<ServerConfig, String> {
    synopticon_actors::distributor::http::install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("cannot read {cert_file}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert_file}: not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{cert_file} holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read a PEM private key from {key_file}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{cert_file} and {key_file} do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
