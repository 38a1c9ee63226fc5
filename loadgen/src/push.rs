//! `pubsub-loadgen subscribe`: WebSocket subscribers that count and check every push, and an
//! optional HTTP publisher, for push and fan-out benchmarks against this module or another
//! server (nchan) that pushes the same payloads.
//!
//! Every payload starts with two little-endian u64s, a publish counter and the send time in
//! nanoseconds since the epoch, and is padded to its size with bytes `b'a' + i % 26` (byte `i` of
//! the payload). Each subscriber must see every counter once and in order: counter 0 is a sync
//! message, which the publisher repeats until every subscriber has one, so that no subscriber
//! misses the start; real messages count from 1. Without `--publish` the server produces (each
//! connection its own counter from 1, stamped by the server) and the load generator only checks.
//!
//! Everything runs on one thread (a `LocalSet`), so the subscribers share one histogram and one
//! tally without locks.
//!
//! Built to serve brokered benchmarks too: `--addr` takes several servers (subscribers spread over
//! them, e.g. two nginx sharing one Redis), `--server-pid` several workers (summed), `--watch-pid`
//! other processes (a broker's CPU and RSS), and the publisher is any HTTP POST location. A push
//! format is a `Format` and its arm of `payload_of`; one that needs a subscribe request first
//! (channels) sends it where `subscriber` has just connected.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apisix_pubsub_rs::proto::{pub_sub_resp, PubSubResp};
use prost::Message as _;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify, Semaphore};

use crate::histogram::Histogram;
use crate::http::Poster;
use crate::ledger::{self, Delivery, Ledger};
use crate::procstat::{self, PeakRss};
use crate::ws;

const HELP: &str = "\
pubsub-loadgen subscribe: WebSocket subscribers that count and check every push

USAGE: pubsub-loadgen subscribe [OPTIONS]

  --addr HOST:PORT[,...]  server(s); subscribers are spread over them in turn (default 127.0.0.1:9080)
  --path PATH             subscriber WebSocket path (default /pubsub)
  --format F              native (default): pushes are PubSubResp frames whose pong_resp.state is the
                          payload; raw: the frame's payload is the payload (nchan); channel: each
                          subscriber sends cmd_subscribe {channel = --channel} first, and pushes are
                          channel_message frames whose data is the payload (docs/channels.md)
  --channel NAME          the channel of --format channel (default bench)
  --messages N            stop publishing after N messages (as well as after --seconds)
  --retry-publish MS      a publish that fails (status or connection) is sent again after MS
                          milliseconds until it succeeds, instead of ending the run (a broker
                          restarted during a soak); retries are counted
  --publishers P          channels (--format channel, closed loop): P publishes in flight at once, on
                          P connections, and the run is checked by the ledger (src/ledger.rs): order
                          by the channel_message ids, duplicates by counter and id; a publish that
                          fails is not sent again (the next counter goes, 100 ms later on that
                          connection) but counted in publish_failed, and its deliveries, if Redis
                          stored it all the same, in unacked_delivered (neither lost nor duplicated);
                          --messages counts acknowledged publishes; lost = an acknowledged publish a
                          subscriber did not get
  -c, --connections N     subscribers (default 1)
  -s, --size BYTES        payload size, at least 16 (default 16)
  -t, --seconds T         how long to publish (or, without --publish, to receive) (default 5)
  --publish PATH          publish by HTTP POST of the payload to PATH (on --publish-addr); without it
                          the server produces and stamps the messages itself
  --publish-addr HOST:PORT  where to POST (default: the first --addr)
  --rate R                publish R messages per second; 0 (default): closed loop, see --window
  --window W              closed loop: at most W messages published and not yet delivered to every
                          subscriber (default 1)
  --no-read               subscribers never read (queue limits and memory under slow clients);
                          nothing is checked, the publisher's refusals are reported instead
  --rcvbuf BYTES          SO_RCVBUF of each subscriber socket
  --offer-deflate         offer permessage-deflate in each subscriber's handshake (for memory
                          figures of idle compressed connections; pushes are not inflated)
  --read-pause MS         a slow reader: sleep MS milliseconds after each read (with --rcvbuf, a
                          client that drains slower than it is pushed to, never quite empty)
  --quickack              acknowledge every read at once (TCP_QUICKACK after each read), for servers
                          whose sockets keep Nagle's algorithm on (nchan's subscribers do): a second
                          small push then waits for the client's delayed ACK, up to 40 ms on Linux
  --drain T               after publishing, wait up to T seconds for the last deliveries (default 10)
  --server-pid PID[,PID]  nginx worker(s): CPU time and RSS (summed) in the report
  --watch-pid NAME=PID    another process to report (CPU, RSS), e.g. a broker; may repeat
  --label TEXT            copied into the JSON line
  -h, --help              this text

Output: one JSON line: deliveries_per_s; publish->receive latency p50/p90/p99/p999/max/mean in us (measured
in ns); lost, duplicated, out_of_order and bad (payload) counts, which must all be 0, else the exit
status is 1; worker CPU (fraction of one core) over the measured time, and per delivery (us); worker RSS (KiB) before the
subscribers connect, once all are connected, at its peak afterwards (sampled every 50 ms) and after
they closed; rss_per_connection_kib = (connected - before) / connections. With --publishers, also:
publishers, publish_attempts (counters sent), publish_failed, unacked_delivered (deliveries of failed
publishes that Redis stored), stored_twice and id_mismatch (both also counted in bad); published is
then the acknowledged publishes, and lost, duplicated and out_of_order are the ledger's.";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Native,
    Raw,
    Channel,
}

