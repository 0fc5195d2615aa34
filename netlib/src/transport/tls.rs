//! TLS over any byte stream, with `rustls`: [`TlsStream`] wraps another [`Transport`] (TCP, or
//! any other) and drives rustls's unbuffered API under the event loop (a TLS state machine
//! that does no I/O; netlib owns the buffers). [`TlsAcceptor`] and [`TlsConnector`] wrap any
//! acceptor and connector, so every framing (PodSixNet's terminator, the length prefix, lines)
//! and WebSocket run over TLS unchanged. [`TlsServer`] holds a certificate and key read from
//! PEM files and reloads them on demand (new handshakes take the new ones; established
//! connections keep theirs); [`TlsClient`] says whom a client trusts.
//!
//! The server's limits apply as on TCP: the TLS handshake is the connection's handshake
//! (counted toward `max_connections` and dropped after the handshake timeout; rustls caps its
//! messages at 64 KiB), the byte rate limit and the read budget count the TLS bytes taken from
//! the socket once the connection is a channel, a TLS record still arriving is unfinished
//! input (the frame timeout runs while one is), and the memory budget counts rustls's state
//! (an estimate) plus the exact capacity of the buffers a connection holds: a record still
//! arriving, plaintext not read yet, and records the peer has not taken (at most 64 KiB
//! before `write` says `WouldBlock`). An idle connection holds no buffer. A peer that sends
//! anything but TLS (plaintext on a TLS port) fails the handshake at its first bytes and is
//! closed without a channel.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mio::event::Source;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerConnectionData, UnbufferedServerConnection,
};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use crate::codec::Wire;

use crate::error::CloseReason;
use crate::transport::{Acceptor, Connector, Transport};
/// A server's name as a TLS client checks it (a DNS name or an IP address): `rustls`'s, as
/// [`TlsStream::client`] takes it.
pub use rustls::pki_types::ServerName;

/// What rustls holds per connection besides the buffers netlib owns (its state, key schedule
/// and record layer), counted toward the memory budget: an estimate, from the server's RSS
/// with 10 000 idle TLS connections against as many TCP ones (`tls-bench`: 3 500 B more
/// each), rounded up (bytes).
const TLS_STATE_BYTES: usize = 3_584;

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

/// Which end of the connection this is: rustls's unbuffered connections, whose buffers netlib
/// owns (see [`TlsStream`]).
enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// What [`TlsStream::process`] does once the connection may send application data (rustls's
/// `WriteTraffic` state).
#[derive(Clone, Copy)]
enum Job<'a> {
    /// Nothing: take what came in, and answer it (handshake messages, a key update).
    Nothing,
    /// Encrypt this plaintext.
    Encrypt(&'a [u8]),
    /// Send close_notify (RFC 8446 §6.1).
    CloseNotify,
    /// After an error: hand over the alert rustls queued, and nothing more (the input is not
    /// looked at again).
    Alert,
}

/// What one [`TlsStream::process`] did.
struct Processed {
    /// Bytes of the input it is done with (to drop from the front).
    used: usize,
    /// The job was done (`false`: the handshake is not that far yet).
    done: bool,
    /// rustls's error, if the peer broke the protocol.
    error: Option<rustls::Error>,
}

/// Where decrypted application data goes: the reader's buffer first, the rest kept.
struct Sink<'b> {
    buf: &'b mut [u8],
    filled: usize,
    rest: &'b mut Vec<u8>,
}

impl Sink<'_> {
    fn put(&mut self, payload: &[u8]) {
        let n = payload.len().min(self.buf.len() - self.filled);
        self.buf[self.filled..self.filled + n].copy_from_slice(&payload[..n]);
        self.filled += n;
        self.rest.extend_from_slice(&payload[n..]);
    }
}

