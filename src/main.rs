//! The Lambda entry point: configuration and clients once, then the event loop.

use std::convert::Infallible;

use lambda_http::{run, service_fn, Error, Request};
use send_email_code::{aws, handle, App, Config, Timestamp};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();

    let app = match Config::from_env() {
        Ok(config) => {
            let sdk = aws::function_sdk_config(&config).await;
            App::new(config, &sdk)
        }
        Err(err) => {
            tracing::error!(variable = err.variable, "{err}");
            std::process::exit(1);
        }
    };
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("{err}");
            std::process::exit(1);
        }
    };
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(handle(app, req, Timestamp::now()).await)
    }))
    .await
}