#[derive(Clone, Debug)]
struct Opts {
    addrs: Vec<String>,
    path: String,
    format: Format,
    channel: String,
    messages: u64,
    retry_publish: Option<Duration>,
    publishers: Option<usize>,
    subscribers: usize,
    size: usize,
    seconds: f64,
    publish: Option<String>,
    publish_addr: Option<String>,
    rate: f64,
    window: u64,
    read: bool,
    rcvbuf: Option<u32>,
    offer_deflate: bool,
    quickack: bool,
    read_pause: Option<Duration>,
    drain: f64,
    server_pids: Vec<u32>,
    watch: Vec<(String, u32)>,
    label: String,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        addrs: vec!["127.0.0.1:9080".into()],
        path: "/pubsub".into(),
        format: Format::Native,
        channel: "bench".into(),
        messages: 0,
        retry_publish: None,
        publishers: None,
        subscribers: 1,
        size: 16,
        seconds: 5.0,
        publish: None,
        publish_addr: None,
        rate: 0.0,
        window: 1,
        read: true,
        rcvbuf: None,
        offer_deflate: false,
        quickack: false,
        read_pause: None,
        drain: 10.0,
        server_pids: Vec::new(),
        watch: Vec::new(),
        label: String::new(),
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let num = |v: String, name: &str| v.parse::<u64>().map_err(|_| format!("{name}: not a number: {v}"));
        let float = |v: String, name: &str| v.parse::<f64>().map_err(|_| format!("{name}: not a number: {v}"));
        match a.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--addr" => o.addrs = val(&a)?.split(',').map(str::to_string).collect(),
            "--path" => o.path = val(&a)?,
            "--channel" => o.channel = val(&a)?,
            "--messages" => o.messages = num(val(&a)?, &a)?,
            "--retry-publish" => o.retry_publish = Some(Duration::from_millis(num(val(&a)?, &a)?)),
            "--publishers" => o.publishers = Some(num(val(&a)?, &a)? as usize),
            "--format" => {
                o.format = match val(&a)?.as_str() {
                    "native" => Format::Native,
                    "raw" => Format::Raw,
                    "channel" => Format::Channel,
                    other => return Err(format!("--format: native, raw or channel, not {other}")),
                }
            }
            "-c" | "--connections" => o.subscribers = num(val(&a)?, &a)? as usize,
            "-s" | "--size" => o.size = num(val(&a)?, &a)? as usize,
            "-t" | "--seconds" => o.seconds = float(val(&a)?, &a)?,
            "--publish" => o.publish = Some(val(&a)?),
            "--publish-addr" => o.publish_addr = Some(val(&a)?),
            "--rate" => o.rate = float(val(&a)?, &a)?,
            "--window" => o.window = num(val(&a)?, &a)?,
            "--no-read" => o.read = false,
            "--rcvbuf" => o.rcvbuf = Some(num(val(&a)?, &a)? as u32),
            "--offer-deflate" => o.offer_deflate = true,
            "--quickack" => o.quickack = true,
            "--read-pause" => o.read_pause = Some(Duration::from_millis(num(val(&a)?, &a)?)),
            "--drain" => o.drain = float(val(&a)?, &a)?,
            "--server-pid" => {
                for p in val(&a)?.split(',') {
                    o.server_pids.push(num(p.to_string(), &a)? as u32);
                }
            }
            "--watch-pid" => {
                let v = val(&a)?;
                let (name, pid) = v.split_once('=').ok_or("--watch-pid: NAME=PID")?;
                o.watch.push((name.to_string(), num(pid.to_string(), &a)? as u32));
            }
            "--label" => o.label = val(&a)?,
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if o.subscribers == 0 || o.addrs.is_empty() {
        return Err("--connections must be at least 1 and --addr name a server".into());
    }
    if o.size < 16 {
        return Err("--size: a payload holds a counter and a time stamp, 16 bytes at least".into());
    }
    if o.window == 0 || o.window > RING as u64 / 2 {
        return Err(format!("--window: 1 to {}", RING / 2));
    }
    if !o.read && o.publish.is_none() {
        return Err("--no-read needs --publish (nothing would be measured)".into());
    }
    if let Some(p) = o.publishers {
        if p == 0 || o.format != Format::Channel || o.publish.is_none() || o.rate != 0.0 || !o.read || o.retry_publish.is_some() {
            return Err("--publishers: at least 1, with --format channel, --publish, a closed loop (no --rate), \
                        reading subscribers, and no --retry-publish (failed publishes are counted, not retried)"
                .into());
        }
    }
    Ok(o)
}

