//! pubsub-loadgen: drives a pubsub WebSocket endpoint with pipelined `cmd_ping` requests and checks
//! every reply (sequence and state length). Prints one JSON line per run.
//!
//! Each connection keeps `depth` requests in flight; whenever replies arrive, the same number of new
//! requests go out in one write. Latency is measured per request, from the write that carried it
//! to the read that completed its reply. `--cycles N` instead opens and closes N connections, one
//! ping each (connection churn). `pubsub-loadgen subscribe` is the push side: subscribers that
//! check every push, and a publisher (see `push.rs`).

mod histogram;
mod http;
mod ledger;
mod procstat;
mod push;
mod replies;
mod requests;
mod ws;

use std::io;
use std::time::{Duration, Instant};

use apisix_pubsub_rs::proto::PubSubResp;
use prost::Message as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::procstat::{cpu_seconds as proc_cpu, cpu_seconds_self, rss_kib as proc_rss_kib};
use crate::replies::{ExpectedReply, ReplyInflater};
use crate::requests::{ping_bytes, Compression, Requests};
use crate::ws::{fill, next_frame, take_frame};

const HELP: &str = "\
pubsub-loadgen: pipelined cmd_ping load against an apisix-pubsub-rs (or APISIX) endpoint

USAGE: pubsub-loadgen [OPTIONS]
       pubsub-loadgen subscribe [OPTIONS]   push subscribers and a publisher (subscribe --help)

  --addr HOST:PORT    server address (default 127.0.0.1:9080); only loopback-style targets make sense
  --path PATH         WebSocket path (default /pubsub)
  -c, --connections N concurrent connections (default 1)
  -d, --depth N       requests in flight per connection (default 1)
  -s, --state BYTES   size of the ping state (default 16)
  -t, --seconds T     run time in seconds (default 10); ignored with --messages
  --messages N        stop after N replies in all (soak runs)
  --cycles N          connection churn: N connect + ping + close cycles, then stop
  --server-pid PID    report this process's CPU time and RSS (an nginx worker)
  --check MODE        full (default): sequence and state of every reply; length: only the state's
                      length (for servers that answer with a precomputed reply)
  --label TEXT        copied into the JSON line
  --payload KIND      what the ping state holds: bytes (default, a counting pattern), json
                      (JSON-like order records) or random
  --compress          offer permessage-deflate (client_max_window_bits): requests go compressed,
                      compressed replies are inflated (one inflate state a connection, reset after
                      each message unless the server keeps its context) and checked; reports wire
                      bytes either way. Requests differ only in their sequence, so the state part
                      of a request is compressed once per connection with zlib (zlib-rs) at
                      --compress-level, as a zlib client compresses a message on its own, and
                      each request is a stored block with the sequence followed by those
                      precompressed blocks: the server inflates the blocks such a client sends,
                      the sequence stored (15 bytes where zlib codes its 10 in the block), and
                      the load generator's cost per request is a copy, so a run measures the
                      server's CPU, not the client's. The default because the worker's
                      instructions per message are those of --compress-each within 2 %
  --compress-each     as --compress, but compress every request whole, as a zlib client does
                      (zlib-rs at --compress-level, reset after each message); for comparison: at
                      1 KiB JSON it costs the load generator about twice the worker's CPU for
                      the whole message
  --compress-level N  zlib level of the compressed requests, 0-9 (default 6, zlib's default, which
                      browsers, Python websockets and Node's ws use)
  --compress-min N    with --compress, requests shorter than N bytes (the message, before framing)
                      go uncompressed, RSV1 clear, as Node's ws does under its threshold of 1 KiB
                      (default 0: all compressed, as browsers do); replies are read either way
  --frame-size        print the size of one uncompressed request frame for these options, and exit
                      (every request of a run has the same size: sequences are 2^56 + id * 2^32 + n)
  -h, --help          this text

Output: one JSON line: msgs_per_s, latency percentiles (us), errors, client and server CPU
(fraction of one core; client_us_per_msg and server_us_per_msg: µs of CPU per reply), server RSS
(KiB) before, after and at its peak during the run (sampled every 50 ms), client_saturated
(client CPU >= 0.9 of a core) and request_compression (off, template or each).";

#[derive(Clone, Debug)]
struct Opts {
    addr: String,
    path: String,
    connections: usize,
    depth: usize,
    state: usize,
    seconds: f64,
    messages: Option<u64>,
    cycles: Option<u64>,
    server_pid: Option<u32>,
    label: String,
    check_full: bool,
    frame_size: bool,
    payload: String,
    compress: bool,
    /// `--compress-each`: every request compressed whole.
    compress_each: bool,
    compress_level: u32,
    compress_min: usize,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:9080".into(),
        path: "/pubsub".into(),
        connections: 1,
        depth: 1,
        state: 16,
        seconds: 10.0,
        messages: None,
        cycles: None,
        server_pid: None,
        label: String::new(),
        check_full: true,
        frame_size: false,
        payload: "bytes".into(),
        compress: false,
        compress_each: false,
        compress_level: 6,
        compress_min: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let num = |v: String, name: &str| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v}"));
        match a.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--addr" => o.addr = val("--addr")?,
            "--path" => o.path = val("--path")?,
            "-c" | "--connections" => o.connections = num(val(&a)?, &a)? as usize,
            "-d" | "--depth" => o.depth = num(val(&a)?, &a)? as usize,
            "-s" | "--state" => o.state = num(val(&a)?, &a)? as usize,
            "-t" | "--seconds" => o.seconds = val(&a)?.parse().map_err(|_| "--seconds: not a number".to_string())?,
            "--messages" => o.messages = Some(num(val(&a)?, &a)?),
            "--cycles" => o.cycles = Some(num(val(&a)?, &a)?),
            "--server-pid" => o.server_pid = Some(num(val(&a)?, &a)? as u32),
            "--label" => o.label = val(&a)?,
            "--frame-size" => o.frame_size = true,
            "--compress" => o.compress = true,
            "--compress-each" => (o.compress, o.compress_each) = (true, true),
            "--compress-min" => o.compress_min = val("--compress-min")?.parse().map_err(|_| "--compress-min: a size in bytes")?,
            "--compress-level" => o.compress_level = val("--compress-level")?.parse().ok().filter(|l| *l <= 9).ok_or("--compress-level: 0-9")?,
            "--payload" => {
                o.payload = val("--payload")?;
                if !["bytes", "json", "random"].contains(&o.payload.as_str()) {
                    return Err(format!("--payload: bytes, json or random, not {}", o.payload));
                }
            }
            "--check" => {
                o.check_full = match val(&a)?.as_str() {
                    "full" => true,
                    "length" => false,
                    other => return Err(format!("--check: full or length, not {other}")),
                }
            }
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if o.connections == 0 || o.depth == 0 {
        return Err("--connections and --depth must be at least 1".into());
    }
    Ok(o)
}

