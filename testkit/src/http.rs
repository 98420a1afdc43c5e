//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Hand-rolled on purpose: Patroni answers HEAD/OPTIONS with a bare status line (no headers),
//! which strict clients reject, and the harness needs hard per-request deadlines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default deadline of one request (connect + send + receive).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

/// A received response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// TLS and credentials for a REST API that speaks HTTPS.
#[derive(Clone)]
pub struct ApiTls {
    /// The client configuration (CA, maybe a client certificate).
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// `user:password` for Basic authentication, sent with every request.
    pub basic: Option<String>,
}

/// A byte stream: plain TCP or TLS over it.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Sends one request and reads the whole response. `Err` describes what failed (connect,
/// timeout, malformed status line).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    request_with(addr, None, method, path, body, timeout)
}

/// [`request`] over TLS (and with credentials) when `tls` is given.
pub fn request_with(
    addr: SocketAddr,
    tls: Option<&ApiTls>,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let deadline = Instant::now() + timeout;
    let tcp =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Stream> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let connection = rustls::ClientConnection::new(tls.config.clone(), name)
                .map_err(|e| format!("TLS to {addr}: {e}"))?;
            Box::new(rustls::StreamOwned::new(connection, tcp))
        }
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pgwarden-harness\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    if let Some(basic) = tls.and_then(|t| t.basic.as_ref()) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(basic);
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("send {method} {path} to {addr}: {e}"))?;

    let head_only = method.eq_ignore_ascii_case("HEAD");
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if complete(&data, head_only) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{method} {path} on {addr}: no complete response within {timeout:?}"
            ));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            // A reset after the server has written its answer still leaves a usable answer.
            Err(_) if !data.is_empty() => break,
            Err(e) => return Err(format!("{method} {path} on {addr}: {e}")),
        }
    }
    parse(&data, head_only).ok_or_else(|| {
        format!(
            "{method} {path} on {addr}: malformed response {:?}",
            String::from_utf8_lossy(&data[..data.len().min(200)])
        )
    })
}

fn split_head(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&data[..pos], &data[pos + 4..]))
}

fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some((status, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether `data` already holds a whole response (otherwise read on until EOF).
fn complete(data: &[u8], head_only: bool) -> bool {
    let Some((head, body)) = split_head(data) else {
        return false;
    };
    let Some((status, headers)) = parse_head(head) else {
        return false;
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return true;
    }
    if header(&headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body).is_some();
    }
    match header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(len) => body.len() >= len,
        None => false,
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if body.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn parse(data: &[u8], head_only: bool) -> Option<HttpResponse> {
    let (head, body) = match split_head(data) {
        Some(parts) => parts,
        // A bare status line closed by the server.
        None => (data, &[][..]),
    };
    let (status, headers) = parse_head(head.strip_suffix(b"\r\n").unwrap_or(head))?;
    let body = if head_only {
        Vec::new()
    } else if header(&headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body)?
    } else if let Some(len) =
        header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        body[..len.min(body.len())].to_vec()
    } else {
        body.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    request(addr, "GET", path, None, HTTP_TIMEOUT)
}
