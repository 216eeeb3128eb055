//! The broker's own request times, as Kafka's `RequestMetrics` `TotalTimeMs`: for each API, how long a request
//! takes from the moment the broker has read it whole until its response is written to the socket (waiting
//! behind earlier responses of the same connection included, as in Kafka). A client's latency minus this is time
//! spent in the client and on the network, so users can see which side queues.
//!
//! Each API has a histogram of fixed buckets (ten per decade, 10 µs to 100 s) of atomic counters: recording is a
//! bucket search and three relaxed additions, with no lock on the request path. They are exposed in Prometheus's
//! text format (`render`), served by `strom.metrics.listener` (`serve`) and read by `strom bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use strom_protocol::kafka::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The metric's name: a Prometheus histogram in seconds, one series per API (`request="Produce"`).
pub const REQUEST_TIME: &str = "strom_request_total_time_seconds";
/// A long-polling consumer or follower fetch that new records ended: from the last wake-up of the partitions it
/// waited on (an append, or the high watermark moving) until its read ran. The broker's share of an end-to-end
/// latency on the fetch side, beside Produce's request time on the produce side.
pub const FETCH_WAKEUP: &str = "strom_fetch_wakeup_seconds";

/// Microseconds on a monotonic clock that starts with the process.
pub fn now_us() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_micros(),
    )
    .unwrap_or(u64::MAX)
}

/// API keys are small numbers (Kafka 4's largest is below 100); requests with a larger one are not counted.
const API_KEYS: usize = 128;

/// Bucket upper bounds in microseconds: 10^(k/10) for k = 10..=80, rounded (10 µs, 13 µs, 16 µs, ... 100 s).
static BOUNDS_US: LazyLock<Vec<u64>> = LazyLock::new(|| {
    (10..=80)
        .map(|k| 10f64.powf(k as f64 / 10.0).round() as u64)
        .collect()
});

struct Histogram {
    /// Per bucket (the last is +Inf): requests that took at most its bound and more than the previous one.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..=BOUNDS_US.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn record(&self, micros: u64) {
        let bucket = BOUNDS_US.partition_point(|bound| *bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Request times per API since the broker started.
pub struct RequestMetrics {
    apis: Vec<Histogram>,
    fetch_wakeup: Histogram,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            apis: (0..API_KEYS).map(|_| Histogram::new()).collect(),
            fetch_wakeup: Histogram::new(),
        }
    }
}

impl RequestMetrics {
    /// A request of `api_key` took `took`, from read to response written (or to completion, for one without a
    /// response: acks=0 produce).
    pub fn record(&self, api_key: i16, took: Duration) {
        if let Some(h) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) {
            h.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
    }

    /// A long poll that new records ended read them `delay` after the last wake-up ([`FETCH_WAKEUP`]).
    pub fn record_fetch_wakeup(&self, delay: Duration) {
        self.fetch_wakeup
            .record(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
    }

    /// Prometheus's text exposition format (version 0.0.4), with the APIs that have served a request.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# HELP {REQUEST_TIME} Time from a request read whole to its response written, per API.\n\
             # TYPE {REQUEST_TIME} histogram\n"
        );
        for (key, h) in self.apis.iter().enumerate() {
            let name = i16::try_from(key)
                .ok()
                .and_then(|k| ApiKey::try_from(k).ok())
                .map_or_else(|| format!("ApiKey{key}"), |k| format!("{k:?}"));
            render_histogram(&mut out, REQUEST_TIME, &name, h);
        }
        out += &format!(
            "# HELP {FETCH_WAKEUP} From the wake-up of a long-polling fetch by new records to its read.\n\
             # TYPE {FETCH_WAKEUP} histogram\n"
        );
        render_histogram(&mut out, FETCH_WAKEUP, "Fetch", &self.fetch_wakeup);
        out
    }
}

