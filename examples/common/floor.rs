//! The fan-out floor: a bare broadcast server with the same two paths as Synopticon
//! (`POST /api/v1/sessions/{id}/events`, `GET /api/v1/sessions/{id}/ws`) and nothing else:
//! no sessions, routing, queues of its own, accounting or auth. Each posted event is
//! serialized once and its bytes broadcast to every socket (a Tokio broadcast channel,
//! whose per-receiver lag is the only buffer). What a real server costs above this is
//! what the benchmark compares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_web_actors::ws;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

/// Frames a socket may lag behind before it loses the oldest (about Synopticon's
/// default client queue in bytes, for frames of 100 bytes).
const LAG: usize = 20_000;

struct Floor {
    tx: broadcast::Sender<Bytes>,
    seq: AtomicU64,
    /// Frames sockets lost by lagging.
    pub lost: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    event: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

async fn post(floor: web::Data<Floor>, body: web::Bytes) -> HttpResponse {
    let Ok(events) = serde_json::from_slice::<Vec<Incoming>>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for e in events {
        let seq = floor.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = format!(
            "{{\"session\":\"bench\",\"seq\":{seq},\"event\":{},\"ts\":\"{ts}\",\"data\":{}}}",
            serde_json::to_string(e.event).unwrap_or_default(),
            e.data.get()
        );
        let _ = floor.tx.send(Bytes::from(bytes));
    }
    HttpResponse::Accepted().finish()
}

struct Socket {
    rx: Option<broadcast::Receiver<Bytes>>,
    lost: Arc<AtomicU64>,
}

impl Actor for Socket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.rx.take() {
            let lost = self.lost.clone();
            let frames = futures_util::stream::unfold(rx, move |mut rx| {
                let lost = lost.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(bytes) => return Some((bytes, rx)),
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                lost.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            ctx.add_stream(frames);
        }
        ctx.text("{\"op\":\"hello\"}");
    }
}

impl StreamHandler<Bytes> for Socket {
    fn handle(&mut self, bytes: Bytes, ctx: &mut Self::Context) {
        if let Ok(text) = bytestring::ByteString::try_from(bytes) {
            ctx.text(text);
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Socket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(ws::Message::Ping(p)) => ctx.pong(&p),
            Ok(ws::Message::Close(_)) | Err(_) => ctx.stop(),
            _ => {}
        }
    }
}

async fn socket(
    floor: web::Data<Floor>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let s = Socket {
        rx: Some(floor.tx.subscribe()),
        lost: floor.lost.clone(),
    };
    ws::start(s, &req, stream)
}

/// Starts the floor on a free port with `workers` HTTP workers (0: one per core, like the
/// server's default); its port, and the count of frames its sockets lost.
pub fn start(workers: usize) -> (u16, Arc<AtomicU64>) {
    let lost = Arc::new(AtomicU64::new(0));
    let (tx_port, rx_port) = std::sync::mpsc::channel();
    let counted = lost.clone();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let (tx, _) = broadcast::channel(LAG);
            let floor = web::Data::new(Floor {
                tx,
                seq: AtomicU64::new(0),
                lost: counted,
            });
            let mut server = HttpServer::new(move || {
                App::new()
                    .app_data(floor.clone())
                    .app_data(web::PayloadConfig::default().limit(16 << 20))
                    .route("/api/v1/sessions/{id}/events", web::post().to(post))
                    .route("/api/v1/sessions/{id}/ws", web::get().to(socket))
            });
            if workers > 0 {
                server = server.workers(workers);
            }
            let server = server.bind(("127.0.0.1", 0)).expect("bind the floor");
            let port = server.addrs()[0].port();
            tx_port.send(port).expect("bench alive");
            server.run().await
        })
    });
    let port = rx_port
        .recv_timeout(Duration::from_secs(10))
        .expect("the floor starts");
    (port, lost)
}
