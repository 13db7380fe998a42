//! The local AWS: moto's server with the project's extension (tests/emulator), its control API, and SDK
//! configurations for the accounts that use it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

pub const REGION: &str = "us-east-1";
pub const PROVIDER: &str = "111111111111";

/// The workspace root (where `.venv`, `infra` and `tests/emulator` live).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The Python of the emulator's venv (`GATEKEEPER_PYTHON` overrides it).
pub fn python() -> PathBuf {
    std::env::var("GATEKEEPER_PYTHON").map(PathBuf::from).unwrap_or_else(|_| root().join(".venv/bin/python"))
}

/// moto's server with the extension, as a child process on 127.0.0.1.
pub struct Emulator {
    pub url: String,
    child: Option<Child>,
}

impl Emulator {
    /// Uses `GATEKEEPER_ENDPOINT` when set (an emulator started by `make`), else starts one.
    pub async fn start_or_reuse() -> Result<Self> {
        if let Ok(url) = std::env::var("GATEKEEPER_ENDPOINT") {
            return Ok(Self { url, child: None });
        }
        Self::start(free_port()?).await
    }

    pub async fn start(port: u16) -> Result<Self> {
        let python = python();
        let script = root().join("tests/emulator/gatekeeper_moto.py");
        let child = Command::new(&python)
            .arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (run `make setup` first)", python.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self { url, child: Some(child) });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the local AWS did not start on port {port} within 20 s")
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One HTTP/1.1 request over loopback: (status, body). The one client the local AWS's setup and
/// control calls use.
pub async fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await.with_context(|| format!("connecting to {host}"))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    let status = out.split(' ').nth(1).and_then(|s| s.parse().ok()).context("malformed HTTP answer")?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// A call to the extension's control API (`/_gatekeeper/...`): GET without a body, POST with one.
pub async fn control(endpoint: &str, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
    let (method, text) = match &body {
        Some(b) => ("POST", b.to_string()),
        None => ("GET", String::new()),
    };
    let (status, answer) = http(endpoint, method, path, &[("Content-Type", "application/json")], &text).await?;
    anyhow::ensure!(status == 200, "{path}: HTTP {status}: {answer}");
    serde_json::from_str(&answer).with_context(|| format!("{path}: not JSON: {answer}"))
}

fn base(endpoint: &str, creds: Credentials) -> aws_config::ConfigLoader {
    // Local calls take milliseconds: retry throttling after milliseconds too (AWS's default waits ~1 s).
    let retry = aws_config::retry::RetryConfig::standard()
        .with_initial_backoff(Duration::from_millis(20))
        .with_max_backoff(Duration::from_millis(500));
    shared::adapters::sdk_defaults()
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .retry_config(retry)
        .credentials_provider(creds)
}

/// SDK configuration for one account of the local AWS, obtained the way a real cross-account caller
/// does: STS AssumeRole into a role of that account. IAM is not enforced for these credentials.
pub async fn account_config(endpoint: &str, account: &str) -> Result<SdkConfig> {
    let bootstrap = base(endpoint, Credentials::new("bootstrap", "bootstrap", None, None, "local")).load().await;
    let out = aws_sdk_sts::Client::new(&bootstrap)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/gatekeeper-local"))
        .role_session_name("gatekeeper-local")
        .send()
        .await
        .context("STS AssumeRole on the local AWS")?;
    let c = out.credentials().context("AssumeRole returned no credentials")?;
    let creds =
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_owned()), None, "assumed");
    Ok(bootstrap.into_builder().credentials_provider(SharedCredentialsProvider::new(creds)).build())
}

/// SDK configuration for a function: its execution role's credentials, issued as Lambda issues them
/// (the extension's `/_gatekeeper/role-credentials`). IAM is enforced for these, from the role's
/// policies as the stack deployed them.
pub async fn role_config(endpoint: &str, role_arn: &str, session: &str) -> Result<(SdkConfig, String)> {
    let c = control(
        endpoint,
        "/_gatekeeper/role-credentials",
        Some(serde_json::json!({"role_arn": role_arn, "session_name": session})),
    )
    .await
    .with_context(|| format!("credentials for {role_arn}"))?;
    let field = |k: &str| c[k].as_str().map(str::to_owned).with_context(|| format!("role credentials without {k}"));
    let key = field("AccessKeyId")?;
    let creds = Credentials::new(&key, field("SecretAccessKey")?, Some(field("SessionToken")?), None, "lambda-role");
    Ok((base(endpoint, creds).load().await, key))
}