/// The send time stamps are nanoseconds since the epoch, so that a server can stamp them too.
fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Writes counter `seq` and the padding into a payload (the stamp is written at send time).
fn fill_payload(p: &mut [u8], seq: u64) {
    p[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(16) {
        *b = padding_byte(i);
    }
}

fn stamp(p: &mut [u8]) {
    p[8..16].copy_from_slice(&now_ns().to_le_bytes());
}

/// The padding of byte `i` of a payload (`i` >= 16), for payloads of up to [`PADDING_SPAN`] bytes
/// compared at once.
fn padding_byte(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// Bytes of padding compared with one slice comparison; a longer payload is compared in spans of
/// it (the pattern repeats every 26 bytes, and this is a multiple of 26).
const PADDING_SPAN: usize = 26 * 64;

/// The padding from byte 0 of a payload, `PADDING_SPAN + 26` bytes: byte `i` is `padding_byte(i)`.
fn padding() -> &'static [u8] {
    static PAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PAD.get_or_init(|| (0..PADDING_SPAN + 26).map(padding_byte).collect())
}

/// The counter and the stamp of a payload, if it has the run's size and padding. The padding is
/// compared a span at a time, so that checking a push costs the load generator little beside the
/// server it measures.
fn check_payload(p: &[u8], size: usize) -> Result<(u64, u64), String> {
    if p.len() != size {
        return Err(format!("payload of {} bytes, expected {size}", p.len()));
    }
    let pad = padding();
    let mut at = 16;
    while at < p.len() {
        let n = (p.len() - at).min(PADDING_SPAN);
        // Byte `at` of the payload has the padding of `at % 26`, which `pad` has at that index.
        let from = at % 26;
        if p[at..at + n] != pad[from..from + n] {
            let i = (at..at + n).find(|&i| p[i] != padding_byte(i)).unwrap_or(at);
            return Err(format!("payload byte {i} corrupt"));
        }
        at += n;
    }
    Ok((u64::from_le_bytes(p[..8].try_into().unwrap()), u64::from_le_bytes(p[8..16].try_into().unwrap())))
}

/// What one subscriber has seen.
#[derive(Debug, Default)]
struct SubState {
    /// The counter expected next.
    next: u64,
    /// Counters skipped over so far (lost unless they still arrive, late).
    missing: BTreeSet<u64>,
    synced: bool,
}

/// A closed-loop publisher's view of delivery: for counter `s`, `remaining[s % RING]` subscribers
/// have yet to receive it.
const RING: usize = 1 << 16;

#[derive(Debug, Default)]
struct Shared {
    subs: Vec<SubState>,
    hist: Histogram,
    measuring: bool,
    deliveries: u64,
    duplicated: u64,
    out_of_order: u64,
    bad: u64,
    errors: u64,
    first_error: Option<String>,
    connected: usize,
    connect_failed: usize,
    synced: usize,
    remaining: Vec<u32>,
    last_delivery: Option<Instant>,
    /// `--publishers`: the run's ledger.
    ledger: Option<Ledger>,
}

impl Shared {
    /// A failure of the run (connect, publish, a connection lost).
    fn error(&mut self, e: impl ToString) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// A push that is not what was published.
    fn bad(&mut self, e: impl ToString) {
        self.bad += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// One push to subscriber `id`, received at `now_ns`.
    fn deliver(&mut self, id: usize, seq: u64, sent_ns: u64, now_ns: u64, closed_loop: bool) -> bool {
        let s = &mut self.subs[id];
        if seq == 0 {
            if s.next > 1 {
                self.out_of_order += 1;
            } else if !s.synced {
                s.synced = true;
                self.synced += 1;
                return true;
            }
            return false;
        }
        if s.next == 0 {
            // Without syncs (the server produces), counting starts at the first message.
            s.next = 1;
        }
        if seq == s.next {
            s.next += 1;
        } else if seq > s.next {
            s.missing.extend(s.next..seq);
            s.next = seq + 1;
        } else if s.missing.remove(&seq) {
            self.out_of_order += 1;
        } else {
            self.duplicated += 1;
            return false;
        }
        if self.measuring {
            self.deliveries += 1;
            self.hist.record(now_ns.saturating_sub(sent_ns));
            self.last_delivery = Some(Instant::now());
        }
        if closed_loop {
            let r = &mut self.remaining[seq as usize % RING];
            *r = r.saturating_sub(1);
            return *r == 0;
        }
        false
    }
}

impl Shared {
    /// With the ledger: one channel_message frame to subscriber `sub`, received at `now_ns`; true
    /// when its counter has now reached every subscriber (or it is a subscriber's first sync).
    fn deliver_ledgered(&mut self, sub: usize, frame: &[u8], size: usize, now_ns: u64) -> bool {
        let m = match PubSubResp::decode(frame) {
            Ok(PubSubResp { resp: Some(pub_sub_resp::Resp::ChannelMessage(m)), .. }) => m,
            Ok(PubSubResp { resp: Some(pub_sub_resp::Resp::ErrorResp(e)), .. }) => {
                self.bad(format!("subscriber {sub}: error_resp: {}", e.message));
                return false;
            }
            Ok(_) => {
                self.bad(format!("subscriber {sub}: unexpected push: not a channel_message"));
                return false;
            }
            Err(e) => {
                self.bad(format!("subscriber {sub}: undecodable push: {e}"));
                return false;
            }
        };
        let (seq, sent) = match check_payload(&m.data, size) {
            Ok(p) => p,
            Err(e) => {
                self.bad(format!("subscriber {sub}: {e}"));
                return false;
            }
        };
        let Some(sid) = ledger::parse_id(&m.id) else {
            self.bad(format!("subscriber {sub}: bad stream id {:?}", m.id));
            return false;
        };
        let ledger = self.ledger.as_mut().expect("the ledger");
        match ledger.deliver(sub, seq, sid) {
            Delivery::Synced => {
                self.synced += 1;
                true
            }
            Delivery::SyncAgain | Delivery::Duplicate => false,
            Delivery::New { unacked } => {
                if self.measuring {
                    self.deliveries += 1;
                    self.hist.record(now_ns.saturating_sub(sent));
                    self.last_delivery = Some(Instant::now());
                }
                if unacked {
                    return false;
                }
                let r = &mut self.remaining[seq as usize % RING];
                *r = r.saturating_sub(1);
                *r == 0
            }
        }
    }

    /// With the ledger, once publishing is over: its counts folded into the run's (a second id
    /// for a counter, or an answer naming another id, is a bad delivery); the number lost and the
    /// JSON fields of its own.
    fn close_ledger(&mut self, last_seq: u64, publishers: usize) -> Option<(u64, String)> {
        let l = self.ledger.as_ref()?;
        let (lost, unacked, mismatch) = l.tally(last_seq);
        let (dup, ooo, twice, failed) = (l.duplicated, l.out_of_order, l.stored_twice, l.failed);
        self.duplicated += dup;
        self.out_of_order += ooo;
        if twice + mismatch > 0 {
            self.bad += twice + mismatch;
            self.first_error.get_or_insert_with(|| format!("{twice} counters under two stream ids, {mismatch} answers naming another id"));
        }
        Some((
            lost,
            format!(
                ",\"publishers\":{publishers},\"publish_attempts\":{last_seq},\"publish_failed\":{failed},\
\"unacked_delivered\":{unacked},\"stored_twice\":{twice},\"id_mismatch\":{mismatch}"
            ),
        ))
    }
}

type SharedRef = Rc<RefCell<Shared>>;

fn payload_of<'a>(format: Format, frame: &'a [u8], decoded: &'a mut Vec<u8>) -> Result<&'a [u8], String> {
    // The usual shape, read in place: no copy of the payload per delivery.
    let fast = match format {
        Format::Raw => return Ok(frame),
        Format::Native => nested_bytes(frame, 32, 1),
        Format::Channel => nested_bytes(frame, 1004, 3),
    };
    if let Some(p) = fast {
        return Ok(p);
    }
    match format {
        Format::Raw => Ok(frame),
        Format::Native => match PubSubResp::decode(frame) {
            Ok(PubSubResp { resp: Some(pub_sub_resp::Resp::PongResp(p)), .. }) => {
                *decoded = p.state;
                Ok(&decoded[..])
            }
            Ok(other) => Err(format!("unexpected push {:?}", other.resp.map(|_| "not a pong_resp"))),
            Err(e) => Err(format!("undecodable push: {e}")),
        },
        Format::Channel => match PubSubResp::decode(frame) {
            Ok(PubSubResp { resp: Some(pub_sub_resp::Resp::ChannelMessage(m)), .. }) => {
                *decoded = m.data;
                Ok(&decoded[..])
            }
            Ok(PubSubResp { resp: Some(pub_sub_resp::Resp::ErrorResp(e)), .. }) => Err(format!("error_resp: {}", e.message)),
            Ok(_) => Err("unexpected push: not a channel_message".into()),
            Err(e) => Err(format!("undecodable push: {e}")),
        },
    }
}

/// A protobuf varint at `b[*at..]`; `*at` moves past it.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The fields of a protobuf message as (field number, wire type, the value's bytes for
/// length-delimited fields), or `None` at the first malformed field.
fn fields(b: &[u8]) -> impl Iterator<Item = Option<(u64, u64, &[u8])>> {
    let mut at = 0;
    let mut broken = false;
    std::iter::from_fn(move || {
        if broken || at == b.len() {
            return None;
        }
        let field = (|| {
            let key = varint(b, &mut at)?;
            let value: &[u8] = match key & 7 {
                0 => {
                    varint(b, &mut at)?;
                    &[]
                }
                1 => {
                    at = at.checked_add(8).filter(|&e| e <= b.len())?;
                    &[]
                }
                5 => {
                    at = at.checked_add(4).filter(|&e| e <= b.len())?;
                    &[]
                }
                2 => {
                    let len = usize::try_from(varint(b, &mut at)?).ok()?;
                    let end = at.checked_add(len).filter(|&e| e <= b.len())?;
                    let v = &b[at..end];
                    at = end;
                    v
                }
                _ => return None,
            };
            Some((key >> 3, key & 7, value))
        })();
        broken = field.is_none();
        Some(field)
    })
}

/// In a `PubSubResp` whose only reply is field `reply`, that reply's bytes field `inner`, read in
/// place; `None` when the message has any other shape (left to the full decode, for its error).
fn nested_bytes(frame: &[u8], reply: u64, inner: u64) -> Option<&[u8]> {
    let mut found = None;
    for f in fields(frame) {
        match f? {
            (1, 0, _) => {}
            (n, 2, body) if n == reply => {
                let mut value: &[u8] = &[];
                for g in fields(body) {
                    match g? {
                        (m, 2, v) if m == inner => value = v,
                        (_, 0 | 1 | 5, _) | (_, 2, _) => {}
                        _ => return None,
                    }
                }
                found = Some(value);
            }
            _ => return None,
        }
    }
    found
}

/// True for the subscribe_resp that comes before a channel subscriber's messages.
fn is_subscribe_resp(frame: &[u8]) -> bool {
    matches!(PubSubResp::decode(frame), Ok(PubSubResp { resp: Some(pub_sub_resp::Resp::SubscribeResp(_)), .. }))
}

async fn subscriber(
    id: usize,
    o: Rc<Opts>,
    shared: SharedRef,
    progress: Rc<Notify>,
    connecting: Rc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let addr = &o.addrs[id % o.addrs.len()];
    let permit = connecting.acquire().await.expect("semaphore");
    let offer = if o.offer_deflate { "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" } else { "" };
    let opened = ws::connect_with(addr, &o.path, o.rcvbuf, offer).await.map(|(s, b, _)| (s, b));
    drop(permit);
    let (mut stream, mut buf) = match opened {
        Ok(c) => c,
        Err(e) => {
            let mut sh = shared.borrow_mut();
            sh.connect_failed += 1;
            sh.error(format!("subscriber {id}: {e}"));
            progress.notify_one();
            return;
        }
    };
    if o.format == Format::Channel {
        use apisix_pubsub_rs::proto::{pub_sub_req::Req, CmdSubscribe, PubSubReq};
        let req = PubSubReq { sequence: 1, req: Some(Req::CmdSubscribe(CmdSubscribe { channel: o.channel.clone(), since: String::new() })) };
        let mut frame = Vec::new();
        ws::masked_frame(&mut frame, 2, &req.encode_to_vec(), [1, 2, 3, 4]);
        if let Err(e) = stream.write_all(&frame).await {
            let mut sh = shared.borrow_mut();
            sh.connect_failed += 1;
            sh.error(format!("subscriber {id}: subscribe: {e}"));
            progress.notify_one();
            return;
        }
    }
    shared.borrow_mut().connected += 1;
    progress.notify_one();
    let closed_loop = o.publish.is_some() && o.rate == 0.0;
    // Reads of 64 KiB when there are few connections (throughput), of about a push when there are
    // thousands (memory).
    let chunk = if o.subscribers <= 64 { 1 << 16 } else { (o.size + 64).clamp(4096, 1 << 16) };
    let mut start = 0;
    let mut decoded = Vec::new();
    let mut ended_by_server = false;
    if o.read {
        // One wait for the stop for the whole run, not one registered and dropped per read.
        let mut stop_wait = stop.clone();
        let stopped = stop_wait.changed();
        tokio::pin!(stopped);
        'reading: loop {
            tokio::select! {
                r = ws::fill_by(&mut stream, &mut buf, &mut start, chunk) => if let Err(e) = r {
                    if !*stop.borrow() {
                        shared.borrow_mut().error(format!("subscriber {id}: {e}"));
                    }
                    ended_by_server = true;
                    break 'reading;
                },
                _ = &mut stopped => break 'reading,
            }
            let now = now_ns();
            if o.quickack {
                let _ = socket2::SockRef::from(&stream).set_tcp_quickack(true);
            }
            // Every frame of this read, under one borrow of the tally (released before any await).
            let (wake, pongs) = {
                let mut sh = shared.borrow_mut();
                let mut wake = false;
                let mut pongs = Vec::new();
                while let Some(f) = ws::next_frame(&buf, &mut start) {
                    match f.opcode {
                        1 | 2 if f.fin => {}
                        9 => {
                            ws::masked_frame(&mut pongs, 0xa, &buf[f.payload], [1, 2, 3, 4]);
                            continue;
                        }
                        10 => continue,
                        8 => {
                            if !*stop.borrow() {
                                sh.error(format!("subscriber {id}: the server closed the connection"));
                            }
                            ended_by_server = true;
                            break 'reading;
                        }
                        op => {
                            sh.bad(format!("subscriber {id}: unexpected frame (opcode {op}, fin {})", f.fin));
                            continue;
                        }
                    }
                    if o.format == Format::Channel && is_subscribe_resp(&buf[f.payload.clone()]) {
                        continue;
                    }
                    if sh.ledger.is_some() {
                        wake |= sh.deliver_ledgered(id, &buf[f.payload.clone()], o.size, now);
                        continue;
                    }
                    let checked = payload_of(o.format, &buf[f.payload], &mut decoded).and_then(|p| check_payload(p, o.size));
                    match checked {
                        Ok((seq, sent)) => wake |= sh.deliver(id, seq, sent, now, closed_loop),
                        Err(e) => sh.bad(format!("subscriber {id}: {e}")),
                    }
                }
                (wake, pongs)
            };
            if !pongs.is_empty() {
                let _ = stream.write_all(&pongs).await;
            }
            if wake {
                progress.notify_one();
            }
            if let Some(pause) = o.read_pause {
                tokio::time::sleep(pause).await;
            }
        }
    } else {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    }
    if !ended_by_server {
        // A clean end: close 1000, and the echo awaited briefly (not timed, not checked).
        let _ = stream.write_all(&ws::close_frame()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if ws::fill_by(&mut stream, &mut buf, &mut start, 1 << 16).await.is_err() {
                    return;
                }
                while let Some(f) = ws::next_frame(&buf, &mut start) {
                    if f.opcode == 8 {
                        return;
                    }
                }
            }
        })
        .await;
    }
}

