//! The reservation's bookkeeping (steps 7 and 8, and the give-back): what
//! the reservation round took, and the one place that returns it.

use super::trace::{ReservationFate, Trace};
use super::App;
use crate::aws::store::{Attempted, Count, Reservation, Reserved};
use crate::domain::challenge::{Challenge, SendRules};
use crate::domain::rate_window::RateWindow;
use crate::domain::time::Timestamp;

/// The outcome of the reservation round.
#[derive(Debug, Default)]
pub struct Held {
    /// The challenge's reservation, when one was attempted.
    pub send: Option<Attempted<Reserved>>,
    /// The per-user counter (key, result, window), when the budget is on.
    pub user: Option<(String, Attempted<Count>, RateWindow)>,
}

impl Held {
    /// A send was certainly taken from the challenge.
    pub fn took_send(&self) -> bool {
        self.send
            .as_ref()
            .is_some_and(|s| matches!(s.result, Ok(Reserved::Taken)))
    }

    /// The user counter key, when one was certainly taken from it.
    pub fn took_user_count(&self) -> Option<&str> {
        match &self.user {
            Some((key, counted, _)) if matches!(counted.result, Ok(Count::Counted(_))) => Some(key),
            _ => None,
        }
    }

    /// A write whose effect is not fully known: it failed after an attempt
    /// that may have been applied, or it succeeded after one. A counter
    /// may then stand one above what was given back.
    pub fn unknown(&self) -> bool {
        fn doubtful<T>(write: &Attempted<T>) -> bool {
            write.may_count_twice || write.result.as_ref().is_err_and(|e| e.may_have_applied)
        }
        self.send.as_ref().is_some_and(doubtful)
            || self.user.as_ref().is_some_and(|u| doubtful(&u.1))
    }
}

/// Steps 8 and 7's counter: one conditional write on the challenge and one
/// on the user's counter, in the same round.
pub async fn reserve(app: &App, challenge: &Challenge, rules: SendRules, now: Timestamp) -> Held {
    let send = app.store.reserve_send(Reservation {
        challenge,
        now,
        rules,
    });
    let max_per_user = app.config.max_codes_per_user;
    if max_per_user == 0 {
        return Held {
            send: Some(send.await),
            user: None,
        };
    }
    let window = RateWindow::containing(now, app.config.user_window_seconds);
    let key = window.user_counter_key(&challenge.user_id);
    let (send, user) = tokio::join!(
        send,
        app.store
            .count(&key, window.counter_expire_at(), max_per_user)
    );
    Held {
        send: Some(send),
        user: Some((key, user, window)),
    }
}

/// The one place a reservation goes back: the challenge's send and the
/// user's count, whichever this request certainly took. A give-back is
/// retried only while its attempts certainly did not apply; a failure is
/// logged and leaves the counter one high.
pub async fn give_back(app: &App, challenge: &Challenge, held: &Held, trace: &mut Trace) {
    let send = async {
        if held.took_send() {
            app.store.give_back_send(challenge).await.map(|()| true)
        } else {
            Ok(false)
        }
    };
    let user = async {
        match held.took_user_count() {
            Some(key) => app.store.give_back_count(key).await.map(|()| true),
            None => Ok(false),
        }
    };
    let (send, user) = tokio::join!(send, user);
    let mut failed = held.unknown();
    for result in [&send, &user] {
        if let Err(err) = result {
            failed = true;
            tracing::error!(
                service = err.service,
                operation = err.operation,
                detail = %err.detail,
                "could not give a reservation back; its counter stays one high"
            );
        }
    }
    let gave = matches!(send, Ok(true)) || matches!(user, Ok(true));
    trace.reservation = if failed {
        ReservationFate::KeptUnsent
    } else if gave {
        ReservationFate::GivenBack
    } else {
        ReservationFate::None
    };
}