/// A client connection: handshake done, frames in and out.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

/// The reading side of a connection, once its writes have their own task.
struct Reader<'a> {
    rd: &'a mut tokio::net::tcp::OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    /// permessage-deflate, when agreed: inflates replies with RSV1.
    inflater: Option<ReplyInflater>,
    /// Bytes read from the socket.
    wire_in: u64,
}

impl Reader<'_> {
    /// The next buffered message as (opcode, payload), inflated when compressed, if one is
    /// buffered; a compressed one that does not inflate is an error. The payload is borrowed
    /// from the read buffer or the inflater's: nothing is copied.
    fn take(&mut self) -> Option<Result<(u8, &[u8]), &'static str>> {
        let f = next_frame(&self.buf, &mut self.start)?;
        let payload = &self.buf[f.payload];
        Some(match self.inflater.as_mut() {
            Some(inf) if f.rsv1 => inf.inflate(payload).map(|m| (f.opcode, m)).map_err(|e| e.0),
            _ => Ok((f.opcode, payload)),
        })
    }

    /// Reads until a whole frame is buffered.
    async fn wait_frame(&mut self) -> io::Result<()> {
        while next_frame(&self.buf, &mut self.start.clone()).is_none() {
            let before = self.buf.len() - self.start;
            fill(&mut self.rd, &mut self.buf, &mut self.start).await?;
            self.wire_in += (self.buf.len() - before) as u64;
        }
        Ok(())
    }
}

