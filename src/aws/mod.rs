//! The outside systems, each in its own module: DynamoDB ([`store`]) and
//! SES ([`mailer`]), with the SDK set-up they share (HTTP client and its
//! trust store, timeouts, retries, the warm-up at start-up) and the reading
//! of SDK errors ([`sdk_error`]). SDK types stay in here.

pub mod mailer;
pub mod sdk_error;
pub mod store;
pub mod tables;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{
    ConfigBag, HttpClient, Intercept, ProvideCredentials, RuntimeComponents, SharedHttpClient,
};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;

use crate::config::{Config, ExtraRoots, Preconnect};

/// Time allowed to open a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Time allowed for one attempt of a call, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Time allowed for a whole call, retries included. The SDK has no read
/// timeout of its own, so without this a silent peer would hold the request
/// until the Lambda timeout.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Attempts per call under the standard retry strategy (throttling included).
pub const MAX_ATTEMPTS: u32 = 3;
/// First retry back-off. The SDK's default (1 s) would spend half of
/// `OPERATION_TIMEOUT` on one wait; DynamoDB and SES answer in milliseconds.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// The roots of Amazon Trust Services, which sign the certificates of AWS
/// service endpoints: Amazon Root CA 1 to 4 and Starfield Services Root
/// Certificate Authority - G2, in PEM (with comment lines, which PEM allows).
pub const AMAZON_TRUST_SERVICES_PEM: &[u8] =
    include_bytes!("../../certs/amazon-trust-services.pem");

/// The root certificates the SDK's HTTP client trusts: always the Amazon
/// Trust Services roots built into the binary (enough for every AWS
/// endpoint, and nothing read from disk at start-up), and what the
/// configuration adds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustRoots {
    /// Also the system's store, for networks whose proxy re-signs TLS with
    /// a private root (`TLS_SYSTEM_ROOTS=true`). Every certificate file of
    /// the system is read at start-up.
    pub system: bool,
    /// Also these, checked at start-up (`TLS_EXTRA_ROOTS_FILE`).
    pub extra: Option<ExtraRoots>,
}

impl TrustRoots {
    /// The built-in Amazon roots only.
    pub fn amazon() -> Self {
        Self::default()
    }

    /// The roots `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        Self {
            system: config.tls_system_roots,
            extra: config.tls_extra_roots.clone(),
        }
    }

    /// The SDK's trust store for this choice.
    pub fn trust_store(&self) -> TrustStore {
        let store = TrustStore::empty()
            .with_native_roots(self.system)
            .with_pem_certificate(AMAZON_TRUST_SERVICES_PEM);
        match &self.extra {
            Some(extra) => store.with_pem_certificate(extra.pem()),
            None => store,
        }
    }
}

/// The SDK's own HTTP client (hyper and rustls on aws-lc, as the SDK's
/// default is), trusting `roots` instead of the platform store it would
/// otherwise load at start-up.
pub fn http_client(roots: &TrustRoots) -> SharedHttpClient {
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match TlsContext::builder()
        .with_trust_store(roots.trust_store())
        .build()
    {
        Ok(context) => builder.tls_context(context).build_https(),
        // Building a context only stores its parts (it cannot fail in the
        // SDK version in use); should it ever, the default context (the
        // system store) still verifies AWS, and the log says so.
        Err(err) => {
            tracing::warn!(%err, "custom TLS trust store not built: using the system store");
            builder.build_https()
        }
    }
}

/// The function's SDK configuration: roots as `config` asks
/// (`TLS_SYSTEM_ROOTS`, `TLS_EXTRA_ROOTS_FILE`), then [`warm_up`] when the
/// credentials are in the environment (as on Lambda). Elsewhere they may
/// come from a provider that calls the network, which start-up must not do.
/// Also returns the connections to open ahead of need (none without the
/// warm-up), already opened when `PRECONNECT=init`.
pub async fn function_sdk_config(config: &Config) -> (SdkConfig, EarlyConnections) {
    if let Some(extra) = &config.tls_extra_roots {
        tracing::info!(
            roots = extra.count(),
            "TLS_EXTRA_ROOTS_FILE: trusting these roots besides the built-in ones"
        );
    }
    let (sdk, credentials_from_environment) = load(&TrustRoots::from_config(config)).await;
    if !credentials_from_environment {
        if config.preconnect != Preconnect::Off {
            tracing::info!(
                "PRECONNECT opens nothing here: the credentials are not in the environment, so the warm-up that finds the endpoints did not run"
            );
        }
        return (sdk, EarlyConnections::default());
    }
    let (warmed, early) = warm_up(&sdk).await;
    if warmed < 2 {
        tracing::warn!(
            warmed,
            "the SDK warm-up stopped early: the first request does that work"
        );
    }
    let early = match config.preconnect {
        Preconnect::Off => EarlyConnections::default(),
        Preconnect::FirstRequest => early,
        Preconnect::Init => {
            // Round 1's two connections too: nothing is left to open.
            let all = early.with_dynamodb(3);
            let opened = all.open_within(CONNECT_TIMEOUT).await;
            if opened < all.len() {
                tracing::warn!(
                    opened,
                    wanted = all.len(),
                    "PRECONNECT=init: not every connection opened; requests open the rest"
                );
            }
            EarlyConnections::default()
        }
    };
    (sdk, early)
}

