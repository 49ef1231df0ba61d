//! `udp-echo`: the ceiling of any UDP server that makes two system calls per datagram: a
//! plain loop of one `recv_from` and one `send_to`, nothing else. Prints
//! `{"address":"127.0.0.1:PORT"}` once listening; stops by itself after `--secs`.
//!
//! ```sh
//! target/release/udp-echo --port 49738 --secs 60
//! ```

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use clap::Parser;

/// Echoes every datagram back to its sender, one recv_from and one send_to each.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// UDP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600)]
    secs: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let sock = UdpSocket::bind(("127.0.0.1", a.port))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    println!("{{\"address\":\"{}\"}}", sock.local_addr()?);
    let end = Instant::now() + Duration::from_secs(a.secs);
    let mut buf = [0u8; 2048];
    let mut n_since_check = 0u32;
    loop {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
            n_since_check += 1;
            if n_since_check < 4096 {
                continue;
            }
        }
        n_since_check = 0;
        if Instant::now() >= end {
            return Ok(());
        }
    }
}
