//! A TLS front for the local stand-ins: on Lambda every call the function
//! makes goes over TLS, so the tests and the benchmark put this in front of
//! DynamoDB Local and the SES stand-in (both plain HTTP) to make the
//! function do what it does there: handshakes, certificate checks, and
//! aws-lc's first random numbers.
//!
//! The certificates come from a [`TestCa`] made when the test runs; no key
//! is ever written to the repository. The function trusts that CA only when
//! told to (`TLS_EXTRA_ROOTS_FILE`), so a front also proves the opposite:
//! without the opt-in, the function refuses it.
//!
//! Each front counts the TCP connections it accepted and the handshakes
//! that completed, so a test can tell how many connections a request opened.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The host name every front's usual certificate is made for, and the one
/// [`TlsFront::url`] uses.
pub const HOST: &str = "localhost";

/// A certificate authority made at run time, for one test process.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate (with the CA's name in its chain) and its key.
pub struct ServerCert {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

/// How a [`ServerCert`] differs from a good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// None: valid now, for [`HOST`].
    None,
    /// Made for another host name than [`HOST`].
    OtherHost,
    /// Valid for [`HOST`], but its validity ended years ago.
    Expired,
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "send-email-code test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's certificate in PEM: what `TLS_EXTRA_ROOTS_FILE` names.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes [`Self::pem`] to `dir/test-ca.pem` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A server certificate signed by this CA, with `flaw`.
    pub fn server_cert(&self, flaw: Flaw) -> ServerCert {
        let name = match flaw {
            Flaw::OtherHost => "not-this-host.example",
            Flaw::None | Flaw::Expired => HOST,
        };
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if flaw == Flaw::Expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS-terminating relay on loopback: TLS in, the same bytes in plain
/// TCP to the upstream stand-in.
pub struct TlsFront {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front that presents `cert` and relays to `upstream`
    /// (`http://host:port`, as the stand-ins' endpoint variables hold).
    pub async fn start(upstream: &str, cert: ServerCert) -> std::io::Result<Self> {
        Self::start_delayed(upstream, cert, Duration::ZERO).await
    }

    /// The same, holding each new connection for `setup_delay` before its
    /// handshake: on loopback a connection costs only CPU, while to an AWS
    /// endpoint TCP and TLS 1.3 take two round trips before the request
    /// can go. Requests on an open connection are not delayed.
    pub async fn start_delayed(
        upstream: &str,
        cert: ServerCert,
        setup_delay: Duration,
    ) -> std::io::Result<Self> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(cert.chain, key)
            .map_err(std::io::Error::other)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (accepted, handshakes) = (accepted.clone(), handshakes.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // As AWS endpoints and the SDK do: without it, Nagle's
                    // algorithm holds the second write of a handshake flight
                    // until the peer's delayed ACK, 40 ms later.
                    let _ = client.set_nodelay(true);
                    let (acceptor, upstream, handshakes) =
                        (acceptor.clone(), upstream.clone(), handshakes.clone());
                    tokio::spawn(async move {
                        if !setup_delay.is_zero() {
                            tokio::time::sleep(setup_delay).await;
                        }
                        // A refused handshake simply ends the connection: the
                        // client's error is what the tests look at.
                        let Ok(mut tls) = acceptor.accept(client).await else {
                            return;
                        };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut plain) = TcpStream::connect(upstream.as_str()).await else {
                            return;
                        };
                        let _ = plain.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            }
        });
        Ok(Self {
            address,
            accepted,
            handshakes,
            task,
        })
    }

    /// The endpoint URL to give the function: `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://{HOST}:{}", self.address.port())
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far (a refused certificate never
    /// completes one).
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
