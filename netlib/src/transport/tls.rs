//! TLS over any byte stream, with `rustls`: [`TlsStream`] wraps another [`Transport`] (TCP, or
//! any other) as rustls's `tlsserver-mio` example does, a TLS state machine under the event
//! loop. [`TlsAcceptor`] and [`TlsConnector`] wrap any acceptor and connector, so every
//! framing (PodSixNet's terminator, the length prefix, lines) and WebSocket run over TLS
//! unchanged. [`TlsServer`] holds a certificate and key read from PEM files and reloads them
//! on demand (new handshakes take the new ones; established connections keep theirs);
//! [`TlsClient`] says whom a client trusts.
//!
//! The server's limits apply as on TCP: the TLS handshake is the connection's handshake
//! (counted toward `max_connections` and dropped after the handshake timeout; rustls caps its
//! messages at 64 KiB), the byte rate limit and the read budget count the TLS bytes taken from
//! the socket once the connection is a channel, and the memory budget counts an estimate of
//! rustls's state plus what rustls last said it holds. Not counted: a TLS record still
//! arriving (the frame timeout sees no unfinished frame; the idle timeout applies) and records
//! rustls holds for a slow reader (at most 64 KiB a connection). A peer that sends anything
//! but TLS (plaintext on a TLS port) fails the handshake at its first bytes and is closed
//! without a channel.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mio::event::Source;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::codec::Wire;

use crate::error::CloseReason;
use crate::transport::{Acceptor, Connector, Transport};
/// A server's name as a TLS client checks it (a DNS name or an IP address): `rustls`'s, as
/// [`TlsStream::client`] takes it.
pub use rustls::pki_types::ServerName;

/// What rustls holds per connection besides the buffered bytes it reports (its state, key
/// schedule and record buffers), counted toward the memory budget: an estimate (bytes).
const TLS_STATE_BYTES: usize = 4 * 1024;

/// Why TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate, key or settings (e.g. a key that does not match the
    /// certificate).
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn pem_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The ring provider, the one netlib is built with.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key from PEM files.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if certs.is_empty() {
        return Err(pem_error(cert, "no certificate in it"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let signing = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| pem_error(key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match()?;
    Ok(certified)
}

/// The server's certificate, swapped by [`TlsServer::reload`].
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A TLS server's settings: its certificate chain and key, read from PEM files, and rustls's
/// safe defaults (TLS 1.2 and 1.3, no client certificates). Cheap to clone (shared). Give it
/// to [`Server::bind_tls`](crate::Server::bind_tls).
#[derive(Clone)]
pub struct TlsServer {
    reloading: Arc<Reloading>,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("cert", &self.reloading.cert)
            .field("key", &self.reloading.key)
            .finish()
    }
}

impl TlsServer {
    /// Reads the certificate chain (`cert`, PEM, the server's certificate first) and its
    /// private key (`key`, PEM: PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// [`TlsError::Pem`] if a file cannot be read or holds no certificate or key,
    /// [`TlsError::Rustls`] if the key does not match the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref().to_owned(), key.as_ref().to_owned());
        let current = RwLock::new(Arc::new(certified_key(&cert, &key)?));
        let reloading = Arc::new(Reloading { cert, key, current });
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(reloading.clone());
        Ok(TlsServer {
            reloading,
            config: Arc::new(config),
        })
    }

    /// Reads the certificate and key files again: handshakes from now on present the new
    /// certificate; established connections are not touched. Call it on SIGHUP, or when the
    /// files change (chat-server does both).
    ///
    /// # Errors
    /// As [`from_pem_files`](Self::from_pem_files); the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.reloading.cert, &self.reloading.key)?;
        *self
            .reloading
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The certificate and key files.
    pub fn files(&self) -> (&Path, &Path) {
        (&self.reloading.cert, &self.reloading.key)
    }
}

/// Whom a TLS client trusts. Cheap to clone (shared).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for TlsClient {}

impl crate::ClientConfig {
    /// Whom a `tls://host:port` or `wss://` connection trusts
    /// ([`Client::connect`](crate::Client::connect)): e.g. [`TlsClient::from_ca_file`] for a
    /// private CA. Default: the public web's authorities ([`TlsClient::public_roots`]).
    #[must_use]
    pub fn tls(mut self, tls: TlsClient) -> Self {
        self.0.set_tls(tls.config);
        self
    }
}

impl TlsClient {
    /// The trust a client config holds, or the public roots.
    pub(crate) fn of(config: Option<&Arc<rustls::ClientConfig>>) -> Self {
        config.map_or_else(Self::public_roots, |c| TlsClient { config: c.clone() })
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<Self, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// Whether connections resume earlier TLS sessions with the same server (shorter
    /// handshakes). Default: on, as rustls (an in-memory cache of 256 sessions); off makes
    /// every handshake a full one (what a benchmark of handshakes wants).
    #[must_use]
    pub fn resumption(self, on: bool) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = if on {
            rustls::client::Resumption::default()
        } else {
            rustls::client::Resumption::disabled()
        };
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// Trusts the public web's certificate authorities (Mozilla's list, as the
    /// `webpki-roots` crate carries it): for servers with a certificate from a public CA.
    pub fn public_roots() -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::with_roots(roots).expect("the default protocol versions are supported")
    }

    /// Trusts only the certificate authorities in `ca` (PEM): for a private CA, or a test's.
    ///
    /// # Errors
    /// [`TlsError::Pem`] if the file cannot be read or holds no certificate rustls accepts.
    pub fn from_ca_file(ca: impl AsRef<Path>) -> Result<Self, TlsError> {
        let ca = ca.as_ref();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem_error(ca, e))? {
            roots
                .add(cert.map_err(|e| pem_error(ca, e))?)
                .map_err(|e| pem_error(ca, e))?;
        }
        if roots.is_empty() {
            return Err(pem_error(ca, "no certificate in it"));
        }
        Self::with_roots(roots)
    }
}

