//! The session's samples into the worker's figures ([`metrics::WORKER`]), event by event. One
//! test in a binary of its own: nothing else in this process moves the figures meanwhile.

use apisix_pubsub_rs::frame::client_frame;
use apisix_pubsub_rs::metrics::{self, message_type, slot, WORKER};
use apisix_pubsub_rs::proto;
use apisix_pubsub_rs::schema::Schema;
use apisix_pubsub_rs::session::{Options, Session, Step};
use prost::Message as _;

const M: [u8; 4] = [7, 7, 7, 7];

fn ping(seq: i64) -> Vec<u8> {
    let req = proto::PubSubReq { sequence: seq, req: Some(proto::pub_sub_req::Req::CmdPing(proto::CmdPing { state: b"s".to_vec() })) };
    client_frame(true, 2, &req.encode_to_vec(), M)
}

#[test]
fn each_event_moves_its_figure_by_one() {
    if !metrics::ENABLED {
        return;
    }
    let before = WORKER.snapshot();
    let moved = |i: usize| WORKER.snapshot().get(i).wrapping_sub(before.get(i));
    let mut s = Session::new(Schema::builtin(), Options { max_queue_bytes: Some(200), ..Options::default() });
    s.set_echo_ping(true);
    let mut input = ping(1);
    input.extend(client_frame(true, 9, b"p", M));
    input.extend(client_frame(true, 2, &[0x08], M));
    assert_eq!(s.feed(&input), 0);
    assert!(matches!(s.step(), Step::Undecodable(_)));
    assert!(matches!(s.step(), Step::NeedMore));
    let ping_number = Schema::builtin().field(u32::from(Schema::builtin().known().ping)).unwrap().number;
    assert_eq!(moved(slot::BYTES_IN), input.len() as u64);
    assert_eq!(moved(slot::COMMANDS + ping_number as usize), 1);
    assert_eq!(moved(slot::REPLIES), 2, "the pong made here and `wrong command`");
    assert_eq!(moved(slot::RECEIVED + message_type::BINARY), 2);
    assert_eq!(moved(slot::RECEIVED + message_type::PING), 1);
    assert_eq!(moved(slot::PONGS_OUT), 1);
    assert_eq!(moved(slot::ERROR_REPLIES + metrics::error_kind::UNDECODABLE), 1);
    assert!(WORKER.snapshot().get(slot::QUEUE_HIGH_WATER) >= s.pending() as u64);

    // A command handed out is timed until its reply.
    s.set_echo_ping(false);
    s.feed(&ping(2));
    assert!(matches!(s.step(), Step::Command { .. }));
    s.reply_error(b"no");
    let timed: u64 = (0..=metrics::HANDLER_BUCKETS_US.len()).map(|b| moved(slot::HANDLER + ping_number as usize * (metrics::HANDLER_BUCKETS_US.len() + 2) + b)).sum();
    assert_eq!(timed, 1);

    // Pushes: sent once written, refused when full or closed.
    let queued = s.pending();
    s.push_message(&[0x08, 0x01], None).unwrap();
    while s.push_message(&[b'x'; 60], None).is_ok() {}
    assert_eq!(moved(slot::PUSHES_FULL), 1);
    let all = s.pending();
    s.consume(all);
    s.written(all);
    assert!(moved(slot::PUSHES_SENT) >= 2);
    assert_eq!(moved(slot::BYTES_OUT), all as u64);
    assert!(all > queued);
    s.close(1000, "");
    assert!(s.push_message(b"", None).is_err());
    assert_eq!(moved(slot::PUSHES_CLOSED), 1);
}