/// The SDK configuration with the Amazon Trust Services roots only, for the
/// tools and tests that build their own clients (no warm-up).
pub async fn sdk_config() -> SdkConfig {
    load(&TrustRoots::amazon()).await.0
}

/// Loads region and credentials the standard way (environment, profile, …),
/// with this function's HTTP client, timeouts and retries, and says whether
/// the credentials came from the environment. Makes no network call when the
/// region is in the environment (Lambda sets `AWS_REGION`); without one,
/// aws-config asks the instance metadata service. Credentials found in the
/// environment (where Lambda puts them) are taken once, here, instead of
/// through the whole default chain; one identity cache serves every client
/// built from the result.
async fn load(roots: &TrustRoots) -> (SdkConfig, bool) {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client(roots))
        .identity_cache(IdentityCache::lazy().build())
        .timeout_config(timeouts())
        .retry_config(retry_config());
    let from_environment = EnvironmentVariableCredentialsProvider::new()
        .provide_credentials()
        .await;
    match from_environment {
        Ok(credentials) => (loader.credentials_provider(credentials).load().await, true),
        Err(_) => (loader.load().await, false),
    }
}

/// Does now the one-time work that the first request of each client would
/// otherwise do: resolving credentials into the shared identity cache,
/// resolving the endpoint, signing, and building the HTTP connector with
/// its TLS configuration. Each service gets one request that is stopped
/// just before it would be sent, so nothing goes on the network as long as
/// the credentials provider itself needs none. Returns how many of the two
/// requests got that far (2 unless something failed before sending, which
/// the first real request would then meet again), and what they learnt:
/// each service's endpoint and connector, for [`EarlyConnections`].
pub async fn warm_up(sdk: &SdkConfig) -> (usize, EarlyConnections) {
    let (dynamodb_stop, ses_stop) = (StopBeforeSending::default(), StopBeforeSending::default());
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let _stopped = dynamodb
        .get_item()
        .table_name("warm-up")
        .key(
            "warm-up",
            aws_sdk_dynamodb::types::AttributeValue::S("warm-up".into()),
        )
        .customize()
        .interceptor(dynamodb_stop.clone())
        .send()
        .await;
    let ses = aws_sdk_sesv2::Client::new(sdk);
    let _stopped = ses
        .send_email()
        .from_email_address("warm-up@example.com")
        .customize()
        .interceptor(ses_stop.clone())
        .send()
        .await;
    let early = EarlyConnections {
        dynamodb: dynamodb_stop.target(),
        ses: ses_stop.target(),
        ..EarlyConnections::default()
    };
    let warmed = usize::from(early.dynamodb.is_some()) + usize::from(early.ses.is_some());
    (warmed, early)
}

/// Ends a warm-up request just before it would be sent, after building the
/// HTTP connector the request would have used (connectors are cached per
/// timeout settings in the shared HTTP client, so that connector and its
/// pool of connections are the ones later requests use), and keeps it with
/// the endpoint's origin.
#[derive(Debug, Clone, Default)]
struct StopBeforeSending {
    seen: Arc<Mutex<Option<Target>>>,
}