/// A TLS connection over another transport.
pub struct TlsStream {
    inner: Box<dyn Transport>,
    conn: rustls::Connection,
    /// TLS bytes taken from `inner` since the connection opened.
    received: u64,
    /// TLS bytes written to `inner` since [`Transport::take_sent`] last asked.
    sent: u64,
    /// `inner` reached end of stream.
    eof: bool,
    /// What rustls said it holds after it last processed input: plaintext not yet read and
    /// TLS bytes not yet written.
    held: usize,
    /// The plaintext of that.
    plaintext: usize,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("inner", &self.inner)
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

fn rustls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl TlsStream {
    /// The server side of a connection accepted on `inner`.
    ///
    /// # Errors
    /// rustls's, as `InvalidData` (its settings are unusable).
    pub fn server(inner: Box<dyn Transport>, tls: &TlsServer) -> io::Result<Self> {
        let conn = rustls::ServerConnection::new(tls.config.clone()).map_err(rustls_error)?;
        Ok(Self::new(inner, conn.into()))
    }

    /// The client side of a connection to server `name` over `inner`.
    ///
    /// # Errors
    /// rustls's, as `InvalidData`.
    pub fn client(
        inner: Box<dyn Transport>,
        tls: &TlsClient,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let conn = rustls::ClientConnection::new(tls.config.clone(), name).map_err(rustls_error)?;
        Ok(Self::new(inner, conn.into()))
    }

    fn new(inner: Box<dyn Transport>, conn: rustls::Connection) -> Self {
        TlsStream {
            inner,
            conn,
            received: 0,
            sent: 0,
            eof: false,
            held: 0,
            plaintext: 0,
        }
    }

    /// Takes TLS bytes from `inner` and processes them: whether any came (or the stream
    /// ended). A TLS error is sent as an alert (best effort) and returned.
    fn read_tls(&mut self) -> io::Result<bool> {
        match self.conn.read_tls(&mut *self.inner) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.received += n as u64;
                match self.conn.process_new_packets() {
                    Ok(state) => {
                        self.plaintext = state.plaintext_bytes_to_read();
                        self.held = self.plaintext + state.tls_bytes_to_write();
                        Ok(true)
                    }
                    Err(e) => {
                        let _ = self.write_tls();
                        Err(rustls_error(e))
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes what rustls holds to `inner`: whether all of it went.
    fn write_tls(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut *self.inner) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Drives the handshake as far as the stream allows: whether it is done.
    fn drive_handshake(&mut self) -> io::Result<bool> {
        loop {
            self.write_tls()?;
            if !self.conn.is_handshaking() {
                return Ok(true);
            }
            if self.eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
            if !self.read_tls()? {
                return Ok(false);
            }
        }
    }
}

/// How many TLS bytes one `read` takes that carry no plaintext (handshake messages, empty
/// records, key updates) before it returns `WouldBlock` (the driver, seeing
/// [`Transport::received`] move, reads on within its budget): records that carry nothing
/// cannot keep one read going. Above rustls's largest handshake message (64 KiB), so that a
/// handshake flight is always read whole.
const EMPTY_READ_BUDGET: u64 = 80 * 1024;

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let before = self.received;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer's close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The stream ended without close_notify: an end of stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            if !self.read_tls()? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // What processing the input made (a key update's answer) goes out.
            self.write_tls()?;
            if self.plaintext == 0 && self.received - before > EMPTY_READ_BUDGET {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        // What rustls holds goes first, so that it has room; `WouldBlock` only once the
        // socket said so (the poller then reports it writable again).
        let drained = self.write_tls()?;
        // rustls takes plaintext up to its buffer limit (64 KiB of records not yet written).
        let n = self.conn.writer().write_vectored(bufs)?;
        self.write_tls()?;
        if n == 0 {
            debug_assert!(
                !drained,
                "rustls took nothing though its buffer was written out"
            );
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.write_tls()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inner.flush()
    }
}

impl Transport for TlsStream {
    fn kind(&self) -> &'static str {
        "tls"
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        self.inner.source()
    }

    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.inner.set_waker(waker);
    }

    /// Sends close_notify (RFC 8446 §6.1), then the inner stream's end of stream.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        let _ = self.write_tls();
        self.inner.shutdown_write()
    }

