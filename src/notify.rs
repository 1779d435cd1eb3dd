//! Telling people: a webhook (the JSON Slack, Mattermost and Matrix bridges take: `{"text": …}`) and e-mail over
//! SMTP. Each delivery is tried a few times and its outcome returned, never thrown past the run: a notification
//! that cannot be delivered is reported and recorded, and the work it tells about still happens. (A Matrix room
//! message goes through a Synapse profile's own connection, in `cmd::policy`.)

use crate::redact::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::time::Duration;

/// What to say: a subject line (e-mail), the text, and the details as JSON (webhooks).
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: String,
    pub text: String,
    pub details: Value,
}

/// An SMTP server to send through: `smtp://host:port` (STARTTLS when the server offers it), `smtps://host:port`
/// (TLS from the start), or `smtp+plain://host:port` (no TLS: a relay on the same machine).
#[derive(Debug, Clone)]
pub struct Smtp {
    pub url: url::Url,
    pub from: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

/// Why a notification was not delivered (the service's words redacted: a webhook's URL is a secret).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyError {
    /// The notification as configured cannot be sent: an address, the SMTP URL, the HTTP client.
    #[error("{0}")]
    Setup(String),
    #[error("the webhook did not answer: {0}")]
    NoAnswer(String),
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    #[error("the SMTP server refused it: {0}")]
    Refused(String),
    /// A Matrix room message, sent through a Synapse profile's connection (its error as that path says it).
    #[error("{0}")]
    Room(String),
    #[error("{last} (tried {tries} times)")]
    GaveUp { last: Box<NotifyError>, tries: u32 },
}

/// How many times a delivery is tried, and the first wait between tries (doubled each time).
const TRIES: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_secs(2);

/// Tries `send` up to `TRIES` times; the last error, said plainly, if every try failed.
async fn with_retries<F, Fut>(scale: f64, mut send: F) -> Result<u32, NotifyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), NotifyError>>,
{
    let mut wait = FIRST_WAIT;
    let mut last = NotifyError::Setup("never tried".into());
    for attempt in 1..=TRIES {
        match send().await {
            Ok(()) => return Ok(attempt),
            Err(e) => last = e,
        }
        if attempt < TRIES {
            tokio::time::sleep(wait.mul_f64(scale)).await;
            wait *= 2;
        }
    }
    Err(NotifyError::GaveUp { last: Box::new(last), tries: TRIES })
}

/// POSTs `message` to the webhook `url` (`{"text": …, …details}`); how many tries it took.
pub async fn webhook(url: &SecretString, message: &Message, scale: f64) -> Result<u32, NotifyError> {
    crate::redact::remember(url.expose_secret());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| NotifyError::Setup(e.to_string()))?;
    let mut body = json!({"text": message.text});
    if let (Some(b), Some(d)) = (body.as_object_mut(), message.details.as_object()) {
        b.extend(d.clone());
    }
    with_retries(scale, || {
        let req = client.post(url.expose_secret()).json(&body);
        async move {
            let resp = req.send().await.map_err(|e| NotifyError::NoAnswer(crate::redact::redact(&e.to_string())))?;
            match resp.status().is_success() {
                true => Ok(()),
                false => Err(NotifyError::Status(resp.status().as_u16())),
            }
        }
    })
    .await
}

/// Sends `message` by e-mail to `to` through `smtp`; how many tries it took.
pub async fn email(smtp: &Smtp, to: &[String], message: &Message, scale: f64) -> Result<u32, NotifyError> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let setup = |why: String| NotifyError::Setup(why);
    let mut builder = lettre::Message::builder()
        .from(smtp.from.parse().map_err(|e| setup(format!("from {:?}: {e}", smtp.from)))?)
        .subject(message.subject.clone());
    for addr in to {
        builder = builder.to(addr.parse().map_err(|e| setup(format!("to {addr:?}: {e}")))?);
    }
    let mail = builder.body(message.text.clone()).map_err(|e| setup(e.to_string()))?;
    let host = smtp.url.host_str().ok_or_else(|| setup(format!("{} names no host", smtp.url)))?.to_string();
    let transport = match smtp.url.scheme() {
        "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host).map_err(|e| setup(e.to_string()))?,
        "smtp" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host).map_err(|e| setup(e.to_string()))?,
        "smtp+plain" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        other => return Err(setup(format!("{other}: use smtp://, smtps:// or smtp+plain://"))),
    };
    let mut transport = transport.timeout(Some(Duration::from_secs(15)));
    if let Some(port) = smtp.url.port() {
        transport = transport.port(port);
    }
    if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
        crate::redact::remember(password.expose_secret());
        transport = transport.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            password.expose_secret().to_string(),
        ));
    }
    let transport = transport.build();
    with_retries(scale, || {
        let (transport, mail) = (transport.clone(), mail.clone());
        async move {
            transport
                .send(mail)
                .await
                .map(|_| ())
                .map_err(|e| NotifyError::Refused(crate::redact::redact(&e.to_string())))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_failed_delivery_is_tried_again_and_then_reported() {
        let tries = AtomicU32::new(0);
        let flaky = with_retries(0.0, || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 1 {
                    Err(NotifyError::NoAnswer("down".into()))
                } else {
                    Ok(())
                }
            }
        });
        assert_eq!(flaky.await, Ok(2));
        let down = with_retries(0.0, || async { Err::<(), _>(NotifyError::Status(502)) }).await;
        assert_eq!(down.map_err(|e| e.to_string()), Err("the webhook answered HTTP 502 (tried 3 times)".to_string()));
    }
}