/// rustls's two unbuffered connections, seen alike.
trait Records {
    type Data;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Records for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// Appends to `out` what `f` writes into a buffer at least `guess` bytes long (rustls says
/// how much it needs when that is too little).
fn append<E>(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let at = out.len();
    let mut want = guess;
    loop {
        out.resize(at + want, 0);
        match f(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(e) => {
                out.truncate(at);
                match needs(&e) {
                    Some(n) if n > want => want = n,
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Bytes a TLS record adds to its plaintext at most (header, explicit nonce, content type,
/// tag, with room to spare), for a first guess of the room encryption needs.
const RECORD_OVERHEAD: usize = 64;
/// The most plaintext a TLS record carries (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 16 * 1024;

/// Takes the records in `incoming` (decrypted application data to `sink`, handshake messages
/// and alerts answered into `out`) and, once the connection may send application data, does
/// `job` (its records appended to `out`). The caller drops `used` bytes from the front of
/// `incoming` afterwards, as rustls's unbuffered API asks.
fn process<C: Records>(
    conn: &mut C,
    incoming: &mut [u8],
    sink: &mut Sink<'_>,
    out: &mut Vec<u8>,
    job: Job<'_>,
    peer_closed: &mut bool,
) -> Processed {
    let mut done = matches!(job, Job::Nothing | Job::Alert);
    let mut used = 0;
    loop {
        let UnbufferedStatus { mut discard, state } = conn.records(&mut incoming[used..]);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                return Processed {
                    used: used + discard,
                    done,
                    error: Some(e),
                }
            }
        };
        let mut stop = false;
        match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            sink.put(record.payload);
                        }
                        Err(e) => {
                            return Processed {
                                used: used + discard,
                                done,
                                error: Some(e),
                            }
                        }
                    }
                }
            }
            ConnectionState::EncodeTlsData(mut data) => {
                let encoded = append(
                    out,
                    0,
                    |b| data.encode(b),
                    |e| match e {
                        EncodeError::InsufficientSize(s) => Some(s.required_size),
                        _ => None,
                    },
                );
                if let Err(e) = encoded {
                    let e =
                        rustls::Error::General(format!("cannot encode a handshake record: {e}"));
                    return Processed {
                        used: used + discard,
                        done,
                        error: Some(e),
                    };
                }
            }
            // What `out` holds is written by the caller, in order, before anything later.
            ConnectionState::TransmitTlsData(transmit) => transmit.done(),
            ConnectionState::PeerClosed => *peer_closed = true,
            ConnectionState::WriteTraffic(mut traffic) => {
                let written = match job {
                    Job::Nothing | Job::Alert => Ok(()),
                    Job::Encrypt(plain) => {
                        let records = plain.len().div_ceil(MAX_FRAGMENT).max(1);
                        append(
                            out,
                            plain.len() + records * RECORD_OVERHEAD,
                            |b| traffic.encrypt(plain, b),
                            needs_for_encrypt,
                        )
                    }
                    Job::CloseNotify => append(
                        out,
                        RECORD_OVERHEAD,
                        |b| traffic.queue_close_notify(b),
                        needs_for_encrypt,
                    ),
                };
                if let Err(e) = written {
                    let e = rustls::Error::General(format!("cannot encrypt: {e}"));
                    return Processed {
                        used: used + discard,
                        done,
                        error: Some(e),
                    };
                }
                done = true;
                stop = true;
            }
            // BlockedHandshake (more input needed), Closed, and early data (which netlib's
            // servers do not accept).
            _ => stop = true,
        }
        used += discard;
        if stop || matches!(job, Job::Alert) {
            return Processed {
                used,
                done,
                error: None,
            };
        }
    }
}

