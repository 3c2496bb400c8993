//! The HTTP/1.1 client of every test: one request per connection (`Connection: close`),
//! raw bytes in and out, so tests can send exactly what a browser or an attacker would
//! (bad JSON, huge bodies, odd headers) and see every header of the answer as sent.
//! No TLS, no redirects, no pooling.
//!
//! It is written over a `TcpStream` rather than on hyper's client because the resilience
//! tests need to know what became of a request that failed ([`Outcome`]: refused at
//! connect, dropped after some bytes of an answer, or no answer in time), and because
//! a client crate would normalise the odd requests the edge tests send on purpose.
//!
//! - [`RequestBuilder::send`] is for a healthy server: any transport failure panics.
//! - [`RequestBuilder::try_send`] classifies the failure instead (`chaos` counts them).
//! - [`HttpClient::scrape`] reads a Prometheus `/metrics` page.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A complete response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        self.decode()
    }

    /// The body decoded as `T`; panics with the body when it is not one.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not the JSON expected ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// What became of one request sent with [`RequestBuilder::try_send`].
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A complete response arrived.
    Answered(HttpResponse),
    /// The TCP connect failed (nothing listening): the request never reached a server.
    Refused(String),
    /// Connected, but the connection closed or broke before a complete response;
    /// `received` bytes of a response had arrived (0: the server sent nothing at all).
    Dropped { received: usize, error: String },
    /// No complete response within the deadline.
    TimedOut,
}

/// A client for one `host:port`.
#[derive(Clone, Debug)]
pub struct HttpClient {
    addr: String,
}

/// One request being built; `Clone`, so a load can send it again and again.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    addr: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl HttpClient {
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn request(&self, method: &str, path: &str) -> RequestBuilder {
        RequestBuilder {
            addr: self.addr.clone(),
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request("POST", path)
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request("PATCH", path)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request("DELETE", path)
    }

    /// `GET /metrics`, which must answer 200.
    pub async fn scrape(&self) -> Metrics {
        let response = self.get("/metrics").send().await;
        assert_eq!(response.status, 200, "/metrics of {}", self.addr);
        Metrics(response.text())
    }
}

impl RequestBuilder {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.body = Some(value.to_string().into_bytes());
        self.header("Content-Type", "application/json")
    }

    /// Any body, sent as is (set the content type yourself).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// `METHOD path`, for messages.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Sends the request and reads the whole response (30 s at most); panics when
    /// there is none.
    pub async fn send(self) -> HttpResponse {
        match self.try_send(Duration::from_secs(30)).await {
            Outcome::Answered(response) => response,
            Outcome::TimedOut => panic!("{} did not finish within 30 s", self.line()),
            failed => panic!("{} to {}: {failed:?}", self.line(), self.addr),
        }
    }

    /// Sends the request and waits at most `deadline` for the whole exchange (by
    /// reference: a load sends one request again and again).
    pub async fn try_send(&self, deadline: Duration) -> Outcome {
        tokio::time::timeout(deadline, self.exchange())
            .await
            .unwrap_or(Outcome::TimedOut)
    }

    async fn exchange(&self) -> Outcome {
        let mut stream = match TcpStream::connect(&self.addr).await {
            Ok(stream) => stream,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        if let Err(e) = stream.write_all(&self.head()).await {
            return Outcome::Dropped {
                received: 0,
                error: format!("write: {e}"),
            };
        }
        // The server may answer (413) and close before reading a large body: what it
        // answered counts, not the failed write.
        let _ = stream
            .write_all(self.body.as_deref().unwrap_or_default())
            .await;
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw).await;
        match (parse(&raw), read) {
            (Ok(response), _) => Outcome::Answered(response),
            (Err(error), Ok(_)) => Outcome::Dropped {
                received: raw.len(),
                error,
            },
            (Err(_), Err(e)) => Outcome::Dropped {
                received: raw.len(),
                error: format!("read: {e}"),
            },
        }
    }

    fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.path, self.addr
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let length = self.body.as_ref().map_or(0, Vec::len);
        if length > 0 || matches!(self.method.as_str(), "POST" | "PATCH" | "PUT") {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// A Prometheus text page, as [`HttpClient::scrape`] read it.
#[derive(Clone, Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the unlabelled series `name`, if exported.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

/// Parses a complete response as read from a socket (head, then a plain or chunked
/// body); panics when it is not complete.
pub fn parse_response(raw: &[u8]) -> HttpResponse {
    parse(raw).unwrap_or_else(|error| panic!("{error}: {:?}", String::from_utf8_lossy(raw)))
}

/// Parses the head of a response (status and headers; the body left empty), for tests
/// that read a kept-alive connection up to the end of a head.
pub fn parse_head(raw: &[u8]) -> HttpResponse {
    let (response, _) = split_head(raw).unwrap_or_else(|error| panic!("{error}"));
    response
}

/// The head, and the bytes after it.
fn split_head(raw: &[u8]) -> Result<(HttpResponse, &[u8]), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    Ok((response, &raw[split + 4..]))
}

/// A whole response, or what is missing from it.
fn parse(raw: &[u8]) -> Result<HttpResponse, String> {
    let (mut response, body) = split_head(raw)?;
    // 1xx, 204 and 304 answers have no body whatever their headers say.
    let bodiless = matches!(response.status, 100..=199 | 204 | 304);
    response.body = if bodiless {
        Vec::new()
    } else if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(body).ok_or("truncated chunked body")?
    } else if let Some(length) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if body.len() < length {
            return Err(format!("body of {} of {length} bytes", body.len()));
        }
        body[..length].to_vec()
    } else {
        body.to_vec()
    };
    Ok(response)
}

/// The decoded body, or `None` when the terminating chunk never arrived.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: b\r\nContent-Length: 5\r\n\r\nhello",
        );
        let chunked = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        let not_modified =
            parse_response(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");

        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("x-a"), Some("b"));
        assert_eq!(plain.text(), "hello");
        assert_eq!(chunked.status, 404);
        assert_eq!(chunked.text(), "abcde");
        assert!(not_modified.body.is_empty());
    }

    #[test]
    fn a_response_cut_short_is_incomplete() {
        let short = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello");
        let unterminated =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        let nothing = parse(b"");

        assert_eq!(short.unwrap_err(), "body of 5 of 9 bytes");
        assert_eq!(unterminated.unwrap_err(), "truncated chunked body");
        assert_eq!(nothing.unwrap_err(), "incomplete head");
    }

    #[test]
    fn metrics_reads_unlabelled_series_only() {
        let page = Metrics(
            "# HELP up x\nup 1\nrequests_total{code=\"OK\"} 3\nrequests_total 7\n".to_owned(),
        );

        assert_eq!(page.value("up"), Some(1.0));
        assert_eq!(page.value("requests_total"), Some(7.0));
        assert_eq!(page.value("missing"), None);
    }
}