/// The permessage-deflate offer `--compress` makes.
const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// What a server's handshake response agreed to of [`DEFLATE_OFFER`]: `None` without the
/// extension, else the window our requests may use and whether the server keeps its context
/// between messages.
fn agreed_deflate(head: &str) -> Result<Option<(u8, bool)>, String> {
    let values = head.split("\r\n").filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("sec-websocket-extensions").then_some(value.as_bytes())
    });
    let answer = match apisix_pubsub_rs::deflate::parse_offers(values).first() {
        None => return Ok(None),
        Some(Err(e)) => return Err(format!("permessage-deflate answer: {e}")),
        Some(Ok(a)) => *a,
    };
    let window = answer.client_max_window_bits.flatten().unwrap_or(15);
    if window < 9 {
        return Err(format!("permessage-deflate answer: client_max_window_bits={window}, which zlib cannot compress with"));
    }
    Ok(Some((window, !answer.server_no_context_takeover)))
}

/// The ping state of `--payload` for connection `id`.
fn payload(kind: &str, len: usize, id: usize) -> Vec<u8> {
    match kind {
        "json" => {
            let mut s = String::new();
            let mut i = id * 1000;
            while s.len() < len {
                i += 1;
                let side = if i & 1 == 0 { "buy" } else { "sell" };
                s.push_str(&format!("{{\"id\":{i},\"topic\":\"orders\",\"price\":{}.{:02},\"side\":\"{side}\"}},", i * 7 % 1000, i % 100));
            }
            s.truncate(len);
            s.into_bytes()
        }
        "random" => {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ id as u64;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }
        _ => (0..len).map(|i| (i * 31 + id) as u8).collect(),
    }
}

fn masked_frame(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    ws::masked_frame(out, 0x2, payload, mask);
}

impl Conn {
    async fn open(addr: &str, path: &str) -> io::Result<Conn> {
        let (stream, buf) = ws::connect(addr, path, None).await?;
        Ok(Conn { stream, buf, start: 0 })
    }

    /// A complete server message already buffered, if any.
    fn try_take(&mut self) -> Option<(u8, Vec<u8>)> {
        take_frame(&self.buf, &mut self.start)
    }

    /// Reads more bytes from the socket.
    async fn fill(&mut self) -> io::Result<()> {
        fill(&mut self.stream, &mut self.buf, &mut self.start).await
    }

    /// The next complete server message (data frames are expected unfragmented).
    async fn next_message(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            if let Some(m) = self.try_take() {
                return Ok(m);
            }
            self.fill().await?;
        }
    }
}

/// Sequences of connection `id` start here: all of them take 9 varint bytes, so every request of a
/// run has the same size (the floor server counts frames by size).
fn sequence_base(id: usize) -> i64 {
    (1i64 << 56) + ((id as i64) << 32)
}

#[derive(Default)]
struct Tally {
    replies: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    /// When the last reply arrived (the closing handshake is not timed).
    done_at: Option<Instant>,
    /// Bytes written and read on the sockets (frames, the handshake's answer excluded).
    wire_out: u64,
    wire_in: u64,
}

