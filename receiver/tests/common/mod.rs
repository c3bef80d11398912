//! Helpers for tests that talk HTTP over raw sockets (where an HTTP client would fix up or hide
//! what we send) and run the real `receiver` binary.

#![allow(dead_code)] // each test binary uses its own subset

use std::{
    net::{IpAddr, SocketAddr},
    process::Stdio,
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    process::{Child, Command},
};

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct RawAnswer {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl RawAnswer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `error.code` of the envelope.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Panics unless this is the error envelope with `code` and a JSON content type.
    pub fn assert_envelope(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.body["success"], false, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "{self:?}"
        );
    }
}

/// The `host:port` of an `http://host:port` URL.
pub fn socket_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("an http://ip:port URL")
}

/// A TCP connection to `to` whose source address is `from` (any address of 127.0.0.0/8 works on
/// Linux loopback), so one test can play several client addresses.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Sends `request` as is on a new connection and reads one answer (within 10 s).
pub async fn exchange(to: SocketAddr, request: &[u8]) -> RawAnswer {
    let mut stream = TcpStream::connect(to).await.expect("connect");
    stream.write_all(request).await.expect("send");
    read_answer(&mut stream, Duration::from_secs(10))
        .await
        .expect("an answer")
}

/// Reads one HTTP/1.1 answer (head, then `Content-Length` bytes or up to EOF), or fails when
/// none is complete within `within`.
pub async fn read_answer(stream: &mut TcpStream, within: Duration) -> std::io::Result<RawAnswer> {
    tokio::time::timeout(within, read_answer_unbounded(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

async fn read_answer_unbounded(stream: &mut TcpStream) -> std::io::Result<RawAnswer> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let mut body = buffer[head_end + 4..].to_vec();
    loop {
        if length.is_some_and(|length| body.len() >= length) {
            break;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(RawAnswer {
        status,
        headers,
        text,
        body,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A request head (and body) as bytes: `Host` and `Connection: close` added.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// A free TCP port on 127.0.0.1 (for child processes, which bind their own listeners).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The real `receiver` binary with `vars` (and nothing else inherited that configures it),
/// its stdout and stderr captured.
pub fn receiver_process(vars: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_receiver"));
    for name in [
        "DATABASE_URL",
        "AMQP_URL",
        "AMQP_PREFIX",
        "ADMIN_TOKEN",
        "RECEIVER_ADDR",
        "ADMIN_ADDR",
        "RUST_LOG",
        "LOG_FORMAT",
    ] {
        command.env_remove(name);
    }
    command
        .envs(vars.iter().map(|(name, value)| (*name, *value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.spawn().expect("start the receiver binary")
}

/// Everything a finished (or killed) child wrote to stdout and stderr.
pub async fn output_of(mut child: Child) -> String {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (mut out, mut err) = (String::new(), String::new());
    let _ = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    let _ = child.wait().await;
    format!("{out}{err}")
}