    /// The inner connect, then the TLS handshake (the server's certificate checked against
    /// the client's roots and name: a mismatch is the error).
    fn finish_connect(&mut self) -> io::Result<bool> {
        if !self.inner.finish_connect()? {
            return Ok(false);
        }
        self.drive_handshake()
    }

    /// The inner handshake, then the TLS handshake: a peer that does not speak TLS fails it.
    fn handshake(&mut self) -> io::Result<bool> {
        if !self.inner.handshake()? {
            return Ok(false);
        }
        self.drive_handshake()
    }

    fn peer_pending(&self) -> bool {
        self.inner.peer_pending()
    }

    fn closing(&mut self, reason: &CloseReason) {
        self.inner.closing(reason);
    }

    fn close_reason(&mut self) -> Option<CloseReason> {
        self.inner.close_reason()
    }

    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    fn queued(&self) -> usize {
        self.inner.queued() + usize::from(self.conn.wants_write())
    }

    /// The inner stream's, rustls's state and what it said it holds.
    fn memory(&self) -> usize {
        self.inner.memory() + TLS_STATE_BYTES + self.held
    }

    /// TLS bytes taken from the inner stream: the byte rate limit and the read budget count
    /// those (once the connection is a channel; the handshake is bounded by its timeout).
    fn received(&self) -> Option<u64> {
        Some(self.received)
    }

    fn take_sent(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.sent))
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Accepts TLS connections on another acceptor's (e.g. a [`TcpAcceptor`](super::tcp::TcpAcceptor)):
/// each becomes a channel once its TLS handshake is done.
pub struct TlsAcceptor {
    inner: Box<dyn Acceptor>,
    tls: TlsServer,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("inner", &self.inner)
            .field("tls", &self.tls)
            .finish()
    }
}

impl TlsAcceptor {
    /// TLS with `tls`'s certificate over what `inner` accepts.
    pub fn new(inner: Box<dyn Acceptor>, tls: TlsServer) -> Self {
        TlsAcceptor { inner, tls }
    }
}

impl Acceptor for TlsAcceptor {
    fn accept(&mut self) -> io::Result<Option<(Box<dyn Transport>, SocketAddr)>> {
        loop {
            let Some((inner, addr)) = self.inner.accept()? else {
                return Ok(None);
            };
            match TlsStream::server(inner, &self.tls) {
                Ok(stream) => return Ok(Some((Box::new(stream), addr))),
                Err(e) => log::error!("{addr}: cannot start TLS: {e}"),
            }
        }
    }

    fn source(&mut self) -> Option<&mut dyn Source> {
        self.inner.source()
    }

    fn set_waker(&mut self, waker: Arc<mio::Waker>) {
        self.inner.set_waker(waker);
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }

    fn wire(&self) -> Option<Wire> {
        self.inner.wire()
    }

    fn kind(&self) -> &'static str {
        "tls"
    }
}

/// Connects over TLS through another connector (e.g. a [`TcpConnector`](super::tcp::TcpConnector)),
/// checking the server's certificate for `name`.
pub struct TlsConnector {
    inner: Box<dyn Connector>,
    tls: TlsClient,
    name: ServerName<'static>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("inner", &self.inner)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// TLS to the server named `name` (a DNS name or an IP address, as its certificate must
    /// say), trusting `tls`, over what `inner` connects.
    ///
    /// # Errors
    /// `InvalidInput` if `name` is neither a DNS name nor an IP address.
    pub fn new(inner: Box<dyn Connector>, tls: TlsClient, name: &str) -> io::Result<Self> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?}: {e}")))?;
        Ok(TlsConnector { inner, tls, name })
    }
}

impl Connector for TlsConnector {
    fn restart(&mut self) -> Result<(), (i32, String)> {
        self.inner.restart()
    }

    fn next_attempt(&mut self) -> Option<io::Result<Box<dyn Transport>>> {
        let attempt = self.inner.next_attempt()?;
        Some(attempt.and_then(|inner| {
            let stream = TlsStream::client(inner, &self.tls, self.name.clone())?;
            Ok(Box::new(stream) as Box<dyn Transport>)
        }))
    }

    fn wire(&self) -> Option<Wire> {
        self.inner.wire()
    }
}
