//! Arbitrary bytes into `Datagram::decode` and the `peers` messages: no panic, and whatever
//! decodes survives a re-encode unchanged.
#![no_main]

use dht_wire::{Datagram, Message, PeersRequest, PeersResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PeersRequest::decode(data);
    let _ = PeersResponse::decode(data);
    if let Ok(d) = Datagram::decode(data) {
        let again = Datagram::decode(&d.encode()).expect("a re-encoded datagram decodes");
        assert_eq!(again, d);
        let value = match &d.message {
            Message::Request(r) => r.value.as_deref(),
            Message::Response(r) => r.value.as_deref(),
        };
        if let Some(v) = value {
            if let Ok(r) = PeersRequest::decode(v) {
                assert_eq!(PeersRequest::decode(&r.encode()).expect("re-encoded"), r);
            }
            if let Ok(r) = PeersResponse::decode(v) {
                assert_eq!(PeersResponse::decode(&r.encode()).expect("re-encoded"), r);
            }
        }
    }
});
