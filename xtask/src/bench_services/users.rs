//! The benchmark's users: registered and logged in through the edge before anything is
//! measured, so that the measured windows hold only the calls under test.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;

/// Long enough for the identity service's policy (12 characters at least).
const PASSWORD: &str = "bench-password-correct-horse";

/// One registered user with the bodies and headers the load needs, built once.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// `{"email": ..., "password": ...}` for `POST /v1/auth/login`.
    pub login_body: Vec<u8>,
    /// `Bearer <access token>` for the bearer routes.
    pub authorization: HeaderValue,
}

/// Registers `count` users (`POST /v1/users`), logs each in once
/// (`POST /v1/auth/login`) and checks that `GET /v1/users/me` names the right user.
/// Also returns how long each of those logins took, one at a time on a quiet mesh: the
/// inherent cost of a login, without queueing.
pub async fn register(
    http: &reqwest::Client,
    edge: &dyn Fn(&str) -> String,
    count: usize,
) -> anyhow::Result<(Vec<BenchUser>, Vec<Duration>)> {
    let mut users = Vec::with_capacity(count);
    let mut solo_logins = Vec::with_capacity(count);
    for n in 1..=count {
        let email = format!("bench-user-{n:02}@bench.example");
        let registration = json!({
            "email": email,
            "password": PASSWORD,
            "display_name": format!("Bench user {n}"),
        });
        post_json(http, &edge("/v1/users"), &registration)
            .await
            .with_context(|| format!("registering {email}"))?;

        let login_body = serde_json::to_vec(&json!({ "email": email, "password": PASSWORD }))?;
        let started = Instant::now();
        let tokens = post_raw(http, &edge("/v1/auth/login"), login_body.clone())
            .await
            .with_context(|| format!("logging in {email}"))?;
        solo_logins.push(started.elapsed());
        let access = tokens
            .get("access_token")
            .and_then(|t| t.as_str())
            .with_context(|| format!("login of {email} answered without an access_token"))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {access}"))
            .context("the access token is not a valid header value")?;
        authorization.set_sensitive(true);

        let me = http
            .get(edge("/v1/users/me"))
            .header(AUTHORIZATION, authorization.clone())
            .send()
            .await
            .context("GET /v1/users/me")?;
        let me = json_answer(me)
            .await
            .with_context(|| format!("GET /v1/users/me as {email}"))?;
        if me.get("email").and_then(|e| e.as_str()) != Some(email.as_str()) {
            bail!("GET /v1/users/me with {email}'s token answered another user: {me}");
        }
        users.push(BenchUser {
            login_body,
            authorization,
        });
    }
    solo_logins.sort_unstable();
    Ok((users, solo_logins))
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    post_raw(http, url, serde_json::to_vec(body)?).await
}

async fn post_raw(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> anyhow::Result<serde_json::Value> {
    let response = http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    json_answer(response).await
}

/// The JSON body of a 200; any other status is an error quoting the body.
async fn json_answer(response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = response.status();
    let text = response.text().await.context("reading the response body")?;
    if status != reqwest::StatusCode::OK {
        bail!("answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("the answer is not JSON: {text}"))
}
