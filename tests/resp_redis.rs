//! The RESP codec against a real `redis-server`: commands encoded by `encode_command`, replies read
//! through `ReplyDecoder` in small reads, over a plain `TcpStream`. The server runs on a free port
//! with a temporary directory and is stopped by its pid. Skipped, saying so, when `redis-server`
//! is not installed (`make deps` installs it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apisix_pubsub_rs::resp::{
    encode_command, item, xrange_entries, xread_entries, Limits, Poll, Protocol, ReplyDecoder, RespError, StreamEntry,
};

struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Option<Redis> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].into_iter().find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            eprintln!("SKIPPED: redis-server is not installed (make deps installs Debian's redis-server)");
            return None;
        };
        // A free port, then a server on it. The tests run at once, each with its own server: a
        // port another test's server took first would leave this one exited and its test talking
        // to the other's (whose end then resets it). So the server that answers must be ours, by
        // its pid; else another port.
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = std::env::temp_dir().join(format!("resp-redis-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new(binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let mut redis = Redis { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if redis.child.try_wait().unwrap().is_some() {
                    break; // it exited: the port was taken
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let pid = redis.connect(Limits::default()).call(&[b"INFO", b"server"]).bytes;
                    let ours = format!("process_id:{}\r\n", redis.child.id());
                    if String::from_utf8_lossy(&pid).contains(&ours) {
                        return Some(redis);
                    }
                    break; // another test's server
                }
                assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no redis-server of this test's own after 20 ports");
    }

    fn connect(&self, limits: Limits) -> Conn {
        let sock = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn { sock, decoder: ReplyDecoder::new(limits, Protocol::Resp2), out: Vec::new() }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An entry copied out: (stream key, id, [(field, value)]).
type Entry = (Vec<u8>, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// A reply copied out of the decoder, enough for the checks below.
#[derive(Debug)]
struct Owned {
    kind: u32,
    int: i64,
    bytes: Vec<u8>,
    /// (key, id, [(field, value)]) when read as stream entries.
    entries: Result<Vec<Entry>, RespError>,
}

struct Conn {
    sock: TcpStream,
    decoder: ReplyDecoder,
    out: Vec<u8>,
}

impl Conn {
    fn send(&mut self, args: &[&[u8]]) {
        self.out.clear();
        encode_command(&mut self.out, args.iter().copied());
        self.sock.write_all(&self.out).unwrap();
    }

    /// Reads one reply, 7 bytes at a time so that replies arrive split at many places.
    fn reply(&mut self, xread: bool) -> Result<Owned, RespError> {
        let mut chunk = [0u8; 7];
        loop {
            match self.decoder.poll()? {
                Poll::Reply(r) => {
                    let mut list: Vec<StreamEntry> = vec![];
                    let found = if xread { xread_entries(&r, &mut list) } else { xrange_entries(&r, &mut list) };
                    let entries = found.map(|_| {
                        list.iter()
                            .map(|e| {
                                let pairs = (0..e.pairs).map(|i| e.pair(&r, i)).map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
                                (e.key.get(&r).to_vec(), e.id.get(&r).to_vec(), pairs)
                            })
                            .collect()
                    });
                    let top = r.items[0];
                    return Ok(Owned { kind: top.kind, int: top.int, bytes: r.bytes_of(&top).to_vec(), entries });
                }
                Poll::NeedMore(_) => {
                    let n = self.sock.read(&mut chunk).unwrap();
                    assert!(n > 0, "redis closed the connection");
                    self.decoder.feed(&chunk[..n]);
                }
            }
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Owned {
        self.send(args);
        self.reply(false).unwrap()
    }
}

#[test]
fn streams_through_a_real_redis() {
    let Some(redis) = Redis::start() else { return };
    let mut c = redis.connect(Limits::default());

    let pong = c.call(&[b"PING"]);
    assert_eq!((pong.kind, pong.bytes.as_slice()), (item::SIMPLE, &b"PONG"[..]));
    let id = c.call(&[b"CLIENT", b"ID"]);
    assert_eq!(id.kind, item::INTEGER);
    assert!(id.int > 0);
    let auth = c.call(&[b"AUTH", b"secret"]);
    assert_eq!(auth.kind, item::ERROR, "no password is configured: {:?}", String::from_utf8_lossy(&auth.bytes));
    assert!(auth.bytes.starts_with(b"ERR"));
    assert_eq!(c.call(&[b"SELECT", b"1"]).bytes, b"OK");

    // Payloads with CRLF, NUL, high bytes, and one larger than a read.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let payloads: Vec<Vec<u8>> = vec![b"hello".to_vec(), b"a\r\nb\0\xff".to_vec(), vec![], big];
    let mut ids = vec![];
    for p in &payloads {
        let r = c.call(&[b"XADD", b"ch:one", b"MAXLEN", b"~", b"1000", b"*", b"data", p]);
        assert_eq!(r.kind, item::BULK);
        ids.push(r.bytes);
    }
    assert_eq!(c.call(&[b"XADD", b"ch:two", b"*", b"data", b"other", b"x", b"y"]).kind, item::BULK);

    let all = c.call(&[b"XRANGE", b"ch:one", b"-", b"+"]).entries.unwrap();
    assert_eq!(all.len(), 4);
    for ((e, id), p) in all.iter().zip(&ids).zip(&payloads) {
        assert_eq!(&e.1, id);
        assert_eq!(e.2, vec![(b"data".to_vec(), p.clone())]);
    }
    // After an id, exclusive: what a subscriber resuming from ids[1] gets.
    let mut after = b"(".to_vec();
    after.extend_from_slice(&ids[1]);
    let rest = c.call(&[b"XRANGE", b"ch:one", &after, b"+"]).entries.unwrap();
    assert_eq!(rest.iter().map(|e| e.1.clone()).collect::<Vec<_>>(), ids[2..]);

    let xread = |c: &mut Conn, args: &[&[u8]]| {
        c.send(args);
        c.reply(true).unwrap().entries.unwrap()
    };
    let got = xread(&mut c, &[b"XREAD", b"COUNT", b"10", b"STREAMS", b"ch:one", b"ch:two", &ids[2], b"0"]);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0.as_slice(), &got[0].1), (&b"ch:one"[..], &ids[3]));
    assert_eq!(got[0].2[0].1, payloads[3]);
    assert_eq!(got[1].0, b"ch:two");
    assert_eq!(got[1].2, vec![(b"data".to_vec(), b"other".to_vec()), (b"x".to_vec(), b"y".to_vec())]);
    // Nothing new: a bounded BLOCK times out with nil.
    assert!(xread(&mut c, &[b"XREAD", b"BLOCK", b"50", b"STREAMS", b"ch:one", b"$"]).is_empty());

    // RESP3: HELLO 3's reply is a map; XREAD's too.
    c.decoder.set_protocol(Protocol::Resp3);
    let hello = c.call(&[b"HELLO", b"3"]);
    assert_eq!(hello.kind, item::MAP);
    let got = xread(&mut c, &[b"XREAD", b"STREAMS", b"ch:one", b"ch:two", &ids[2], b"0"]);
    assert_eq!(got.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), [b"ch:one".to_vec(), b"ch:two".to_vec()]);
    assert!(xread(&mut c, &[b"XREAD", b"BLOCK", b"50", b"STREAMS", b"ch:one", b"$"]).is_empty());
    assert_eq!(c.call(&[b"XADD", b"ch:one", b"*", b"data"]).kind, item::ERROR, "odd field count");
}

#[test]
fn client_unblock_wakes_a_blocked_xread() {
    let Some(redis) = Redis::start() else { return };
    let mut reader = redis.connect(Limits::default());
    let mut control = redis.connect(Limits::default());
    let id = reader.call(&[b"CLIENT", b"ID"]).int.to_string();
    reader.send(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"ch:idle", b"$"]);
    // Wait until the reader is blocked, then unblock it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = control.call(&[b"CLIENT", b"UNBLOCK", id.as_bytes()]);
        assert_eq!(r.kind, item::INTEGER);
        if r.int == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the reader never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let woke = reader.reply(true).unwrap();
    assert_eq!(woke.kind, item::NIL);
    assert_eq!(woke.entries.unwrap(), vec![]);
}

#[test]
fn a_reply_over_the_limit_is_an_error_not_an_allocation() {
    let Some(redis) = Redis::start() else { return };
    let mut c = redis.connect(Limits { max_reply_len: 64 << 10, max_elements: 1000 });
    let big = vec![b'x'; 100_000];
    assert_eq!(c.call(&[b"XADD", b"ch:big", b"*", b"data", &big]).kind, item::BULK);
    c.send(&[b"XRANGE", b"ch:big", b"-", b"+"]);
    assert_eq!(c.reply(false).unwrap_err(), RespError::ReplyTooLarge { max: 64 << 10 });
    assert!(c.decoder.capacity() < 64 << 10, "refused from the announced length: {}", c.decoder.capacity());
}
