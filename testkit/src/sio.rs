//! A minimal Socket.IO v4 client (Engine.IO v4 over a real WebSocket) for tests: it
//! sees exactly the frames a browser or phone would.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use alert_core::Event;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_tungstenite::tungstenite::Message;

use crate::WAIT;

type Acks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A minimal Socket.IO v4 client speaking Engine.IO v4 over a real WebSocket.
pub struct SioClient {
    events: mpsc::UnboundedReceiver<(String, Value)>,
    out: mpsc::UnboundedSender<String>,
    acks: Acks,
    next_ack: u64,
    _task: JoinHandle<()>,
}

impl SioClient {
    /// Connects to the default namespace with `auth`; `Err` carries a `connect_error`.
    pub async fn connect(addr: SocketAddr, auth: Value) -> Result<SioClient, Value> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let open = next_text(&mut ws).await;
        assert!(open.starts_with('0'), "engine.io open: {open}");
        ws.send(Message::text(format!("40{auth}"))).await.unwrap();
        let connected = loop {
            let text = next_text(&mut ws).await;
            if text == "2" {
                ws.send(Message::text("3")).await.unwrap();
                continue;
            }
            break text;
        };
        if let Some(error) = connected.strip_prefix("44") {
            return Err(serde_json::from_str(error).unwrap());
        }
        assert!(
            connected.starts_with("40"),
            "socket.io connect: {connected}"
        );
        let (events_tx, events) = mpsc::unbounded_channel();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let acks: Acks = Arc::default();
        let task_acks = acks.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    outgoing = out_rx.recv() => match outgoing {
                        Some(text) => if ws.send(Message::text(text)).await.is_err() { break },
                        None => { let _ = ws.close(None).await; break }
                    },
                    incoming = ws.next() => {
                        let Some(Ok(message)) = incoming else { break };
                        let Message::Text(text) = message else { continue };
                        let text = text.as_str();
                        if text == "2" {
                            let _ = ws.send(Message::text("3")).await;
                        } else if let Some(packet) = text.strip_prefix("42") {
                            let mut array: Vec<Value> = serde_json::from_str(packet).unwrap();
                            let name = array.remove(0).as_str().unwrap().to_owned();
                            let data = array.into_iter().next().unwrap_or(Value::Null);
                            let _ = events_tx.send((name, data));
                        } else if let Some(packet) = text.strip_prefix("43") {
                            let split = packet.find('[').unwrap();
                            let id: u64 = packet[..split].parse().unwrap();
                            let mut array: Vec<Value> = serde_json::from_str(&packet[split..]).unwrap();
                            if let Some(tx) = task_acks.lock().unwrap().remove(&id) {
                                let _ = tx.send(array.remove(0));
                            }
                        } else if text.starts_with("41") || text.starts_with('1') {
                            break;
                        }
                    }
                }
            }
            let _ = events_tx.send(("disconnect".to_owned(), Value::Null));
        });
        Ok(SioClient {
            events,
            out,
            acks,
            next_ack: 0,
            _task: task,
        })
    }

    /// The next event of any name, or `None` after `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event named `name`, skipping others; panics after [`WAIT`].
    pub async fn expect(&mut self, name: &str) -> Value {
        loop {
            match self.next_within(WAIT).await {
                Some((event, data)) if event == name => return data,
                Some(_) => continue,
                None => panic!("no {name:?} within {WAIT:?}"),
            }
        }
    }

    /// The next `n` `alert` events.
    pub async fn alerts(&mut self, n: usize) -> Vec<Event> {
        let mut alerts = Vec::new();
        while alerts.len() < n {
            let data = self.expect("alert").await;
            alerts.push(serde_json::from_value(data).unwrap());
        }
        alerts
    }

    /// Whatever `alert` events arrive within a short quiet period (to show absence
    /// after something that must arrive has arrived).
    pub async fn drain_alerts(&mut self) -> Vec<Event> {
        let mut alerts = Vec::new();
        while let Some((event, data)) = self.next_within(Duration::from_millis(300)).await {
            if event == "alert" {
                alerts.push(serde_json::from_value(data).unwrap());
            }
        }
        alerts
    }

    pub async fn emit_with_ack(&mut self, event: &str, data: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        self.out
            .send(format!("42{id}{}", json!([event, data])))
            .unwrap();
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("ack in time")
            .expect("ack")
    }
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("websocket message in time")
        {
            Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
            Some(Ok(_)) => continue,
            other => panic!("websocket closed: {other:?}"),
        }
    }
}