impl StopBeforeSending {
    /// What the stopped request would have used, if it got that far.
    fn target(&self) -> Option<Target> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Intercept for StopBeforeSending {
    fn name(&self) -> &'static str {
        "StopBeforeSending"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(client), Some(timeouts)) = (
            runtime_components.http_client(),
            cfg.load::<TimeoutConfig>(),
        ) {
            // The same settings the orchestrator builds for a request.
            let mut settings = HttpConnectorSettings::builder();
            settings.set_connect_timeout(timeouts.connect_timeout());
            settings.set_read_timeout(timeouts.read_timeout());
            let connector = client.http_connector(&settings.build(), runtime_components);
            // Scheme, host and port only: the pool keys connections by them,
            // and a path or user info of a custom endpoint has no place here.
            let origin = url::Url::parse(context.request().uri())
                .ok()
                .map(|url| url.origin())
                .filter(url::Origin::is_tuple);
            if let Some(origin) = origin {
                *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Target {
                    origin: format!("{}/", origin.ascii_serialization()),
                    connector,
                });
            }
        }
        Err("warm-up request stopped before sending".into())
    }
}

/// Connections a process opens before a call needs them (`PRECONNECT`):
/// each one is an unsigned `HEAD /` to the service's endpoint through the
/// connector the SDK's clients use, so the connection it leaves (after its
/// TCP and TLS handshakes) waits in their pool for the next call. The
/// answer itself (whatever its status) is not read; the request carries no
/// credentials and does nothing.
#[derive(Debug, Clone)]
pub struct EarlyConnections {
    dynamodb: Option<Target>,
    ses: Option<Target>,
    /// DynamoDB connections to open: 1 beside round 1 (which opens two).
    dynamodb_count: usize,
    started: Arc<AtomicBool>,
}

impl Default for EarlyConnections {
    fn default() -> Self {
        Self {
            dynamodb: None,
            ses: None,
            dynamodb_count: 1,
            started: Arc::default(),
        }
    }
}

/// One service's endpoint origin and the connector its calls use.
#[derive(Debug, Clone)]
struct Target {
    origin: String,
    connector: SharedHttpConnector,
}

impl EarlyConnections {
    /// The same, with `count` connections to DynamoDB.
    pub fn with_dynamodb(mut self, count: usize) -> Self {
        self.dynamodb_count = count;
        self
    }

    /// Each target with the number of connections to open to it.
    fn targets(&self) -> impl Iterator<Item = (&Target, usize)> {
        let dynamodb = self.dynamodb.iter().map(|t| (t, self.dynamodb_count));
        dynamodb.chain(self.ses.iter().map(|t| (t, 1)))
    }

    /// How many connections [`Self::open_within`] would open.
    pub fn len(&self) -> usize {
        self.targets().map(|(_, count)| count).sum()
    }

    /// True when there is nothing to open (no warm-up, or `PRECONNECT=off`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens every connection at once and waits for at most `limit`;
    /// returns how many were answered in time.
    pub async fn open_within(&self, limit: Duration) -> usize {
        let mut opening = tokio::task::JoinSet::new();
        for (target, count) in self.targets() {
            for _ in 0..count {
                let (origin, connector) = (target.origin.clone(), target.connector.clone());
                opening.spawn(async move {
                    let mut request = HttpRequest::new(SdkBody::empty());
                    request.set_method("HEAD").ok()?;
                    request.set_uri(origin.as_str()).ok()?;
                    // The connector has a connect timeout but no read
                    // timeout: a server that never answers must not keep
                    // this task (and its socket) forever.
                    tokio::time::timeout(OPERATION_TIMEOUT, connector.call(request))
                        .await
                        .ok()?
                        .ok()
                });
            }
        }
        let answered = tokio::time::timeout(limit, async {
            let mut answered = 0;
            while let Some(done) = opening.join_next().await {
                answered += usize::from(matches!(done, Ok(Some(_))));
            }
            answered
        })
        .await;
        // Past the limit, the ones still opening go on in the background
        // (for at most OPERATION_TIMEOUT each).
        opening.detach_all();
        answered.unwrap_or(0)
    }

    /// The first time only, starts opening them in the background (a
    /// request calls this beside its first round, and does not wait).
    pub fn open_once_in_background(&self) {
        if self.is_empty() || self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let early = self.clone();
        tokio::spawn(async move { early.open_within(OPERATION_TIMEOUT).await });
    }
}

/// The retry configuration every client uses.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
}

