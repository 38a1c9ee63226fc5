//! Bridges between the dynamic codec and the prost types, for the integration tests.
#![allow(dead_code)]

use apisix_pubsub_rs::message::{op, Op, ReplyEncoder, Request};
use apisix_pubsub_rs::proto::{self, pub_sub_req::Req, pub_sub_resp::Resp};
use apisix_pubsub_rs::schema::Schema;

fn int(op: &Op, text: &[u8]) -> i64 {
    if op.code & !op::REPEATED == op::TEXT {
        std::str::from_utf8(&text[op.offset + 1..op.offset + op.len]).unwrap().parse().unwrap()
    } else {
        op.num as i64
    }
}

/// Rebuilds the prost request from what the dynamic decoder produced (as the Lua side would).
pub fn request_to_prost(r: &Request<'_>, payload: &[u8]) -> proto::PubSubReq {
    let mut topic = String::new();
    let mut state = Vec::new();
    let (mut partition, mut num) = (0i32, 0i64);
    for op in r.ops {
        match Schema::builtin_ref().field_name(op.field as u16) {
            "state" => state = payload[op.offset..op.offset + op.len].to_vec(),
            "topic" => topic = String::from_utf8(payload[op.offset..op.offset + op.len].to_vec()).unwrap(),
            "partition" => partition = op.num as i32,
            "offset" | "timestamp" => num = int(op, r.text),
            other => panic!("unexpected field {other}"),
        }
    }
    let req = r.command.map(|c| match Schema::builtin_ref().field_name(c.id) {
        "cmd_empty" => Req::CmdEmpty(proto::CmdEmpty {}),
        "cmd_ping" => Req::CmdPing(proto::CmdPing { state }),
        "cmd_kafka_fetch" => Req::CmdKafkaFetch(proto::CmdKafkaFetch { topic, partition, offset: num }),
        "cmd_kafka_list_offset" => Req::CmdKafkaListOffset(proto::CmdKafkaListOffset { topic, partition, timestamp: num }),
        other => panic!("unexpected command {other}"),
    });
    proto::PubSubReq { sequence: r.sequence, req }
}

fn id(msg: &str, field: &str) -> u32 {
    let s = Schema::builtin_ref();
    u32::from(s.field_by_name(s.message_by_name(msg).unwrap(), field).unwrap().id)
}

/// Encodes a prost response through the dynamic encoder, the way the Lua side walks a reply.
pub fn encode_with_ours(resp: &proto::PubSubResp) -> Vec<u8> {
    let mut e = ReplyEncoder::new(Schema::builtin());
    e.begin(resp.sequence);
    match resp.resp.as_ref().expect("a reply") {
        Resp::ErrorResp(x) => {
            e.open(id("PubSubResp", "error_resp")).unwrap();
            e.put_int(id("ErrorResp", "code"), i64::from(x.code)).unwrap();
            e.put_bytes(id("ErrorResp", "message"), x.message.as_bytes()).unwrap();
        }
        Resp::PongResp(x) => {
            e.open(id("PubSubResp", "pong_resp")).unwrap();
            e.put_bytes(id("PongResp", "state"), &x.state).unwrap();
        }
        Resp::KafkaFetchResp(x) => {
            e.open(id("PubSubResp", "kafka_fetch_resp")).unwrap();
            for m in &x.messages {
                e.open(id("KafkaFetchResp", "messages")).unwrap();
                e.put_int(id("KafkaMessage", "offset"), m.offset).unwrap();
                e.put_int(id("KafkaMessage", "timestamp"), m.timestamp).unwrap();
                e.put_bytes(id("KafkaMessage", "key"), &m.key).unwrap();
                e.put_bytes(id("KafkaMessage", "value"), &m.value).unwrap();
                e.close().unwrap();
            }
        }
        Resp::KafkaListOffsetResp(x) => {
            e.open(id("PubSubResp", "kafka_list_offset_resp")).unwrap();
            e.put_int(id("KafkaListOffsetResp", "offset"), x.offset).unwrap();
        }
        // The channels' replies: strings and bytes, field by field.
        Resp::SubscribeResp(x) => {
            e.open(id("PubSubResp", "subscribe_resp")).unwrap();
            e.put_bytes(id("SubscribeResp", "channel"), x.channel.as_bytes()).unwrap();
            e.put_bytes(id("SubscribeResp", "last_id"), x.last_id.as_bytes()).unwrap();
        }
        Resp::UnsubscribeResp(x) => {
            e.open(id("PubSubResp", "unsubscribe_resp")).unwrap();
            e.put_bytes(id("UnsubscribeResp", "channel"), x.channel.as_bytes()).unwrap();
        }
        Resp::PublishResp(x) => {
            e.open(id("PubSubResp", "publish_resp")).unwrap();
            e.put_bytes(id("PublishResp", "channel"), x.channel.as_bytes()).unwrap();
            e.put_bytes(id("PublishResp", "id"), x.id.as_bytes()).unwrap();
        }
        Resp::ChannelMessage(x) => {
            e.open(id("PubSubResp", "channel_message")).unwrap();
            e.put_bytes(id("ChannelMessage", "channel"), x.channel.as_bytes()).unwrap();
            e.put_bytes(id("ChannelMessage", "id"), x.id.as_bytes()).unwrap();
            e.put_bytes(id("ChannelMessage", "data"), &x.data).unwrap();
        }
    }
    e.close().unwrap();
    e.finish().unwrap().to_vec()
}