fn needs_for_encrypt(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

/// Bytes of the socket one read takes at most: a TLS record and more (RFC 8446 §5.2: at most
/// 16 KiB + 256 bytes each).
const READ_CHUNK: usize = 32 * 1024;
/// Most TLS bytes a connection holds unprocessed: a handshake message rustls joins from
/// several records (64 KiB at most) and a read more. Past it the peer is breaking the protocol.
const MAX_INCOMING: usize = 64 * 1024 + 2 * READ_CHUNK;
/// Most encrypted bytes held for a peer that does not read before `write` says `WouldBlock`.
const MAX_OUTGOING: usize = 64 * 1024;

thread_local! {
    /// Where one read from the socket lands: each connection keeps only a TLS record still
    /// arriving, so an idle connection holds no buffer.
    static INPUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Where the plaintext of several frames is gathered, to be encrypted into full records.
    static GATHER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A TLS connection over another transport, on rustls's unbuffered API: netlib owns the
/// buffers, and a connection keeps one only while it holds something (a TLS record still
/// arriving, plaintext not yet read, records the peer has not taken), so an idle TLS
/// connection costs rustls's state alone. What it holds is counted exactly: a record still
/// arriving is unfinished input ([`Transport::buffered`]: the frame timeout runs while it is
/// not 0), and every buffer's capacity counts toward the memory budget
/// ([`Transport::memory`]).
pub struct TlsStream {
    inner: Box<dyn Transport>,
    side: Side,
    /// TLS bytes read and not processed: a record still arriving. Let go when empty.
    incoming: Vec<u8>,
    /// Plaintext decrypted and not read yet (from `plain_at`). Let go when read.
    plain: Vec<u8>,
    plain_at: usize,
    /// TLS bytes for the peer that `inner` has not taken (from `out_at`). Let go when written.
    out: Vec<u8>,
    out_at: usize,
    /// Plaintext written before the handshake let it be encrypted (a client's first
    /// messages); encrypted as soon as it does.
    early: Vec<u8>,
    /// TLS bytes taken from `inner` since the connection opened.
    received: u64,
    /// TLS bytes written to `inner` since [`Transport::take_sent`] last asked.
    sent: u64,
    /// `inner` reached end of stream.
    eof: bool,
    /// The peer's close_notify came: no more plaintext.
    peer_closed: bool,
    /// rustls reported an error: the connection is over, and rustls is not called again.
    failed: bool,
    /// The end of stream is to follow what `out` holds (see [`Transport::shutdown_write`]).
    shutdown: bool,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("inner", &self.inner)
            .field("handshaking", &self.handshaking())
            .finish_non_exhaustive()
    }
}

/// What a connection whose TLS failed answers from then on.
fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "TLS: the connection failed")
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
        let conn = UnbufferedServerConnection::new(tls.config.clone()).map_err(rustls_error)?;
        Ok(Self::new(inner, Side::Server(conn)))
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
        let conn =
            UnbufferedClientConnection::new(tls.config.clone(), name).map_err(rustls_error)?;
        let mut stream = Self::new(inner, Side::Client(conn));
        // The client's hello, ready to go with the first write, flush or read.
        stream.settle(Job::Nothing)?;
        Ok(stream)
    }

    fn new(inner: Box<dyn Transport>, side: Side) -> Self {
        TlsStream {
            inner,
            side,
            incoming: Vec::new(),
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            out_at: 0,
            early: Vec::new(),
            received: 0,
            sent: 0,
            eof: false,
            peer_closed: false,
            failed: false,
            shutdown: false,
        }
    }

    fn handshaking(&self) -> bool {
        match &self.side {
            Side::Server(c) => c.is_handshaking(),
            Side::Client(c) => c.is_handshaking(),
        }
    }

    /// Runs [`process`] over `input` (this connection's `incoming`, or a read just taken).
    fn process(
        side: &mut Side,
        input: &mut [u8],
        sink: &mut Sink<'_>,
        out: &mut Vec<u8>,
        job: Job<'_>,
        peer_closed: &mut bool,
    ) -> Processed {
        match side {
            Side::Server(c) => process(c, input, sink, out, job, peer_closed),
            Side::Client(c) => process(c, input, sink, out, job, peer_closed),
        }
    }

    /// Runs [`process`] over what `incoming` holds (decrypted data kept in `plain`).
    fn process_incoming(&mut self, job: Job<'_>) -> Processed {
        let mut sink = Sink {
            buf: &mut [],
            filled: 0,
            rest: &mut self.plain,
        };
        Self::process(
            &mut self.side,
            &mut self.incoming,
            &mut sink,
            &mut self.out,
            job,
            &mut self.peer_closed,
        )
    }

    /// Processes what `incoming` holds and does `job`: whether the job was done. A TLS error
    /// is answered with its alert (best effort) and returned.
    fn settle(&mut self, job: Job<'_>) -> io::Result<bool> {
        if self.failed {
            return Err(failed());
        }
        let p = self.process_incoming(job);
        self.incoming.drain(..p.used);
        self.let_go();
        match p.error {
            Some(e) => Err(self.fail(e)),
            None => Ok(p.done),
        }
    }

    /// A TLS error: its alert goes out (best effort), and the error is returned as `InvalidData`.
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        if std::mem::replace(&mut self.failed, true) {
            return rustls_error(e);
        }
        // rustls queued the alert; processing once more hands it over (before it would look
        // at the input again). The same input as the failed call, less what it was done with:
        // rustls's handshake deframer keeps positions in it.
        let _ = self.process_incoming(Job::Alert);
        let _ = self.write_out();
        rustls_error(e)
    }

    /// Lets empty buffers go, so that an idle connection holds none.
    fn let_go(&mut self) {
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
        if self.plain_at == self.plain.len() && self.plain.capacity() > 0 {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
    }

    /// Takes one read of TLS bytes from `inner` and processes it, decrypted application data
    /// into `buf` first: `None` if `inner` had nothing, else the plaintext bytes put in `buf`
    /// (0 for records that carry none, or the end of the stream).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.failed {
            return Err(failed());
        }
        INPUT.with(|input| {
            let mut input = input.borrow_mut();
            let held = self.incoming.len();
            if input.len() < held + READ_CHUNK {
                input.resize(held + READ_CHUNK, 0);
            }
            input[..held].copy_from_slice(&self.incoming);
            let n = match self.inner.read(&mut input[held..held + READ_CHUNK]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(Some(0));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            self.received += n as u64;
            let mut sink = Sink {
                buf,
                filled: 0,
                rest: &mut self.plain,
            };
            let p = Self::process(
                &mut self.side,
                &mut input[..held + n],
                &mut sink,
                &mut self.out,
                Job::Nothing,
                &mut self.peer_closed,
            );
            let filled = sink.filled;
            self.incoming.clear();
            self.incoming.extend_from_slice(&input[p.used..held + n]);
            self.let_go();
            if let Some(e) = p.error {
                return Err(self.fail(e));
            }
            if self.incoming.len() > MAX_INCOMING {
                // rustls has no error (nor alert) for this: the connection just ends.
                self.failed = true;
                return Err(rustls_error(rustls::Error::General(format!(
                    "{} bytes of TLS input that make no record",
                    self.incoming.len()
                ))));
            }
            self.send_early()?;
            Ok(Some(filled))
        })
    }

    /// Encrypts the plaintext written before the handshake allowed it, once it does.
    fn send_early(&mut self) -> io::Result<()> {
        if self.early.is_empty() || self.handshaking() {
            return Ok(());
        }
        let early = std::mem::take(&mut self.early);
        if !self.settle(Job::Encrypt(&early))? {
            self.early = early;
        }
        Ok(())
    }

    /// Writes the TLS bytes held for the peer to `inner`: whether all of them went (the
    /// buffer then let go).
    fn write_out(&mut self) -> io::Result<bool> {
        while self.out_at < self.out.len() {
            match self.inner.write(&self.out[self.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out_at += n;
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > 0 {
            self.out = Vec::new();
            self.out_at = 0;
        }
        if std::mem::take(&mut self.shutdown) {
            self.inner.shutdown_write()?;
        }
        Ok(true)
    }

    /// Drives the handshake as far as the stream allows: whether it is done.
    fn drive_handshake(&mut self) -> io::Result<bool> {
        // The client's hello, or what earlier input asked for.
        self.settle(Job::Nothing)?;
        loop {
            self.send_early()?;
            self.write_out()?;
            if !self.handshaking() {
                return Ok(true);
            }
            if self.eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
            if self.fill(&mut [])?.is_none() {
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
        if buf.is_empty() {
            return Ok(0);
        }
        if self.plain_at < self.plain.len() {
            let n = buf.len().min(self.plain.len() - self.plain_at);
            buf[..n].copy_from_slice(&self.plain[self.plain_at..self.plain_at + n]);
            self.plain_at += n;
            self.let_go();
            return Ok(n);
        }
        let before = self.received;
        loop {
            // The peer's close_notify, or the stream ended without one: an end of stream
            // all the same.
            if self.peer_closed || self.eof {
                return Ok(0);
            }
            let got = self.fill(buf)?;
            // What processing the input made (a key update's answer) goes out.
            self.write_out()?;
            match got {
                None => return Err(io::ErrorKind::WouldBlock.into()),
                Some(0) if self.received - before > EMPTY_READ_BUDGET => {
                    return Err(io::ErrorKind::WouldBlock.into())
                }
                Some(0) => {}
                Some(n) => return Ok(n),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.failed {
            return Err(failed());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        if self.handshaking() {
            // The handshake's own records go (a client's hello), and the plaintext is kept
            // until the handshake lets it be encrypted (rustls's buffered connections do the
            // same), within the same bound as records held for the peer.
            self.write_out()?;
            let room = MAX_OUTGOING.saturating_sub(self.early.len());
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let before = self.early.len();
            for b in bufs {
                let n = b.len().min(room - (self.early.len() - before));
                self.early.extend_from_slice(&b[..n]);
            }
            return Ok(self.early.len() - before);
        }
        self.send_early()?;
        // What is held goes first; `WouldBlock` only once the socket said so (the poller
        // then reports it writable again).
        self.write_out()?;
        if self.out_at > 0 {
            // What the socket took goes, so that a reader that keeps up slowly holds the
            // buffer at its bound instead of growing it.
            self.out.drain(..self.out_at);
            self.out_at = 0;
        }
        let room = MAX_OUTGOING.saturating_sub(self.out.len() - self.out_at);
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = total.min(room);
        let done = match bufs.iter().find(|b| !b.is_empty()) {
            // One frame, or the first holds all that is taken: encrypted where it lies.
            Some(first) if first.len() >= take => self.settle(Job::Encrypt(&first[..take]))?,
            _ => GATHER.with(|gather| {
                let mut gather = gather.borrow_mut();
                gather.clear();
                for b in bufs {
                    let n = b.len().min(take - gather.len());
                    gather.extend_from_slice(&b[..n]);
                    if gather.len() == take {
                        break;
                    }
                }
                self.settle(Job::Encrypt(&gather))
            })?,
        };
        if !done {
            // The handshake is not that far yet.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.write_out()?;
        Ok(take)
    }

    /// `WouldBlock` while records are held, or plaintext waits for the handshake.
    fn flush(&mut self) -> io::Result<()> {
        if !self.write_out()? || !self.early.is_empty() {
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
    /// The end of stream follows the close_notify once the socket took all of it (with a
    /// later flush if it did not at once).
    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.handshaking() && !self.failed {
            let _ = self.settle(Job::CloseNotify);
        }
        self.shutdown = true;
        self.write_out().map(|_| ())
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

    /// The inner stream's, and a TLS record still arriving.
    fn buffered(&self) -> usize {
        self.inner.buffered() + self.incoming.len()
    }

    /// The inner stream's, and the TLS bytes the peer has not taken.
    fn queued(&self) -> usize {
        self.inner.queued() + (self.out.len() - self.out_at) + self.early.len()
    }

    /// The inner stream's, rustls's state, and the capacity of the buffers this connection
    /// holds (none when idle).
    fn memory(&self) -> usize {
        self.inner.memory()
            + TLS_STATE_BYTES
            + self.incoming.capacity()
            + self.plain.capacity()
            + self.out.capacity()
            + self.early.capacity()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory::{pair, MemoryStream};

    /// A server and a client TLS stream for `localhost`, with certificates made here, each
    /// over its own pipe: the test relays the bytes between the pipes' other ends, as many as
    /// it likes.
    fn streams(name: &str) -> (TlsStream, TlsStream, MemoryStream, MemoryStream) {
        let dir = std::env::temp_dir().join(format!("netlib-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let signed = leaf.signed_by(&key, &ca).unwrap();
        let (ca_pem, cert, key_pem) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        std::fs::write(&cert, signed.pem()).unwrap();
        std::fs::write(&key_pem, key.serialize_pem()).unwrap();
        let server_tls = TlsServer::from_pem_files(&cert, &key_pem).unwrap();
        let client_tls = TlsClient::from_ca_file(&ca_pem).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let (server_end, server_relay) = pair();
        let (client_end, client_relay) = pair();
        let server = TlsStream::server(Box::new(server_end), &server_tls).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = TlsStream::client(Box::new(client_end), &client_tls, name).unwrap();
        (server, client, server_relay, client_relay)
    }

    /// Moves at most `limit` bytes from `from` to `to`: how many moved.
    fn relay(from: &mut MemoryStream, to: &mut MemoryStream, limit: usize) -> usize {
        let mut buf = vec![0; limit];
        match from.read(&mut buf) {
            Ok(n) => {
                to.write_all(&buf[..n]).unwrap();
                n
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => panic!("{e}"),
        }
    }

    fn handshake(
        s: &mut TlsStream,
        c: &mut TlsStream,
        sr: &mut MemoryStream,
        cr: &mut MemoryStream,
    ) {
        for _ in 0..100 {
            let client_done = c.finish_connect().unwrap();
            relay(cr, sr, 1 << 20);
            let server_done = s.handshake().unwrap();
            relay(sr, cr, 1 << 20);
            if client_done && server_done {
                return;
            }
        }
        panic!("no handshake in 100 rounds");
    }

    fn read_all(s: &mut TlsStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_record_still_arriving_is_unfinished_input_and_an_idle_connection_holds_no_buffer() {
        let (mut s, mut c, mut sr, mut cr) = streams("partial");
        handshake(&mut s, &mut c, &mut sr, &mut cr);
        let idle = s.inner.memory() + TLS_STATE_BYTES;
        c.write_all(b"hello").unwrap();
        relay(&mut cr, &mut sr, 1 << 20);
        assert_eq!(read_all(&mut s), b"hello");
        assert_eq!(s.buffered(), 0);
        assert_eq!(s.memory(), idle, "an idle connection holds no buffer");

        c.write_all(b"world").unwrap();
        let mut record = vec![0; 4096];
        let len = cr.read(&mut record).unwrap();
        assert!(
            len > 5 + 5,
            "a record: header, then more than the plaintext"
        );
        sr.write_all(&record[..len - 3]).unwrap();
        assert_eq!(
            read_all(&mut s),
            b"",
            "no plaintext before the record is whole"
        );
        assert_eq!(
            s.buffered(),
            len - 3,
            "the record so far is unfinished input"
        );
        assert!(s.memory() >= idle + len - 3, "and counted");
        sr.write_all(&record[len - 3..len]).unwrap();
        assert_eq!(read_all(&mut s), b"world");
        assert_eq!((s.buffered(), s.memory()), (0, idle));
    }

    #[test]
    fn a_reader_that_keeps_up_slowly_holds_the_buffer_at_its_bound() {
        let (mut s, mut c, mut sr, mut cr) = streams("trickle");
        handshake(&mut s, &mut c, &mut sr, &mut cr);
        let chunk = vec![b'y'; 16 * 1024];
        let (mut written, mut got, mut most) = (0, 0, 0);
        // 8 MiB through a pipe the reader drains by at most 4 KiB a round.
        for _ in 0..100_000 {
            if written < 8 << 20 {
                match s.write(&chunk) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let _ = s.flush();
            most = most.max(s.memory());
            relay(&mut sr, &mut cr, 4 * 1024);
            got += read_all(&mut c).len();
            if written >= 8 << 20 && got == written {
                break;
            }
        }
        assert!(written >= 8 << 20);
        assert_eq!(got, written);
        let bound = s.inner.memory() + TLS_STATE_BYTES + 2 * (MAX_OUTGOING + chunk.len());
        assert!(most <= bound, "held {most} B, bound {bound} B");
    }

    #[test]
    fn plaintext_written_during_the_handshake_goes_out_once_it_is_done() {
        let (mut s, mut c, mut sr, mut cr) = streams("early");
        assert_eq!(c.write(b"early").unwrap(), 5);
        assert_eq!(c.queued(), 5, "kept, and counted");
        handshake(&mut s, &mut c, &mut sr, &mut cr);
        relay(&mut cr, &mut sr, 1 << 20);
        assert_eq!(read_all(&mut s), b"early");
        assert_eq!(c.queued(), 0);
    }

    #[test]
    fn records_held_for_a_slow_reader_are_bounded_and_counted_then_let_go() {
        let (mut s, mut c, mut sr, mut cr) = streams("slow");
        handshake(&mut s, &mut c, &mut sr, &mut cr);
        let idle = s.inner.memory() + TLS_STATE_BYTES;
        let chunk = vec![b'x'; 16 * 1024];
        let mut written = 0;
        let blocked = loop {
            match s.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) => panic!("{e}"),
            }
            if written > 4 << 20 {
                break false;
            }
        };
        assert!(blocked, "a peer that does not read blocks the writer");
        let held = s.queued();
        assert!(
            held > 0 && held <= MAX_OUTGOING + chunk.len() + 64,
            "{held}"
        );
        assert!(s.memory() >= idle + held, "what is held is counted");
        // This side closes: its close_notify and end of stream wait behind what is held.
        s.shutdown_write().unwrap();
        // The reader catches up: everything arrives, then the close, and the buffers go.
        let mut got = 0;
        for _ in 0..10_000 {
            relay(&mut sr, &mut cr, 32 * 1024);
            got += read_all(&mut c).len();
            let _ = s.flush();
            if got == written {
                break;
            }
        }
        assert_eq!(got, written);
        assert!(c.peer_closed, "the close_notify came after everything");
        assert_eq!(c.read(&mut [0; 16]).unwrap(), 0, "then the end of stream");
        assert_eq!((s.queued(), s.memory()), (0, idle));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever a peer sends, before the handshake or after it (where the bytes are
        /// appended to what a real client sent), cut anywhere: no panic (rustls is never
        /// called again after an error), and an error ends the stream for good.
        #[test]
        fn any_bytes_from_a_peer_never_panic(
            after_handshake: bool,
            record_start: bool,
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(1usize..600, 1..8),
        ) {
            let (mut s, mut c, mut sr, mut cr) = streams("fuzz");
            if after_handshake {
                handshake(&mut s, &mut c, &mut sr, &mut cr);
            }
            let mut bytes = Vec::new();
            if record_start {
                // A record header that announces its length, so the deframer waits for it.
                let len = rest.len().min(16_000) as u16;
                bytes.extend_from_slice(&[if after_handshake { 23 } else { 22 }, 3, 3]);
                bytes.extend_from_slice(&len.to_be_bytes());
            }
            bytes.extend_from_slice(&rest);
            let mut at = 0;
            let mut failed = false;
            for cut in cuts.iter().cycle().take(64) {
                let end = (at + cut).min(bytes.len());
                sr.write_all(&bytes[at..end]).unwrap();
                at = end;
                let step = if after_handshake {
                    let mut buf = [0u8; 256];
                    s.read(&mut buf).map(|_| ())
                } else {
                    s.handshake().map(|_| ())
                };
                match step {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                        failed = true;
                        break;
                    }
                    _ => {}
                }
                if at == bytes.len() {
                    break;
                }
            }
            if failed {
                let mut buf = [0u8; 16];
                proptest::prop_assert!(s.read(&mut buf).is_err());
                proptest::prop_assert!(s.write(b"x").is_err());
                let _ = s.shutdown_write();
            }
        }
    }
}