impl Tally {
    fn error(&mut self, e: impl ToString) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

async fn run_connection(o: Opts, id: usize, deadline: Instant, quota: u64) -> Tally {
    let mut t = Tally::default();
    let offer = if o.compress { DEFLATE_OFFER } else { "" };
    let (stream, buf, head) = match ws::connect_with(&o.addr, &o.path, None, offer).await {
        Ok(c) => c,
        Err(e) => {
            t.error(e);
            return t;
        }
    };
    let agreed = match agreed_deflate(&head) {
        Ok(a) => a,
        Err(e) => {
            t.error(e);
            return t;
        }
    };
    if o.compress && agreed.is_none() {
        t.error("permessage-deflate offered and declined");
        return t;
    }
    let state: Vec<u8> = payload(&o.payload, o.state, id);
    let mask = [(id as u8) ^ 0x5a, 0x13, 0x37, 0x42];
    let level = o.compress_level;
    let compression = match agreed {
        None => Compression::Off,
        Some(_) if ping_bytes(1 << 56, &state).len() < o.compress_min => Compression::Off,
        Some((window_bits, _)) if o.compress_each => Compression::Each { level, window_bits },
        Some((window_bits, _)) => Compression::Template { level, window_bits },
    };
    let mut requests = Requests::new(&state, mask, compression);
    let expected = ExpectedReply::new(&state);
    let base = sequence_base(id);
    let mut next_seq = 0i64;
    let mut in_flight = std::collections::VecDeque::with_capacity(o.depth);
    let mut out = Vec::new();
    let mut send = |n: usize, out: &mut Vec<u8>, in_flight: &mut std::collections::VecDeque<(i64, Instant)>| {
        out.clear();
        out.reserve(n * requests.frame_len());
        let now = Instant::now();
        for _ in 0..n {
            let seq = base + next_seq;
            next_seq += 1;
            requests.push(out, seq);
            in_flight.push_back((seq, now));
        }
    };
    // Writes go through their own task, so reading never waits for a large write to finish
    // (a client that writes 16 MiB before reading deadlocks against a server that answers as it reads).
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            if wr.write_all(&buf).await.is_err() {
                return None;
            }
        }
        Some(wr)
    });
    let inflater = agreed.map(|(_, context_takeover)| ReplyInflater::new(context_takeover, 64 << 20));
    let mut conn = Reader { rd: &mut rd, buf, start: 0, inflater, wire_in: 0 };
    send(o.depth, &mut out, &mut in_flight);
    t.wire_out += out.len() as u64;
    let _ = tx.send(std::mem::take(&mut out));
    let mut sent = o.depth as u64;
    while !in_flight.is_empty() {
        if let Err(e) = conn.wait_frame().await {
            t.error(e);
            return t;
        }
        // Every reply already buffered; then the refills in one write.
        let mut refill = 0;
        while !in_flight.is_empty() {
            let Some(message) = conn.take() else { break };
            let (seq, at) = in_flight.pop_front().expect("a reply to a request in flight");
            t.latencies_us.push(at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            t.replies += 1;
            match message {
                Ok((2, payload)) => {
                    if let Err(e) = expected.check(payload, seq, o.check_full) {
                        t.error(e);
                    }
                }
                Ok((op, payload)) => t.error(format!("unexpected frame opcode {op} ({} bytes)", payload.len())),
                Err(e) => t.error(format!("reply to {seq}: {e}")),
            }
            if Instant::now() < deadline && sent < quota {
                refill += 1;
                sent += 1;
            }
        }
        if refill > 0 {
            send(refill, &mut out, &mut in_flight);
            t.wire_out += out.len() as u64;
            if tx.send(std::mem::take(&mut out)).is_err() {
                t.error("writer gone");
                return t;
            }
        }
    }
    t.done_at = Some(Instant::now());
    t.wire_in = conn.wire_in;
    let mut close = vec![0x88, 0x82];
    close.extend_from_slice(&[0, 0, 0, 0]);
    close.extend_from_slice(&1000u16.to_be_bytes());
    let _ = tx.send(close);
    drop(tx);
    let _ = writer.await;
    // The floor server does not answer closes; don't wait long for the echo.
    let _ = tokio::time::timeout(Duration::from_millis(500), conn.wait_frame()).await;
    t
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn cycles(o: &Opts, n: u64) -> Tally {
    let mut t = Tally::default();
    let state = vec![7u8; o.state];
    for i in 0..n {
        match Conn::open(&o.addr, &o.path).await {
            Err(e) => t.error(e),
            Ok(mut c) => {
                let mut out = Vec::new();
                masked_frame(&mut out, &ping_bytes(i as i64, &state), [1, 2, 3, 4]);
                // Every other cycle ends with a close frame, the others just drop the socket.
                if i % 2 == 0 {
                    out.extend_from_slice(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
                }
                let ok = c.stream.write_all(&out).await.is_ok();
                match c.next_message().await {
                    Ok((2, p)) if ok && PubSubResp::decode(&p[..]).is_ok_and(|r| r.sequence == i as i64) => t.replies += 1,
                    other => t.error(format!("cycle {i}: {:?}", other.map(|(op, p)| (op, p.len())))),
                }
            }
        }
    }
    t
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("subscribe") {
        args.next();
        std::process::exit(push::main(args));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(ping_main());
}

async fn ping_main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pubsub-loadgen: {e}");
            std::process::exit(2);
        }
    };
    if o.frame_size {
        let mut f = Vec::new();
        masked_frame(&mut f, &ping_bytes(sequence_base(0), &vec![1u8; o.state]), [0; 4]);
        println!("{}", f.len());
        return;
    }
    let server0 = o.server_pid.and_then(proc_cpu);
    let client0 = cpu_seconds_self();
    let rss_before = o.server_pid.and_then(proc_rss_kib);
    // The worker's peak RSS while the run lasts, sampled every 50 ms.
    let sampler = o.server_pid.map(|pid| procstat::PeakRss::start(vec![pid]));
    let started = Instant::now();
    let mut total = Tally::default();
    if let Some(n) = o.cycles {
        total = cycles(&o, n).await;
    } else {
        let deadline = if o.messages.is_some() { started + Duration::from_secs(86400) } else { started + Duration::from_secs_f64(o.seconds) };
        let quota = o.messages.map_or(u64::MAX, |m| m.div_ceil(o.connections as u64));
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..o.connections {
            tasks.spawn(run_connection(o.clone(), id, deadline, quota));
        }
        while let Some(r) = tasks.join_next().await {
            let t = r.expect("connection task");
            total.replies += t.replies;
            total.errors += t.errors;
            total.latencies_us.extend(t.latencies_us);
            total.done_at = total.done_at.max(t.done_at);
            total.wire_out += t.wire_out;
            total.wire_in += t.wire_in;
            if total.first_error.is_none() {
                total.first_error = t.first_error;
            }
        }
    }
    let elapsed = total.done_at.map_or_else(|| started.elapsed(), |d| d - started).as_secs_f64();
    let client_cpu = (cpu_seconds_self() - client0) / elapsed;
    let replies = total.replies.max(1) as f64;
    let client_us = (cpu_seconds_self() - client0) / replies * 1e6;
    let (server_cpu, server_us) = match (server0, o.server_pid.and_then(proc_cpu)) {
        (Some(a), Some(b)) => (format!("{:.3}", (b - a) / elapsed), format!("{:.2}", (b - a) / replies * 1e6)),
        _ => ("null".into(), "null".into()),
    };
    let rss_after = o.server_pid.and_then(proc_rss_kib);
    let rss_peak = sampler.as_ref().and_then(procstat::PeakRss::peak);
    total.latencies_us.sort_unstable();
    let l = &total.latencies_us;
    println!(
        "{{\"label\":\"{}\",\"connections\":{},\"depth\":{},\"state\":{},\"seconds\":{:.2},\"replies\":{},\"msgs_per_s\":{:.0},\
\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"errors\":{},\"first_error\":{},\"client_cpu\":{:.3},\"client_saturated\":{},\
\"server_cpu\":{},\"server_rss_kib_before\":{},\"server_rss_kib_after\":{},\"server_rss_kib_peak\":{},\
\"payload\":\"{}\",\"compress\":{},\"request_compression\":\"{}\",\"wire_out_per_msg\":{:.1},\"wire_in_per_msg\":{:.1},\
\"client_us_per_msg\":{:.2},\"server_us_per_msg\":{}}}",
        o.label.replace('"', "'"),
        o.connections,
        o.depth,
        o.state,
        elapsed,
        total.replies,
        total.replies as f64 / elapsed,
        percentile(l, 0.5),
        percentile(l, 0.99),
        percentile(l, 0.999),
        total.errors,
        total.first_error.map_or("null".into(), |e| format!("{:?}", e)),
        client_cpu,
        client_cpu >= 0.9,
        server_cpu,
        rss_before.map_or("null".into(), |v| v.to_string()),
        rss_after.map_or("null".into(), |v| v.to_string()),
        rss_peak.map_or("null".into(), |v| v.to_string()),
        o.payload,
        o.compress,
        match (o.compress, o.compress_each) {
            (false, _) => "off",
            (true, false) => "template",
            (true, true) => "each",
        },
        total.wire_out as f64 / replies,
        total.wire_in as f64 / replies,
        client_us,
        server_us,
    );
    if total.errors > 0 {
        std::process::exit(1);
    }
}


#[cfg(test)]
mod tests {
    use super::agreed_deflate;

    #[test]
    fn the_answer_to_the_offer_sets_window_and_context() {
        let head = |ext: &str| format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n{ext}Connection: upgrade");
        assert_eq!(agreed_deflate(&head("")), Ok(None));
        let defaults = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n";
        assert_eq!(agreed_deflate(&head(defaults)), Ok(Some((15, false))));
        assert_eq!(agreed_deflate(&head("sec-websocket-extensions: permessage-deflate; client_max_window_bits=10\r\n")), Ok(Some((10, true))));
        assert!(agreed_deflate(&head("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n")).is_err());
        assert!(agreed_deflate(&head("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n")).is_err());
    }
}