/// The timeout configuration every client uses.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::TcpListener;

    use aws_sdk_dynamodb::config::{Credentials, Region};
    use base64::Engine;
    use sha2::{Digest, Sha256};

    use super::*;

    /// Each root's name and the SHA-256 of its DER encoding.
    const AMAZON_ROOTS: [(&str, &str); 5] = [
        (
            "Amazon Root CA 1",
            "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E",
        ),
        (
            "Amazon Root CA 2",
            "1BA5B2AA8C65401A82960118F80BEC4F62304D83CEC4713A19C39C011EA46DB4",
        ),
        (
            "Amazon Root CA 3",
            "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4",
        ),
        (
            "Amazon Root CA 4",
            "E35D28419ED02025CFA69038CD623962458DA5C695FBDEA3C22B0BFB25897092",
        ),
        (
            "Starfield Services Root Certificate Authority - G2",
            "568D6905A2C88708A4B3025190EDCFEDB1974A606A13C6E5290FCB2AE63EDAB5",
        ),
    ];

    /// The DER of each certificate in the built-in PEM, in order.
    fn built_in_roots() -> Vec<Vec<u8>> {
        let text = std::str::from_utf8(AMAZON_TRUST_SERVICES_PEM).expect("PEM is text");
        text.split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let (body, _) = block
                    .split_once("-----END CERTIFICATE-----")
                    .expect("each certificate ends");
                let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("the body is base64")
            })
            .collect()
    }

    #[test]
    fn built_in_roots_are_exactly_the_five_amazon_trust_services_roots() {
        let fingerprints: Vec<String> = built_in_roots()
            .iter()
            .map(|der| hex::encode_upper(Sha256::digest(der)))
            .collect();
        let expected: Vec<&str> = AMAZON_ROOTS.iter().map(|(_, sha)| *sha).collect();
        assert_eq!(fingerprints, expected);
    }

    #[test]
    fn each_built_in_root_names_itself() {
        for (der, (name, _)) in built_in_roots().iter().zip(AMAZON_ROOTS) {
            assert!(
                der.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name} is not the subject of its certificate"
            );
        }
    }

    #[test]
    fn the_system_store_is_added_only_when_asked() {
        // The SDK's trust store shows its settings only through Debug.
        let reads_system = |roots: TrustRoots| {
            let shown = format!("{:?}", roots.trust_store());
            assert!(shown.contains("enable_native_roots"), "{shown}");
            shown.contains("enable_native_roots: true")
        };
        assert!(!reads_system(TrustRoots::default()));
        assert!(!reads_system(TrustRoots::amazon()));
        assert!(reads_system(TrustRoots {
            system: true,
            extra: None
        }));
    }

    /// The function's SDK set-up (client, trust store, timeouts) with test
    /// credentials, pointed at `endpoint`.
    async fn sdk_at(endpoint: String) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client(&TrustRoots::amazon()))
            .timeout_config(timeouts())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    #[tokio::test]
    async fn warm_up_builds_both_clients_and_sends_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("its address");
        // Building a client parses the trust store (the SDK panics on a
        // root it cannot use), and the warm-up request would connect here.
        let sdk = sdk_at(format!("http://{address}/prefix")).await;
        let (warmed, early) = warm_up(&sdk).await;
        assert_eq!(warmed, 2, "both requests got as far as sending");
        assert_eq!(early.len(), 2, "one early connection to each service");
        for target in [&early.dynamodb, &early.ses] {
            let origin = target.as_ref().map(|t| t.origin.as_str());
            assert_eq!(origin, Some(format!("http://{address}/").as_str()));
        }
        match listener.accept() {
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            other => panic!("the warm-up opened a connection: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_early_connection_nobody_answers_is_closed_after_the_operation_timeout() {
        use tokio::io::AsyncReadExt;
        // A server that accepts and reads, and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("its address");
        let (_, early) = warm_up(&sdk_at(format!("http://{address}")).await).await;
        let started = std::time::Instant::now();
        assert_eq!(
            early.open_within(Duration::from_millis(100)).await,
            0,
            "nothing answered within the limit"
        );
        for _ in 0..early.len() {
            let (mut socket, _) = listener.accept().await.expect("a connection");
            let mut buf = [0u8; 4096];
            // Read the HEAD, then wait for the client to give up.
            let closed = tokio::time::timeout(OPERATION_TIMEOUT * 2, async {
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "the unanswered connection stayed open");
        }
        let waited = started.elapsed();
        assert!(
            waited >= OPERATION_TIMEOUT && waited < OPERATION_TIMEOUT * 2,
            "closed after {waited:?}"
        );
    }
}
