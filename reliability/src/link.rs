//! A network link between a service and its broker or Redis: a TCP proxy whose
//! condition a scenario sets (healthy, slow, stalled, cut).

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Healthy,
    /// Every chunk waits this long in each direction.
    Latency(Duration),
    /// Connections stay open but nothing moves (a partition the kernel does not see).
    Stalled,
    /// Live connections are dropped and new ones refused.
    Cut,
}

pub struct Link {
    pub addr: SocketAddr,
    pub name: String,
    condition: watch::Sender<(Condition, u64)>,
}

impl Link {
    pub async fn start(name: String, target: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (condition, watched) = watch::channel((Condition::Healthy, 0));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watched = watched.clone();
                if watched.borrow().0 == Condition::Cut {
                    continue; // dropped at once: as good as refused
                }
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let cut = cut(watched.clone());
                    tokio::select! {
                        _ = pipe(client_read, server_write, watched.clone()) => {}
                        _ = pipe(server_read, client_write, watched) => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Ok(Link {
            addr,
            name,
            condition,
        })
    }

    pub fn set(&self, condition: Condition) {
        self.condition.send_modify(|(now, generation)| {
            *now = condition;
            *generation += 1;
        });
    }
}

/// Resolves when the link is cut (the connection then drops).
async fn cut(mut watched: watch::Receiver<(Condition, u64)>) {
    let _ = watched
        .wait_for(|(condition, _)| *condition == Condition::Cut)
        .await;
}

async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut watched: watch::Receiver<(Condition, u64)>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        loop {
            let condition = watched.borrow().0;
            match condition {
                Condition::Healthy => break,
                Condition::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Condition::Stalled => {
                    if watched.changed().await.is_err() {
                        return;
                    }
                }
                Condition::Cut => return,
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
