//! A tiny HTTP/1.0 GET client that runs inside a test's network namespace.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::netns::NetNs;

/// An answer: status code, headers (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` from inside `ns` to `to`; `Err` when the connection fails.
pub fn get(ns: &NetNs, to: SocketAddr, path: &str) -> Result<Answer, String> {
    let path = path.to_owned();
    ns.run_inside(move || get_here(to, &path))
}

/// `GET path` to `to` from the current thread's namespace.
pub fn get_here(to: SocketAddr, path: &str) -> Result<Answer, String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&to, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let mut lines = head.lines();
    let status = lines.next().ok_or("no status line")?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        code,
        headers,
        body: body.to_owned(),
    })
}

/// The value of the first sample line starting with `prefix` in a metrics text.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
