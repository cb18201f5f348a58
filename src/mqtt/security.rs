//! How the service proves itself to the broker and checks the broker: TLS (rustls with the
//! ring provider) and a user name with a password.
//!
//! Everything is read and checked once, at start-up, so a missing CA file or a key that does
//! not parse is a configuration error, not a reconnect loop. The password never appears in
//! `Debug` output or logs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A secret string: shown as `***` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// MQTT user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:***", self.username)
    }
}

/// Where the broker's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAnchors {
    /// The operating system's root certificates.
    System,
    /// The CA certificates of a PEM file (a private CA, as brokers inside a court's network use).
    CaFile(PathBuf),
}

/// What TLS to the broker needs, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub trust: TrustAnchors,
    /// A client certificate chain and its private key (PEM files), for brokers that
    /// authenticate clients by certificate.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// Why TLS could not be set up. The message holds the cause (settings carry it as text), so
/// no variant repeats it as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("TLS: {0}")]
    Rustls(rustls::Error),
}

impl From<rustls::Error> for TlsSetupError {
    fn from(error: rustls::Error) -> Self {
        TlsSetupError::Rustls(error)
    }
}

impl TlsSettings {
    /// Builds the rustls client configuration, reading every file now.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        match &self.trust {
            TrustAnchors::System => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system store holds some certificates rustls cannot use; the rest count.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsSetupError::Pem {
                        path: PathBuf::from("(system roots)"),
                        what: "no usable root certificate; give a CA file".into(),
                    });
                }
            }
            TrustAnchors::CaFile(path) => {
                for cert in read_certs(path)? {
                    roots.add(cert)?;
                }
            }
        }
        // ring, not rustls' preferred aws-lc-rs, spares every build aws-lc's C compile; ring
        // lacks only the post-quantum key exchange, which rustls marks by deprecating this.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
            }
        };
        Ok(Arc::new(config))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|error| TlsSetupError::Read {
        path: path.to_path_buf(),
        error,
    })
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Pem {
            path: path.to_path_buf(),
            what: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsSetupError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable private key: {e}"),
    })
}

/// A TLS server configuration from a PEM certificate chain and its key, with the same
/// provider as the client side (for HTTPS on the service).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    #[allow(deprecated)] // ring: see `TlsSettings::client_config`
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_certs(cert)?, read_key(key)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The checked security of one broker connection: what every client of the service uses.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<ClientConfig>>,
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl ClientSecurity {
    /// Sets the transport and the credentials of `options`.
    pub fn apply(&self, options: &mut MqttOptions) {
        if let Some(config) = &self.tls {
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(config.clone())));
        }
        if let Some(c) = &self.credentials {
            options.set_credentials(c.username.clone(), c.password.expose().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let c = Credentials {
            username: "leadrelay".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!(
            "{c:?} {:?}",
            ClientSecurity {
                tls: None,
                credentials: Some(c.clone())
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("leadrelay"), "{shown}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let missing = TlsSettings {
            trust: TrustAnchors::CaFile("/nonexistent/ca.pem".into()),
            client_auth: None,
        };
        let err = missing.client_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsSettings {
            trust: TrustAnchors::CaFile(empty),
            client_auth: None,
        }
        .client_config()
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
