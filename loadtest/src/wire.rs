//! `wire`: the floor under any fan-out server on this machine. The same loopback
//! TCP connections and frame size as a fan-out run, but the server is a few plain
//! threads writing each pre-encoded frame straight to each socket: one `write` per
//! delivery, no WebSocket, no Socket.IO, no task per connection. Whatever notify
//! does, it cannot beat these deliveries/s and this latency on the same cores.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::{io::AsyncReadExt, time::Instant};

use crate::{
    cli::WireArgs,
    procfs,
    stats::{self, now_us},
};

/// Bytes at the head of every frame: the broadcast's sequence number and send time.
const HEADER: usize = 16;

/// One broadcast as every server thread sends it.
type Frame = Arc<[u8]>;

/// What a wire run measured (latencies are in the thread recorders).
pub(crate) struct WireRun {
    pub(crate) expected: u64,
    pub(crate) seconds: f64,
    pub(crate) cpu: serde_json::Value,
}

pub(crate) async fn run(args: &WireArgs, nofile: u64) -> anyhow::Result<WireRun> {
    let clients = args.clients as usize;
    if 2 * args.clients + 64 > nofile {
        bail!(
            "{clients} connections need {} open files here; fewer clients",
            2 * clients
        );
    }
    let frame_bytes = (args.bytes as usize).max(HEADER);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let accepting = thread::spawn(move || -> std::io::Result<Vec<TcpStream>> {
        (0..clients)
            .map(|_| {
                let (socket, _) = listener.accept()?;
                socket.set_nodelay(true)?;
                Ok(socket)
            })
            .collect()
    });
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        readers.push(tokio::spawn(read_frames(stream, frame_bytes)));
    }
    let sockets = accepting.join().expect("accept thread")?;

    // Each server thread owns a share of the sockets and writes every frame to it.
    let threads = args.server_threads.max(1) as usize;
    let mut shares: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, socket) in sockets.into_iter().enumerate() {
        shares[i % threads].push(socket);
    }
    let process_before = procfs::cpu_ticks(std::process::id()).unwrap_or(0);
    let mut senders = Vec::new();
    let mut servers = Vec::new();
    for mut share in shares {
        let (tx, rx) = mpsc::channel::<Frame>();
        senders.push(tx);
        servers.push(thread::spawn(move || -> anyhow::Result<u64> {
            let before = procfs::thread_cpu_ticks().unwrap_or(0);
            for frame in rx {
                for socket in &mut share {
                    socket.write_all(&frame).context("server write")?;
                }
            }
            Ok(procfs::thread_cpu_ticks().unwrap_or(0) - before)
        }));
    }

    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    for seq in 0..args.broadcasts {
        tokio::time::sleep_until(started + interval * seq as u32).await;
        let mut frame = vec![0u8; frame_bytes];
        frame[..8].copy_from_slice(&seq.to_le_bytes());
        frame[8..HEADER].copy_from_slice(&now_us().to_le_bytes());
        let frame: Frame = frame.into();
        for tx in &senders {
            tx.send(Arc::clone(&frame)).context("server thread ended")?;
        }
    }
    drop(senders);
    let mut server_ticks = 0;
    for server in servers {
        server_ticks += server.join().expect("server thread")?;
    }
    let expected = args.broadcasts * args.clients;
    let deadline = Instant::now() + Duration::from_secs(args.grace);
    while stats::unique_so_far() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let process_ticks = procfs::cpu_ticks(std::process::id()).unwrap_or(0) - process_before;
    for reader in readers {
        reader.abort();
    }
    let per_delivery_us = |ticks: u64| {
        ticks as f64 / procfs::TICKS_PER_SECOND * 1e6 / stats::unique_so_far().max(1) as f64
    };
    Ok(WireRun {
        expected,
        seconds,
        cpu: json!({
            "server_us_per_delivery": per_delivery_us(server_ticks),
            "client_us_per_delivery": per_delivery_us(process_ticks.saturating_sub(server_ticks)),
        }),
    })
}

/// Reads fixed-size frames and records each one's latency.
async fn read_frames(mut stream: tokio::net::TcpStream, frame_bytes: usize) {
    let mut buf = Vec::with_capacity(frame_bytes * 4);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let whole = buf.len() / frame_bytes * frame_bytes;
        let now = now_us();
        stats::with_local(|recorder| {
            for frame in buf[..whole].chunks_exact(frame_bytes) {
                let seq = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
                let sent = u64::from_le_bytes(frame[8..HEADER].try_into().expect("8 bytes"));
                recorder.record(seq, now.saturating_sub(sent), now);
            }
        });
        buf.drain(..whole);
        buf.reserve(frame_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_frame_reaches_every_connection_once() {
        let args = WireArgs {
            clients: 20,
            rate: 1000.0,
            broadcasts: 50,
            bytes: 100,
            server_threads: 3,
            grace: 30,
        };
        let too_few_files = run(&args, 90).await;
        assert!(too_few_files.is_err());
        let wired = run(&args, 1024).await.expect("wire run");
        assert_eq!(wired.expected, 1000);
        let recorder = stats::collect();
        assert_eq!(recorder.unique, 1000);
        assert_eq!(recorder.per_seq.len(), 50);
        assert!(recorder.per_seq.iter().all(|s| s.delivered == 20));
        assert!(wired.cpu["server_us_per_delivery"].is_number());
    }
}