/// Counts the native publisher location's answers (`{"sent":N,"full":N,"closed":N}`).
#[derive(Debug, Default)]
struct Published {
    messages: u64,
    syncs: u64,
    sent: u64,
    full: u64,
    closed: u64,
}

impl Published {
    fn add_answer(&mut self, body: &[u8]) {
        let text = String::from_utf8_lossy(body);
        let field = |k: &str| -> u64 {
            text.find(&format!("\"{k}\":"))
                .map(|i| &text[i + k.len() + 3..])
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .unwrap_or(0)
        };
        self.sent += field("sent");
        self.full += field("full");
        self.closed += field("closed");
    }
}

async fn publish_one(poster: &mut Poster, path: &str, payload: &mut [u8], seq: u64, p: &mut Published) -> Result<(), String> {
    fill_payload(payload, seq);
    let r = poster.post(path, payload, stamp).await.map_err(|e| format!("publish {seq}: {e}"))?;
    if !(200..300).contains(&r.status) {
        return Err(format!("publish {seq}: status {}: {}", r.status, String::from_utf8_lossy(&r.body)));
    }
    p.add_answer(&r.body);
    Ok(())
}

/// `--publishers P`: publishes counters 1, 2, ... P at a time (each on a connection of its own),
/// at most `--window` ahead of the first counter not yet delivered to every subscriber, until
/// `--messages` are acknowledged or `deadline`; then waits up to `--drain` for the last
/// deliveries. A failed publish is recorded, not retried. Returns the last counter sent and the
/// number acknowledged.
async fn publish_ledgered(o: &Opts, path: &str, shared: &SharedRef, progress: &Notify, deadline: Instant) -> (u64, u64) {
    let n = o.subscribers as u32;
    let addr = o.publish_addr.clone().unwrap_or_else(|| o.addrs[0].clone());
    let mut free: Vec<Poster> = (0..o.publishers.unwrap_or(1)).map(|_| Poster::new(&addr)).collect();
    let mut flying = tokio::task::JoinSet::new();
    let (mut last, mut completed) = (0u64, 0u64);
    let advance = |completed: &mut u64, last: u64| {
        let s = shared.borrow();
        while *completed < last && s.remaining[(*completed + 1) as usize % RING] == 0 {
            *completed += 1;
        }
    };
    loop {
        advance(&mut completed, last);
        let acked = shared.borrow().ledger.as_ref().map_or(0, |l| l.acked);
        let open = Instant::now() < deadline && (o.messages == 0 || acked < o.messages);
        if open {
            while !free.is_empty() && last - completed < o.window && (o.messages == 0 || acked + (flying.len() as u64) < o.messages) {
                let mut poster = free.pop().expect("a free connection");
                last += 1;
                shared.borrow_mut().remaining[last as usize % RING] = n;
                let (path, size, seq) = (path.to_string(), o.size, last);
                flying.spawn_local(async move {
                    let mut payload = vec![0u8; size];
                    fill_payload(&mut payload, seq);
                    let answer = match poster.post(&path, &mut payload, stamp).await {
                        Ok(r) if (200..300).contains(&r.status) => match ledger::parse_id(&String::from_utf8_lossy(&r.body)) {
                            Some(id) => Ok(id),
                            None => Err(format!("publish {seq}: answer {:?} is no stream id", String::from_utf8_lossy(&r.body))),
                        },
                        Ok(r) => Err(format!("publish {seq}: status {}: {}", r.status, String::from_utf8_lossy(&r.body).trim())),
                        Err(e) => {
                            // The connection may be half used: a new one.
                            poster = Poster::new(poster.addr());
                            Err(format!("publish {seq}: {e}"))
                        }
                    };
                    if answer.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    (poster, seq, answer)
                });
            }
        } else if flying.is_empty() {
            break;
        }
        tokio::select! {
            Some(done) = flying.join_next() => {
                let (poster, seq, answer) = done.expect("a publish task");
                free.push(poster);
                let mut sh = shared.borrow_mut();
                match answer {
                    Ok(id) => sh.ledger.as_mut().expect("the ledger").answered(seq, Some(id)),
                    Err(e) => {
                        let l = sh.ledger.as_mut().expect("the ledger");
                        l.answered(seq, None);
                        if l.failed == 1 || l.failed.is_multiple_of(100) {
                            eprintln!("pubsub-loadgen: {e}; not retried ({} failed so far)", l.failed);
                        }
                        sh.remaining[seq as usize % RING] = 0;
                    }
                }
            }
            _ = wait_progress(progress, Duration::from_millis(20)) => {}
        }
    }
    let give_up = Instant::now() + Duration::from_secs_f64(o.drain);
    while Instant::now() < give_up {
        advance(&mut completed, last);
        if completed == last {
            break;
        }
        wait_progress(progress, Duration::from_millis(10)).await;
    }
    let acked = shared.borrow().ledger.as_ref().map_or(0, |l| l.acked);
    (last, acked)
}

