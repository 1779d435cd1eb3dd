//! Credentials: where a request's `Authorization` header comes from. A static token is one source; a token that
//! expires and is renewed (an identity provider's OAuth client-credentials grant) is another, and fits the same
//! seam without touching the rest of `http`.

use super::error::ApiError;
use crate::redact::{remember, ExposeSecret, SecretString};
use async_trait::async_trait;

#[async_trait]
pub trait Credentials: Send + Sync {
    /// The `Authorization` header value to send now (scheme included). A value fetched at run time must be
    /// remembered for redaction (`redact::loaded`), as every secret steward reads is.
    async fn header(&self) -> Result<SecretString, ApiError>;

    /// The service answered 401 to `sent`. `true` when a fresh value can now be had (an expired token was
    /// renewed), so the request is worth one more try; a token that never changes says `false`.
    async fn rejected(&self, _sent: &SecretString) -> bool {
        false
    }
}

/// A token that never changes, behind the service's scheme word (`Bearer `, `org.token `, or none).
pub struct StaticToken(SecretString);

impl StaticToken {
    pub fn new(prefix: &str, token: &SecretString) -> Self {
        remember(token.expose_secret());
        StaticToken(SecretString::from(format!("{prefix}{}", token.expose_secret())))
    }
}

#[async_trait]
impl Credentials for StaticToken {
    async fn header(&self) -> Result<SecretString, ApiError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ClientSettings, HttpClient, Limits, Request};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A token that expires: "old" until the service refuses it, "new" after.
    struct Renewing(Mutex<&'static str>);

    #[async_trait]
    impl Credentials for Renewing {
        async fn header(&self) -> Result<SecretString, ApiError> {
            Ok(SecretString::from(format!("Bearer {}", self.0.lock().unwrap())))
        }

        async fn rejected(&self, _sent: &SecretString) -> bool {
            *self.0.lock().unwrap() = "new";
            true
        }
    }

    /// A server taking only `Bearer new`; counts the requests it answers.
    async fn server(seen: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                seen.fetch_add(1, Ordering::SeqCst);
                let answer = match text.contains("authorization: bearer new") {
                    true => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    false => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    fn client(url: &str, auth: Arc<dyn Credentials>) -> HttpClient {
        let settings = ClientSettings {
            base_url: url::Url::parse(url).unwrap(),
            auth: Some(auth),
            timeout: std::time::Duration::from_secs(5),
            ca_file: None,
            insecure: false,
            rate_limit: None,
            concurrency: 1,
            retry: crate::http::retry::RetryPolicy::default(),
            default_headers: Vec::new(),
            content_type: "application/json",
            on_pause: None,
            limits: Limits::default(),
            rate_limit_refusal: |_, _| false,
            shared_turns: None,
            link_origin: None,
        };
        HttpClient::new(settings, |_| None).unwrap()
    }

    #[tokio::test]
    async fn an_expired_token_is_renewed_once_and_the_request_sent_again() {
        let seen = Arc::new(AtomicUsize::new(0));
        let url = server(seen.clone()).await;
        let http = client(&url, Arc::new(Renewing(Mutex::new("old"))));
        let answer = http.send(&Request::new(reqwest::Method::POST, "things")).await.expect("renewed");
        assert_eq!((answer.status, seen.load(Ordering::SeqCst)), (200, 2));
    }

    #[tokio::test]
    async fn a_static_token_refused_is_an_error_at_once() {
        let seen = Arc::new(AtomicUsize::new(0));
        let url = server(seen.clone()).await;
        let http = client(&url, Arc::new(StaticToken::new("Bearer ", &SecretString::from("old-token".to_string()))));
        let e = http.send(&Request::new(reqwest::Method::GET, "things")).await.unwrap_err();
        assert_eq!((e.status, seen.load(Ordering::SeqCst)), (Some(401), 1));
    }
}
