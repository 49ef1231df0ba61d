//! Probes that check what a NAT in the lab really does, from outside and inside.
//!
//! usage:
//!   lab-probe echo PORT SECS             answer each datagram with the sender's address, for SECS
//!   lab-probe client PORT T1 T2 SECS     from PORT, ask T1 and T2 how they see us; print
//!                                        {"mapped": [..]}; then listen SECS and print
//!                                        {"got": [senders of unsolicited datagrams]}
//!   lab-probe send PORT TARGET           send one datagram from PORT to TARGET

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn bind(port: &str) -> UdpSocket {
    UdpSocket::bind(format!("0.0.0.0:{port}")).expect("bind")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).expect("missing argument");
    let mut buf = [0u8; 1500];
    match arg(0) {
        "echo" => {
            let s = bind(arg(1));
            let until = Instant::now() + Duration::from_secs(arg(2).parse().expect("secs"));
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            while Instant::now() < until {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(from.to_string().as_bytes(), from);
                }
            }
        }
        "client" => {
            let s = bind(arg(1));
            s.set_read_timeout(Some(Duration::from_millis(1000)))
                .expect("timeout");
            let mut mapped = Vec::new();
            for t in [arg(2), arg(3)] {
                let to: SocketAddr = t.parse().expect("target");
                s.send_to(b"?", to).expect("send");
                match s.recv_from(&mut buf) {
                    Ok((n, _)) => mapped.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(_) => mapped.push("timeout".into()),
                }
            }
            println!("{}", serde_json::json!({"mapped": mapped}));
            let until = Instant::now() + Duration::from_secs(arg(4).parse().expect("secs"));
            let mut got = Vec::new();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            while Instant::now() < until {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    got.push(from.to_string());
                }
            }
            println!("{}", serde_json::json!({"got": got}));
        }
        "send" => {
            let s = bind(arg(1));
            let to: SocketAddr = arg(2).parse().expect("target");
            s.send_to(b"unsolicited", to).expect("send");
        }
        other => panic!("unknown mode {other}"),
    }
}