/// Waits for `progress` or `timeout`, whichever comes first.
async fn wait_progress(progress: &Notify, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, progress.notified()).await;
}

fn fmt_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

fn us(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1000.0)
}

async fn run(o: Opts) -> i32 {
    let o = Rc::new(o);
    let n = o.subscribers;
    let pids = o.server_pids.clone();
    let rss_before = procstat::sum_over(&pids, procstat::rss_kib);
    let peak = (!pids.is_empty()).then(|| PeakRss::start(pids.clone()));
    let shared: SharedRef = Rc::new(RefCell::new(Shared {
        subs: (0..n).map(|_| SubState::default()).collect(),
        remaining: vec![0; RING],
        ledger: o.publishers.map(|_| Ledger::new(n)),
        ..Shared::default()
    }));
    let progress = Rc::new(Notify::new());
    let connecting = Rc::new(Semaphore::new(256));
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = (0..n)
        .map(|id| {
            tokio::task::spawn_local(subscriber(
                id,
                o.clone(),
                shared.clone(),
                progress.clone(),
                connecting.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    loop {
        let (c, f) = {
            let s = shared.borrow();
            (s.connected, s.connect_failed)
        };
        if c + f == n {
            break;
        }
        wait_progress(&progress, Duration::from_millis(100)).await;
    }
    let mut published = Published::default();
    let mut poster = Poster::new(o.publish_addr.as_deref().unwrap_or(&o.addrs[0]));
    let mut payload = vec![0u8; o.size];
    let mut failed = shared.borrow().connect_failed > 0;
    // Syncs until every subscriber has one (or, when they do not read, a moment to settle).
    if let (Some(path), false) = (&o.publish, failed) {
        if o.read {
            let give_up = Instant::now() + Duration::from_secs(10) + Duration::from_millis(n as u64);
            while shared.borrow().synced < n {
                if Instant::now() > give_up {
                    let synced = shared.borrow().synced;
                    shared.borrow_mut().error(format!("only {synced} of {n} subscribers got a sync message"));
                    failed = true;
                    break;
                }
                if let Err(e) = publish_one(&mut poster, path, &mut payload, 0, &mut published).await {
                    if o.publishers.is_some() {
                        // With the ledger a failed publish is no failure of the run: syncs go on.
                        eprintln!("pubsub-loadgen: sync: {e}; publishing another");
                        poster = Poster::new(o.publish_addr.as_deref().unwrap_or(&o.addrs[0]));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    shared.borrow_mut().error(e);
                    failed = true;
                    break;
                }
                published.syncs += 1;
                wait_progress(&progress, Duration::from_millis(50)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    published = Published { syncs: published.syncs, ..Published::default() };
    let rss_connected = procstat::sum_over(&pids, procstat::rss_kib);
    if let Some(p) = &peak {
        p.reset();
    }
    let watch0: Vec<_> = o.watch.iter().map(|(_, pid)| procstat::cpu_seconds(*pid)).collect();
    let server0 = procstat::sum_over(&pids, procstat::cpu_seconds);
    let client0 = procstat::cpu_seconds_self();
    let t0 = Instant::now();
    shared.borrow_mut().measuring = true;
    let deadline = t0 + Duration::from_secs_f64(o.seconds);
    let mut last_seq = 0u64;
    let mut retries = 0u64;
    match (&o.publish, failed) {
        (_, true) => {}
        (None, false) => tokio::time::sleep_until(deadline.into()).await,
        (Some(path), false) if o.publishers.is_some() => {
            (last_seq, published.messages) = publish_ledgered(&o, path, &shared, &progress, deadline).await;
        }
        (Some(path), false) => {
            let closed_loop = o.rate == 0.0;
            let mut completed = 0u64;
            'publishing: while Instant::now() < deadline {
                if closed_loop && o.read {
                    loop {
                        {
                            let s = shared.borrow();
                            while completed < last_seq && s.remaining[(completed + 1) as usize % RING] == 0 {
                                completed += 1;
                            }
                        }
                        if last_seq - completed < o.window {
                            break;
                        }
                        if Instant::now() >= deadline {
                            break 'publishing;
                        }
                        wait_progress(&progress, Duration::from_millis(20)).await;
                    }
                } else if !closed_loop {
                    let due = t0 + Duration::from_secs_f64(last_seq as f64 / o.rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if o.messages > 0 && last_seq >= o.messages {
                    break 'publishing;
                }
                last_seq += 1;
                shared.borrow_mut().remaining[last_seq as usize % RING] = n as u32;
                loop {
                    match publish_one(&mut poster, path, &mut payload, last_seq, &mut published).await {
                        Ok(()) => break,
                        Err(e) => match o.retry_publish {
                            Some(pause) => {
                                retries += 1;
                                if retries == 1 || retries.is_multiple_of(100) {
                                    eprintln!("pubsub-loadgen: {e}; retrying (retry {retries})");
                                }
                                tokio::time::sleep(pause).await;
                                poster = Poster::new(o.publish_addr.as_deref().unwrap_or(&o.addrs[0]));
                            }
                            None => {
                                shared.borrow_mut().error(e);
                                break 'publishing;
                            }
                        },
                    }
                }
                published.messages += 1;
            }
            // The last deliveries.
            let give_up = Instant::now() + Duration::from_secs_f64(o.drain);
            while o.read && Instant::now() < give_up {
                if shared.borrow().subs.iter().all(|s| s.next > last_seq) {
                    break;
                }
                wait_progress(&progress, Duration::from_millis(10)).await;
            }
        }
    }
    let end = match (&o.publish, o.read) {
        (Some(_), true) => shared.borrow().last_delivery.unwrap_or_else(Instant::now),
        _ => Instant::now(),
    };
    let elapsed = (end - t0).as_secs_f64().max(1e-9);
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let server_cpu_s = server0.zip(procstat::sum_over(&pids, procstat::cpu_seconds)).map(|(a, b)| b - a);
    let server_cpu = server_cpu_s.map_or("null".into(), |c| format!("{:.3}", c / wall));
    // CPU time per delivery moves less than deliveries/s when neighbours take the core.
    let cpu_per_delivery = {
        let d = shared.borrow().deliveries;
        server_cpu_s.filter(|_| d > 0).map_or("null".into(), |c| format!("{:.3}", c * 1e6 / d as f64))
    };
    let client_cpu = (procstat::cpu_seconds_self() - client0) / wall;
    let watched: Vec<String> = o
        .watch
        .iter()
        .zip(watch0)
        .map(|((name, pid), c0)| {
            let cpu = match (c0, procstat::cpu_seconds(*pid)) {
                (Some(a), Some(b)) => format!("{:.3}", (b - a) / wall),
                _ => "null".into(),
            };
            format!("\"{}\":{{\"cpu\":{cpu},\"rss_kib\":{}}}", name.replace('"', "'"), fmt_opt(procstat::rss_kib(*pid)))
        })
        .collect();
    let rss_peak = peak.as_ref().and_then(PeakRss::peak);
    drop(peak);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = procstat::sum_over(&pids, procstat::rss_kib);
    let ledgered = shared.borrow_mut().close_ledger(last_seq, o.publishers.unwrap_or(0));
    let sh = shared.borrow();
    let checked = o.read && o.publish.is_some();
    let lost: u64 = sh.subs.iter().map(|s| s.missing.len() as u64 + if checked { (last_seq + 1).saturating_sub(s.next.max(1)) } else { 0 }).sum();
    let (lost, ledger_fields) = ledgered.map_or((lost, String::new()), |(l, f)| (l, f));
    let h = &sh.hist;
    let per_conn = match (rss_before, rss_connected) {
        (Some(b), Some(c)) => format!("{:.2}", (c as f64 - b as f64) / n as f64),
        _ => "null".into(),
    };
    let counted = |v: u64| if o.read { v.to_string() } else { "null".into() };
    println!(
        "{{\"label\":\"{}\",\"mode\":\"{}\",\"format\":\"{}\",\"connections\":{n},\"size\":{},\"window\":{},\"rate\":{},\"quickack\":{},\
\"seconds\":{:.3},\"published\":{},\"publish_retries\":{retries},\"syncs\":{},\"deliveries\":{},\"deliveries_per_s\":{:.0},\
\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{},\
\"lost\":{},\"duplicated\":{},\"out_of_order\":{},\"bad\":{},\"errors\":{},\"first_error\":{},\
\"refused_full\":{},\"refused_closed\":{},\"pushed\":{},\
\"client_cpu\":{:.3},\"client_saturated\":{},\"server_cpu\":{server_cpu},\"server_cpu_us_per_delivery\":{cpu_per_delivery},\
\"server_rss_kib_before\":{},\"server_rss_kib_connected\":{},\"server_rss_kib_peak\":{},\"server_rss_kib_after\":{},\
\"rss_per_connection_kib\":{per_conn},\"watched\":{{{}}}{ledger_fields}}}",
        o.label.replace('"', "'"),
        if o.publish.is_some() { "publish" } else { "server" },
        match o.format { Format::Native => "native", Format::Raw => "raw", Format::Channel => "channel" },
        o.size,
        o.window,
        o.rate,
        o.quickack,
        elapsed,
        published.messages,
        published.syncs,
        sh.deliveries,
        sh.deliveries as f64 / elapsed,
        us(h.quantile(0.5)),
        us(h.quantile(0.9)),
        us(h.quantile(0.99)),
        us(h.quantile(0.999)),
        us(h.max()),
        us(h.mean()),
        counted(lost),
        counted(sh.duplicated),
        counted(sh.out_of_order),
        sh.bad,
        sh.errors,
        sh.first_error.as_ref().map_or("null".into(), |e| format!("{e:?}")),
        published.full,
        published.closed,
        published.sent,
        client_cpu,
        client_cpu >= 0.9,
        fmt_opt(rss_before),
        fmt_opt(rss_connected),
        fmt_opt(rss_peak),
        fmt_opt(rss_after),
        watched.join(","),
    );
    let broken = sh.errors + sh.bad + if o.read { lost + sh.duplicated + sh.out_of_order } else { 0 };
    i32::from(broken > 0 || (o.read && sh.deliveries == 0))
}

/// Entry point of `pubsub-loadgen subscribe ARGS...`.
pub fn main(args: impl Iterator<Item = String>) -> i32 {
    let o = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pubsub-loadgen subscribe: {e}");
            return 2;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_corruption() {
        let mut p = vec![0u8; 40];
        fill_payload(&mut p, 7);
        stamp(&mut p);
        let (seq, at) = check_payload(&p, 40).unwrap();
        assert_eq!(seq, 7);
        assert!(at > 0);
        assert!(check_payload(&p, 41).is_err());
        p[30] ^= 1;
        assert!(check_payload(&p, 40).unwrap_err().contains("byte 30"));
    }

    #[test]
    fn long_payloads_are_checked_in_spans() {
        for size in [16, 17, 1024, PADDING_SPAN + 15, 3 * PADDING_SPAN + 7, 60_000] {
            let mut p = vec![0u8; size];
            fill_payload(&mut p, 3);
            assert_eq!(check_payload(&p, size).unwrap().0, 3, "size {size}");
            for bad in [16, size / 2, size - 1] {
                if bad < 16 || bad >= size {
                    continue;
                }
                let mut q = p.clone();
                q[bad] ^= 0x20;
                assert_eq!(check_payload(&q, size).unwrap_err(), format!("payload byte {bad} corrupt"), "size {size}");
            }
        }
    }

    #[test]
    fn replies_are_read_in_place_as_the_full_decode_reads_them() {
        use apisix_pubsub_rs::proto::{ChannelMessage, ErrorResp, PongResp};
        let pong = |seq, state: &[u8]| PubSubResp { sequence: seq, resp: Some(pub_sub_resp::Resp::PongResp(PongResp { state: state.to_vec() })) }.encode_to_vec();
        let mut decoded = Vec::new();
        for (seq, state) in [(0, &b""[..]), (-1, b"x"), (1 << 40, &[7u8; 300][..])] {
            let frame = pong(seq, state);
            assert_eq!(nested_bytes(&frame, 32, 1), Some(state), "seq {seq}");
            assert_eq!(payload_of(Format::Native, &frame, &mut decoded).unwrap(), state);
        }
        let msg = PubSubResp {
            sequence: 9,
            resp: Some(pub_sub_resp::Resp::ChannelMessage(ChannelMessage { channel: "c".into(), id: "1-0".into(), data: b"payload".to_vec() })),
        }
        .encode_to_vec();
        assert_eq!(nested_bytes(&msg, 1004, 3), Some(&b"payload"[..]));
        assert_eq!(payload_of(Format::Channel, &msg, &mut decoded).unwrap(), b"payload");
        // Any other shape goes to the full decode, which names it.
        let err = PubSubResp { sequence: 1, resp: Some(pub_sub_resp::Resp::ErrorResp(ErrorResp { code: 1, message: "no".into() })) }.encode_to_vec();
        assert_eq!(nested_bytes(&err, 1004, 3), None);
        assert_eq!(payload_of(Format::Channel, &err, &mut decoded).unwrap_err(), "error_resp: no");
        assert_eq!(nested_bytes(&msg, 32, 1), None);
        assert!(payload_of(Format::Native, &msg, &mut decoded).is_err());
        let frame = pong(5, b"abc");
        for cut in 1..frame.len() {
            assert_eq!(nested_bytes(&frame[..cut], 32, 1), None, "cut at {cut}");
        }
        assert!(payload_of(Format::Native, &frame[..frame.len() - 1], &mut decoded).is_err());
    }

    fn shared(subs: usize) -> Shared {
        Shared {
            subs: (0..subs).map(|_| SubState::default()).collect(),
            remaining: vec![0; RING],
            measuring: true,
            ..Shared::default()
        }
    }

    #[test]
    fn order_loss_and_duplicates_are_counted() {
        let mut s = shared(1);
        assert!(s.deliver(0, 0, 0, 0, false)); // the first sync counts once
        assert!(!s.deliver(0, 0, 0, 0, false));
        for seq in [1, 2, 4, 3, 4, 6] {
            s.deliver(0, seq, 0, 0, false);
        }
        assert_eq!((s.out_of_order, s.duplicated), (1, 1));
        assert_eq!(s.subs[0].missing.iter().copied().collect::<Vec<_>>(), vec![5]);
        assert_eq!(s.deliveries, 5);
        s.deliver(0, 0, 0, 0, false); // a sync after real messages is out of order
        assert_eq!(s.out_of_order, 2);
    }

    #[test]
    fn closed_loop_completion() {
        let mut s = shared(2);
        s.remaining[1] = 2;
        assert!(!s.deliver(0, 1, 0, 0, true));
        assert!(s.deliver(1, 1, 0, 0, true));
    }
}
