//! The Lambda entry point: everything else is in the library.

// `.cargo/config.toml` sets AWS_LC_SYS_NO_JITTER_ENTROPY for every build
// (README, "Performance over TLS"). The variable reaches this crate's
// compilation exactly when it reaches aws-lc-sys's build script (both run
// under the same cargo invocation), so a build path that loses it (another
// working directory, a wrapper that clears the environment) stops here
// instead of shipping a binary whose first TLS handshake is ~50 ms slower.
const _: () = assert!(
    send_email_code::build_info::JITTER_ENTROPY_SETTING.is_some(),
    "AWS_LC_SYS_NO_JITTER_ENTROPY is not set: build from the crate's folder so cargo reads .cargo/config.toml, or set it yourself"
);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    send_email_code::handler::run().await
}
