//! A stand-in for Lambda's Runtime API, for the functions' binary tests (`functions/*/tests/binary.rs`
//! include this file with `#[path]`): it runs a function's own binary as Lambda runs it, hands it one
//! invocation and reports what the binary said. The handlers' tests call the handlers directly; these are
//! the tests that run what the template deploys (its `main`: telemetry, configuration, the SDK, the runtime
//! loop on one tokio thread).
//!
//! Runtime API (AWS Lambda Developer Guide, "Using the Lambda runtime API for custom runtimes"):
//! `GET /2018-06-01/runtime/invocation/next` answers the event with `Lambda-Runtime-Aws-Request-Id`,
//! `Lambda-Runtime-Deadline-Ms` and `Lambda-Runtime-Invoked-Function-Arn`; the runtime answers with
//! `POST /2018-06-01/runtime/invocation/<id>/response`, or `/error`, or `/runtime/init/error` when its init
//! fails. A runtime that exits instead is reported by Lambda as `Runtime.ExitError`, with what it wrote to
//! its log ("Lambda runtime environment", "Runtime.ExitError").

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const REQUEST_ID: &str = "0b4c7d02-5c36-4a4e-9d3b-6f1f3c0a9e11";

/// How long a binary may take to answer one invocation and ask for the next (the tests fail loudly past it).
const PATIENCE: Duration = Duration::from_secs(60);

/// The endpoint every AWS call of the binary goes to: nothing listens on the discard port, so a call fails
/// at once (connection refused) instead of reaching anything.
pub const NO_AWS: &str = "http://127.0.0.1:9";

/// What the binary said to the Runtime API about its invocation.
#[derive(Debug)]
pub enum Said {
    /// `/invocation/<id>/response`: the handler's answer.
    Response(serde_json::Value),
    /// `/invocation/<id>/error` or `/init/error`: the path and the error document.
    Error(String, serde_json::Value),
    /// It asked for the next invocation (after answering this one): the runtime loop goes on.
    Next,
}

/// Reads one HTTP/1.1 request (headers, then a body of its Content-Length); `None` when the connection ends.
async fn request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, String)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = req.parse(buf).unwrap() {
            let length = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| std::str::from_utf8(h.value).unwrap().trim().parse::<usize>().unwrap());
            let (method, path) = (req.method.unwrap().to_owned(), req.path.unwrap().to_owned());
            while buf.len() < head + length {
                read_more(conn, buf).await?;
            }
            let body = String::from_utf8_lossy(&buf[head..head + length]).into_owned();
            buf.drain(..head + length);
            return Some((method, path, body));
        }
        read_more(conn, buf).await?;
    }
}

/// Appends what the connection sends next to `buf`; `None` once it has ended.
async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let n = conn.read_buf(buf).await.ok()?;
    (n > 0).then_some(())
}

