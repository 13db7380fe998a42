//! decide's own binary, as Lambda runs it: its `main` (telemetry, configuration, the SDK, the runtime loop on
//! one tokio thread) asks a stand-in for Lambda's Runtime API for an invocation and answers it there. The
//! handler's tests call `Deps::handle` directly; this is the one test that runs what the template deploys.
//!
//! Runtime API (AWS Lambda Developer Guide, "Using the Lambda runtime API for custom runtimes"):
//! `GET /2018-06-01/runtime/invocation/next` answers the event with `Lambda-Runtime-Aws-Request-Id`,
//! `Lambda-Runtime-Deadline-Ms` and `Lambda-Runtime-Invoked-Function-Arn`; the runtime answers with
//! `POST /2018-06-01/runtime/invocation/<id>/response`, or `/error`, or `/runtime/init/error` when its init
//! fails.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const REQUEST_ID: &str = "0b4c7d02-5c36-4a4e-9d3b-6f1f3c0a9e11";

/// What the binary said to the Runtime API: its answer to the invocation, or an error report.
#[derive(Debug)]
enum Said {
    Response(String),
    Error(String, String),
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
    event: String,
    handed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    said: mpsc::Sender<Said>,
) {
    let mut buf = Vec::new();
    while let Some((method, path, body)) = request(&mut conn, &mut buf).await {
        let answer = if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            if handed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                said.send(Said::Next).await.unwrap();
                std::future::pending::<()>().await;
            }
            let deadline =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + Duration::from_secs(60);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
                 Lambda-Runtime-Deadline-Ms: {}\r\nLambda-Runtime-Invoked-Function-Arn: \
                 arn:aws:lambda:us-east-1:111111111111:function:gatekeeper-decide\r\nContent-Length: {}\r\n\r\n{event}",
                deadline.as_millis(),
                event.len()
            )
        } else {
            let report = if path == format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response") {
                Said::Response(body)
            } else {
                Said::Error(path, body)
            };
            said.send(report).await.unwrap();
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_owned()
        };
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn the_binary_should_answer_an_invocation_through_the_runtime_api() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap().to_string();
    // A request for a service the stack does not manage: decide answers it without an AWS call, so the
    // endpoint below (nothing listens on the discard port) is never reached.
    let event = include_str!("../../../events/sqs/connection-requests.json").to_owned();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_decide"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "gatekeeper-decide")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("MANAGED_SERVICES", "vpce-svc-0fedcba9876543210")
        .env("ALLOWLIST_TABLE", "gatekeeper-allowlist")
        .env("DECISIONS_TABLE", "gatekeeper-decisions")
        .env("TOPIC_ARN", "arn:aws:sns:us-east-1:111111111111:gatekeeper-decisions")
        .env("DELIVERIES_QUEUE_ARN", "arn:aws:sqs:us-east-1:111111111111:gatekeeper-deliveries")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (tx, mut said) = mpsc::channel(4);
    let handed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(conn, event.clone(), handed.clone(), tx.clone()));
        }
    });
    let mut heard = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    while heard.len() < 2 {
        tokio::select! {
            s = said.recv() => heard.push(s.unwrap()),
            exit = child.wait() => panic!("decide's binary ended after saying {heard:?}: {exit:?}"),
            () = &mut deadline => panic!("decide's binary did not answer and ask again within 60 s; it said {heard:?}"),
        }
    }
    match &heard[..] {
        [Said::Response(body), Said::Next] => {
            let answer: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(answer, serde_json::json!({"batchItemFailures": []}), "the answer to the invocation");
        }
        [Said::Error(path, body), ..] => panic!("decide's binary reported an error on {path}: {body}"),
        other => panic!("decide's binary should answer the invocation, then ask for the next; it said {other:?}"),
    }
    // Waiting for that next invocation, as Lambda would freeze it: still running.
    assert!(child.try_wait().unwrap().is_none(), "decide's binary should wait for the next invocation");
    child.kill().await.unwrap();
}