/// Appends `h` as the series `request="{label}"` of histogram `metric`, unless it is empty.
fn render_histogram(out: &mut String, metric: &str, label: &str, h: &Histogram) {
    if h.count.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut cumulative = 0;
    for (i, bucket) in h.buckets.iter().enumerate() {
        cumulative += bucket.load(Ordering::Relaxed);
        let le = BOUNDS_US
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
        *out += &format!("{metric}_bucket{{request=\"{label}\",le=\"{le}\"}} {cumulative}\n");
    }
    *out += &format!(
        "{metric}_sum{{request=\"{label}\"}} {}\n{metric}_count{{request=\"{label}\"}} {cumulative}\n",
        h.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
}

/// Answers `GET /metrics` with [`RequestMetrics::render`] (and anything else with 404), one request per
/// connection, until shutdown.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<RequestMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics listener: accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &metrics)).await;
        });
    }
}

/// Reads one HTTP request head (at most 8 KiB) and writes the response.
async fn answer(mut stream: TcpStream, metrics: &RequestMetrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let request_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|b| *b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "Strom serves GET /metrics here\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the rendered histogram of `request` back into (upper bound in seconds, cumulative count).
    fn buckets(text: &str, request: &str) -> Vec<(f64, u64)> {
        let prefix = format!("{REQUEST_TIME}_bucket{{request=\"{request}\",le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                let (le, count) = rest.split_once("\"} ").unwrap();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, count.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_request_lands_in_the_smallest_bucket_that_holds_it() {
        let m = RequestMetrics::default();
        m.record(0, Duration::from_micros(10)); // exactly a bound: in it
        m.record(0, Duration::from_micros(11)); // just above: the next (13 µs)
        m.record(0, Duration::from_millis(2)); // above 1,995 µs: in 2,512 µs
        m.record(0, Duration::from_secs(1000)); // beyond the last bound: +Inf
        m.record(1, Duration::from_micros(1)); // below the first bound: in it
        let text = m.render();
        let produce = buckets(&text, "Produce");
        assert_eq!(produce.len(), BOUNDS_US.len() + 1);
        let at = |le: f64| {
            produce
                .iter()
                .find(|(b, _)| *b == le || (*b - le).abs() < 1e-12)
                .unwrap_or_else(|| panic!("no bucket {le} in {produce:?}"))
                .1
        };
        assert_eq!(at(0.00001), 1);
        assert_eq!(at(0.000013), 2);
        assert_eq!(at(0.001995), 2);
        assert_eq!(at(0.002512), 3);
        assert_eq!(at(100.0), 3);
        assert_eq!(at(f64::INFINITY), 4);
        assert!(text.contains(&format!("{REQUEST_TIME}_count{{request=\"Produce\"}} 4\n")));
        assert_eq!(buckets(&text, "Fetch")[0], (0.00001, 1));
        assert!(
            !text.contains("request=\"ListOffsets\""),
            "an API that served nothing is left out"
        );
    }

    #[test]
    fn the_fetch_wakeup_is_its_own_histogram() {
        let m = RequestMetrics::default();
        assert!(!m.render().contains(&format!("{FETCH_WAKEUP}_count")));
        m.record_fetch_wakeup(Duration::from_micros(300));
        let text = m.render();
        assert!(text.contains(&format!("{FETCH_WAKEUP}_count{{request=\"Fetch\"}} 1\n")));
        assert!(text.contains(&format!(
            "{FETCH_WAKEUP}_bucket{{request=\"Fetch\",le=\"0.000316\"}} 1\n"
        )));
        assert!(!text.contains(&format!("{REQUEST_TIME}_count{{request=\"Fetch\"}}")));
    }

    #[test]
    fn unknown_api_keys_are_named_by_number_and_out_of_range_ones_ignored() {
        let m = RequestMetrics::default();
        m.record(120, Duration::from_millis(1));
        m.record(-1, Duration::from_millis(1));
        m.record(i16::MAX, Duration::from_millis(1));
        let text = m.render();
        assert!(text.contains("request=\"ApiKey120\""));
        assert_eq!(text.matches("_count{").count(), 1);
    }

    #[tokio::test]
    async fn the_listener_serves_get_metrics_and_404_otherwise() {
        let metrics = Arc::new(RequestMetrics::default());
        metrics.record(3, Duration::from_micros(500));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(listener, metrics, shutdown));
        let get = |request: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("{REQUEST_TIME}_count{{request=\"Metadata\"}} 1\n")));
        let missing = get("GET / HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }
}