/// Serves one connection: the first `next` gets `event`, a later one is never answered (Lambda freezes the
/// environment then); what the binary posts goes to `said`.
async fn serve(
    mut conn: TcpStream,
    function: String,
    event: String,
    handed: Arc<AtomicBool>,
    said: mpsc::Sender<Said>,
) {
    let mut buf = Vec::new();
    while let Some((method, path, body)) = request(&mut conn, &mut buf).await {
        let answer = if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            if handed.swap(true, Ordering::SeqCst) {
                said.send(Said::Next).await.unwrap();
                std::future::pending::<()>().await;
            }
            let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + PATIENCE;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
                 Lambda-Runtime-Deadline-Ms: {}\r\nLambda-Runtime-Invoked-Function-Arn: \
                 arn:aws:lambda:us-east-1:111111111111:function:{function}\r\nContent-Length: {}\r\n\r\n{event}",
                deadline.as_millis(),
                event.len()
            )
        } else {
            let document = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
            let report = if path == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response") {
                Said::Response(document)
            } else {
                Said::Error(path, document)
            };
            said.send(report).await.unwrap();
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_owned()
        };
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The binary at `exe`, started as Lambda starts a function named `function` (only Lambda's variables, the
/// credentials, AWS calls to [`NO_AWS`], and `env`); its log (stderr) goes to `log`.
fn start(
    exe: &str,
    function: &str,
    api: &str,
    env: &[(&str, &str)],
    log: std::process::Stdio,
) -> tokio::process::Child {
    tokio::process::Command::new(exe)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_ENDPOINT_URL", NO_AWS)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs the binary at `exe` for one invocation of `event`: returns what it said about that invocation (its
/// answer or its error report) once it has asked for the next one, having checked that it still runs (the
/// runtime loop goes on, as Lambda would freeze it). Fails the test if the binary ends, or does not answer
/// and ask again within [`PATIENCE`].
pub async fn invoke_once(exe: &str, function: &str, env: &[(&str, &str)], event: &str) -> Said {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    // Its log goes where the test's own output goes (shown when the test fails).
    let mut child = start(exe, function, &api, env, std::process::Stdio::inherit());
    let (tx, mut said) = mpsc::channel(4);
    let handed = Arc::new(AtomicBool::new(false));
    let (function_name, event) = (function.to_owned(), event.to_owned());
    let server = tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(conn, function_name.clone(), event.clone(), handed.clone(), tx.clone()));
        }
    });
    let mut heard = Vec::new();
    let deadline = tokio::time::sleep(PATIENCE);
    tokio::pin!(deadline);
    while heard.len() < 2 {
        tokio::select! {
            s = said.recv() => heard.push(s.unwrap()),
            exit = child.wait() => panic!("{function}'s binary ended after saying {heard:?}: {exit:?}"),
            () = &mut deadline => panic!("{function}'s binary did not answer and ask again within {PATIENCE:?}; it said {heard:?}"),
        }
    }
    // Waiting for that next invocation, as Lambda would freeze it: still running.
    assert!(child.try_wait().unwrap().is_none(), "{function}'s binary should wait for the next invocation");
    child.kill().await.unwrap();
    server.abort();
    let mut heard = heard.into_iter();
    match (heard.next(), heard.next()) {
        (Some(first @ (Said::Response(_) | Said::Error(..))), Some(Said::Next)) => first,
        other => panic!("{function}'s binary should answer the invocation, then ask for the next; it said {other:?}"),
    }
}

/// The error document of what the binary said, which must be an invocation's error report (`/error`, not
/// `/init/error`) with an errorType; fails the test otherwise.
pub fn invocation_error(function: &str, said: Said) -> serde_json::Value {
    match said {
        Said::Error(path, report) => {
            assert!(path.ends_with("/error") && !path.contains("/init/"), "{function} reported on {path}: {report}");
            assert!(report["errorType"].as_str().is_some_and(|t| !t.is_empty()), "the error report: {report}");
            report
        }
        other => panic!("{function}'s binary should report the invocation's error; it said {other:?}"),
    }
}

/// For each variable of `env` in turn: the binary at `exe` started without it (or with it blank) ends before
/// it asks for an invocation, with a failed status and a log naming the variable.
pub async fn fails_at_init_without_each(exe: &str, function: &str, env: &[(&str, &str)]) {
    for missing in 0..env.len() {
        let mut partial = env.to_vec();
        let (name, _) = partial.remove(missing);
        for without in [partial.clone(), [partial.as_slice(), &[(name, " ")]].concat()] {
            let (status, log) = fails_at_init(exe, function, &without).await;
            assert!(!status.success(), "{function} without {name}: {status}");
            assert!(log.contains(name), "{function} without {name}: its log should name it: {log}");
        }
    }
}

/// Starts the binary at `exe` with `env` and waits for it to end, as it must when its configuration is
/// unusable: returns its exit status and what it wrote to its log, having checked that it never asked for an
/// invocation (it must fail at init, before taking one).
async fn fails_at_init(exe: &str, function: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let child = start(exe, function, &api, env, std::process::Stdio::piped());
    let out = tokio::select! {
        out = child.wait_with_output() => out.unwrap(),
        accepted = listener.accept() => panic!("{function}'s binary asked for an invocation ({accepted:?}); its configuration should have stopped it"),
        () = tokio::time::sleep(PATIENCE) => panic!("{function}'s binary did not end within {PATIENCE:?}"),
    };
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}
