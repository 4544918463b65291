//! The floor for the cold-start figures: a bare `lambda_http` function that
//! answers every request with `hello`, started the way the function starts
//! (current-thread runtime, the runtime's default log subscriber), with no
//! configuration, no AWS SDK and no templates. `scripts/bench.sh` builds it
//! with the release profile and measures it beside `bootstrap`, so the
//! difference between the two is what this project adds to a cold start.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    run(service_fn(|_req: Request| async {
        Ok::<_, Error>("hello")
    }))
    .await
}
