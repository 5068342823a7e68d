//! TLS configuration (feature `tls`): what a TLS listener
//! ([`Reactor::listen_tls`](crate::Reactor::listen_tls)) serves.
//!
//! The TLS transport itself (rustls's unbuffered API on the read and write
//! seams, so an idle TLS connection holds no buffer; see
//! `benches/tls_idle_memory.rs` for why that API) is in
//! `src/reactor/tls.rs`, and the session it drives in `src/tls/session.rs`.
//! This module is the server's configuration, made from PEM files the way
//! an operator has them.
//!
//! - Certificates: a chain and its private key from PEM files (ECDSA,
//!   Ed25519 or RSA; PKCS#8, PKCS#1 or SEC1), checked to match. The first
//!   one given is the default, for clients that send no server name
//!   (SNI) or one no certificate is for; others are chosen by the exact
//!   name the client asks for (no wildcards), each name checked to be one
//!   its certificate covers.
//! - ALPN: the protocols offered, in the server's order of preference.
//! - TLS 1.2 and 1.3 only, with the `ring` provider's cipher suites.
//! - Session resumption on by default: stateless tickets
//!   (ChaCha20-Poly1305; a key is used for 6 hours and accepted for 12)
//!   for TLS 1.3 and for TLS 1.2 clients that ask for them, and a cache
//!   of [`SESSION_CACHE`] sessions for TLS 1.2 clients that do not. The
//!   ticket keys are made by [`TlsConfig::build`], so tickets do not
//!   survive a new configuration, nor work across processes.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("evloop-doc-tls-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let c = rcgen::generate_simple_self_signed(vec!["example.test".into()])?;
//! # std::fs::write(dir.join("cert.pem"), c.cert.pem())?;
//! # std::fs::write(dir.join("key.pem"), c.key_pair.serialize_pem())?;
//! use evloop::tls::TlsConfig;
//!
//! let config = TlsConfig::new()
//!     .certificate(dir.join("cert.pem"), dir.join("key.pem"))?
//!     .alpn(["h2", "http/1.1"])
//!     .build()?;
//! assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ResolvesServerCertUsingSni, ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// TLS 1.2 sessions the server remembers for resumption (TLS 1.3 uses
/// tickets, which the server does not store): 4,096 sessions at a few
/// hundred bytes each is about a megabyte, shared by every connection,
/// and the least recently used goes first.
pub const SESSION_CACHE: usize = 4096;

/// The server's TLS configuration, built from PEM files.
pub struct TlsConfig {
    /// The first certificate given: served when no other matches.
    default: Option<Arc<CertifiedKey>>,
    /// By name (checked, lower case).
    by_name: ResolvesServerCertUsingSni,
    /// The names given so far (a name given twice is an error).
    names: HashSet<String>,
    alpn: Vec<Vec<u8>>,
    /// Mutual TLS: the CAs a client's certificate must chain to.
    client_roots: Option<rustls::RootCertStore>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            default: None,
            by_name: ResolvesServerCertUsingSni::new(),
            names: HashSet::new(),
            alpn: Vec::new(),
            client_roots: None,
        }
    }
}

impl TlsConfig {
    /// A configuration with no certificate yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a certificate chain (`cert`, leaf first) and its private key
    /// (`key`), both PEM files, served to clients that ask for any of
    /// `names` by SNI. The first certificate added is also the default:
    /// served to clients that send no name, or a name no certificate
    /// has. Fails if a file cannot be read, holds no certificate or key,
    /// holds a key of a kind `ring` cannot sign with, or if the key does
    /// not belong to the chain's first certificate; if a name is not a
    /// DNS name, is not one the certificate covers, or was given before.
    pub fn certificate_for<I, S>(
        mut self,
        names: I,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let certified = load(cert.as_ref(), key.as_ref())?;
        for name in names {
            // As rustls takes the client's name: lower case, no final dot.
            let name = name.as_ref().trim_end_matches('.').to_ascii_lowercase();
            if !self.names.insert(name.clone()) {
                return Err(TlsError::Name(name, "given twice".into()));
            }
            self.by_name
                .add(&name, certified.clone())
                .map_err(|e| TlsError::Name(name.clone(), e.to_string()))?;
        }
        self.default.get_or_insert(Arc::new(certified));
        Ok(self)
    }

    /// [`certificate_for`](Self::certificate_for) with no names: the
    /// default certificate (the first one added is the default anyway).
    pub fn certificate(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        self.certificate_for(std::iter::empty::<&str>(), cert, key)
    }

    /// The application protocols offered by ALPN, most preferred first
    /// (e.g. `["h2", "http/1.1"]`), each 1 to 255 bytes. A client that
    /// offers ALPN but none of these is refused with the
    /// `no_application_protocol` alert; one that offers no ALPN at all is
    /// served with no protocol agreed.
    pub fn alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Mutual TLS: every client must present a certificate that chains to
    /// one of the CA certificates in `ca` (a PEM file of one or more),
    /// valid now and meant for client authentication. A client without
    /// one, or with one these CAs did not sign, fails its handshake with
    /// the alert TLS has for it ([`TlsFailure::Certificate`]) before the
    /// handler hears of it; the handler reads who passed with
    /// [`Context::tls`](crate::Context::tls) ([`TlsInfo::peer_subject`]).
    /// Revocation lists are not checked.
    ///
    /// [`TlsFailure::Certificate`]: crate::TlsFailure::Certificate
    pub fn client_ca(mut self, ca: impl AsRef<Path>) -> Result<Self, TlsError> {
        let roots = self
            .client_roots
            .get_or_insert_with(rustls::RootCertStore::empty);
        add_roots(roots, ca.as_ref())?;
        Ok(self)
    }

