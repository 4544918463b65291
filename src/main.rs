//! The Lambda entry point: everything else is in the library.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    send_email_code::handler::run().await
}