    /// The rustls configuration: TLS 1.2 and 1.3 with `ring`, the
    /// certificates chosen by SNI, ALPN, tickets and the session cache,
    /// and the client CAs for mutual TLS.
    pub fn build(self) -> Result<Arc<ServerConfig>, TlsError> {
        let default = self.default.ok_or(TlsError::NoCertificate)?;
        if let Some(bad) = self.alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
            return Err(TlsError::Alpn(bad.len()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Rustls)?;
        let builder = match self.client_roots {
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(BySni {
            default,
            by_name: self.by_name,
        }));
        config.alpn_protocols = self.alpn;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Rustls)?;
        Ok(Arc::new(config))
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.names.iter().collect();
        names.sort();
        f.debug_struct("TlsConfig")
            .field("has_default", &self.default.is_some())
            .field("names", &names)
            .field("alpn", &self.alpn)
            .finish()
    }
}

/// The certificates in a PEM file: at least one, or an error naming it.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::File(path.to_path_buf(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::File(
            path.to_path_buf(),
            "no certificate in it".into(),
        ));
    }
    Ok(certs)
}

/// Adds the CA certificates in a PEM file to `roots`.
fn add_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), TlsError> {
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::File(path.to_path_buf(), e.to_string()))?;
    }
    Ok(())
}

/// Reads a chain and its key, and checks they belong together.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::File(key.to_path_buf(), e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| TlsError::File(key.to_path_buf(), e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::KeyMismatch(cert.to_path_buf(), key.to_path_buf())
        }
        other => TlsError::File(cert.to_path_buf(), other.to_string()),
    })?;
    Ok(certified)
}

/// Chooses the certificate by the client's SNI (rustls has made it lower
/// case, without a final dot), or the default.
#[derive(Debug)]
struct BySni {
    default: Arc<CertifiedKey>,
    by_name: ResolvesServerCertUsingSni,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = match hello.server_name() {
            Some(_) => self.by_name.resolve(hello),
            None => None,
        };
        Some(named.unwrap_or_else(|| Arc::clone(&self.default)))
    }
}

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM file could not be read, or held nothing usable: the file and
    /// what was wrong.
    File(PathBuf, String),
    /// The key (second path) does not belong to the chain's first
    /// certificate (first path).
    KeyMismatch(PathBuf, PathBuf),
    /// A name for SNI that cannot be used (the name, and why).
    Name(String, String),
    /// An ALPN protocol name of this many bytes (1 to 255 are allowed).
    Alpn(usize),
    /// No certificate was added.
    NoCertificate,
    /// rustls refused the configuration.
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File(path, why) => write!(f, "{}: {why}", path.display()),
            TlsError::KeyMismatch(cert, key) => write!(
                f,
                "the key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
            TlsError::Name(name, why) => write!(f, "server name {name:?}: {why}"),
            TlsError::Alpn(len) => write!(f, "an ALPN protocol name of {len} bytes (1 to 255)"),
            TlsError::NoCertificate => f.write_str("no certificate was given"),
            TlsError::Rustls(e) => write!(f, "rustls: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// A TLS client configuration that trusts the CA certificates in `ca` (a
/// PEM file of one or more) and nothing else: TLS 1.2 and 1.3 on `ring`,
/// no client certificate. The server's certificate is checked as the web
/// checks it (rustls-webpki): it must be an end-entity certificate, so a
/// self-signed certificate made with a plain `openssl req -x509` (which
/// marks it a CA) is refused (`CaUsedAsEndEntity`, in the log); make a
/// test certificate with `-addext basicConstraints=critical,CA:FALSE`,
/// or with rcgen, and give it as its own `ca`. For [`Context::start_tls`](crate::Context::start_tls);
/// a program that needs more (the system's roots, a client certificate,
/// ALPN) builds its own `rustls::ClientConfig`.
pub fn client_config(ca: impl AsRef<Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    add_roots(&mut roots, ca.as_ref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What a TLS connection's handshake agreed
/// ([`Context::tls`](crate::Context::tls)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// TLS 1.2 or 1.3; `None` before the handshake is done.
    pub version: Option<rustls::ProtocolVersion>,
    /// The cipher suite; `None` before it is chosen.
    pub cipher_suite: Option<rustls::CipherSuite>,
    /// The ALPN protocol agreed on, if the client offered one this server
    /// serves.
    pub alpn: Option<Vec<u8>>,
    /// The session was resumed (a ticket or the cache): no certificate
    /// was sent, and the handshake cost far less.
    pub resumed: bool,
    /// With mutual TLS ([`TlsConfig::client_ca`]), the subject of the
    /// client's certificate, most specific part first, as RFC 4514 writes
    /// it (`CN=alice,O=Example`, special characters escaped): rustls has
    /// verified it chains to a configured CA. `None` without mutual TLS.
    pub peer_subject: Option<String>,
    /// The peer's close_notify came: it ended cleanly. A FIN without it
    /// (see [`on_read_closed`](crate::Handler::on_read_closed)) may
    /// have cut the last thing it sent short, and is counted in
    /// [`Stats::tls_truncated`](crate::Stats::tls_truncated).
    pub peer_closed: bool,
}

pub(crate) mod session;
mod subject;

#[cfg(test)]
mod tests;
