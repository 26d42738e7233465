//! MQTT distributor against real Mosquitto brokers: the shared one on 127.0.0.1:1883 and
//! private ones this test starts and stops to simulate outages.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

use crate::helpers::*;

/// The broker `make test` makes sure is running.
pub(crate) const SHARED_BROKER: u16 = 1883;

#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) topic: String,
    qos: QoS,
    retain: bool,
    pub(crate) payload: Value,
}

/// Largest packet the test subscriber accepts (the server's own limit is 1 MiB).
const SUBSCRIBER_MAX_PACKET: usize = 4 << 20;

/// A real MQTT client subscribed to `filter`, collecting what arrives.
pub(crate) struct Subscriber {
    messages: Arc<Mutex<Vec<Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub(crate) async fn start(port: u16, filter: &str) -> Subscriber {
        let mut options = MqttOptions::new(
            format!("test-sub-{}", uuid::Uuid::new_v4()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        // rumqttc refuses packets over 10 KiB by default (and drops the connection, losing
        // what the broker queued meanwhile); `detections` events with frame_data are larger.
        options.set_max_packet_size(SUBSCRIBER_MAX_PACKET, SUBSCRIBER_MAX_PACKET);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client.subscribe(filter, QoS::ExactlyOnce).await.unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let sink = messages.clone();
        let filter = filter.to_string();
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push(Message {
                        topic: p.topic.clone(),
                        qos: p.qos,
                        retain: p.retain,
                        payload: serde_json::from_slice(&p.payload)
                            .unwrap_or(Value::String(String::from_utf8_lossy(&p.payload).into())),
                    }),
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // After a broker restart: subscribe again.
                        let _ = _client.try_subscribe(&filter, QoS::ExactlyOnce);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(DEADLINE, subscribed)
            .await
            .expect("SUBACK in time")
            .unwrap();
        Subscriber { messages, task }
    }

    fn all(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    pub(crate) fn events(&self) -> Vec<Message> {
        self.all()
            .into_iter()
            .filter(|m| !m.topic.ends_with("/status"))
            .collect()
    }

    async fn wait_events(&self, n: usize) -> Vec<Message> {
        wait_until(&format!("{n} MQTT messages"), DEADLINE, || async {
            let e = self.events();
            (e.len() >= n).then_some(e)
        })
        .await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private Mosquitto on its own port.
struct Broker {
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start_on(port: u16) -> Broker {
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (make test installs it)");
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            port,
            child: Some(child),
        }
    }

    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Sends the broker SIGSTOP (`true`: frozen, its sockets open and silent) or SIGCONT.
    fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running broker").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A frozen broker would not die of SIGKILL's cleanup waiting; thaw it first.
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.stop();
    }
}

async fn mqtt_delivered(app: &TestApp, session: &str, n: u64) -> Value {
    wait_until(&format!("{n} MQTT deliveries"), DEADLINE, || async {
        let d = app.distributor(session, "mqtt").await;
        (d["sent"].as_u64() >= Some(n)).then_some(d)
    })
    .await
}

#[tokio::test]
async fn events_reach_a_real_subscriber_with_topics_qos_and_order() {
    let app = spawn_app().await;
    let session = format!("mq-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let sub = Subscriber::start(SHARED_BROKER, &format!("+/{session}/#")).await;
    app.create_session(
        json!({"id": session, "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"), "qos": 1, "clientId": "lab",
        "topics": {"face_*": "lab/{session}/faces"}}}}),
    )
    .await;

    wait_until("the online status", DEADLINE, || async {
        sub.all()
            .iter()
            .any(|m| m.topic == format!("synopticon/{session}/status") && m.payload == "online")
            .then_some(())
    })
    .await;
    let events: Vec<Value> = (0..20).map(|i| json!({"event": if i % 5 == 0 { "face_detected" } else { "gaze" }, "data": {"i": i}})).collect();
    app.publish(&session, Value::Array(events)).await;
    let got = sub.wait_events(20).await;

    let seqs: Vec<u64> = got
        .iter()
        .map(|m| m.payload["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "in order");
    assert_eq!(got[0].topic, format!("lab/{session}/faces"));
    assert_eq!(got[1].topic, format!("synopticon/{session}/gaze"));
    assert!(got.iter().all(|m| m.qos == QoS::AtLeastOnce && !m.retain));
    assert_eq!(got[3].payload["data"], json!({"i": 3}));
    let d = mqtt_delivered(&app, &session, 20).await;
    assert_eq!(d["failed"], 0);

    // Disabling the distributor says goodbye on the status topic.
    app.delete(&format!("/api/v1/sessions/{session}/distributors/mqtt"))
        .await;
    wait_until("the offline status", DEADLINE, || async {
        sub.all()
            .iter()
            .any(|m| m.topic.ends_with("/status") && m.payload == "offline")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn qos2_and_retain_are_honoured() {
    let app = spawn_app().await;
    let session = format!("mq2-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    app.create_session(
        json!({"id": session, "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"), "qos": 2, "retain": true}}}),
    )
    .await;
    let live = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/temperature")).await;

    app.publish(&session, json!([{"event": "temperature", "data": {"c": 21}}, {"event": "temperature", "data": {"c": 22}}])).await;
    let got = live.wait_events(2).await;
    mqtt_delivered(&app, &session, 2).await;
    let late = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/temperature")).await;
    let retained = late.wait_events(1).await;

    assert!(got.iter().all(|m| m.qos == QoS::ExactlyOnce), "{got:?}");
    assert!(retained[0].retain);
    assert_eq!(
        retained[0].payload["data"],
        json!({"c": 22}),
        "the broker kept the last one"
    );
}

#[tokio::test]
async fn a_stopped_broker_opens_the_breaker_while_websocket_keeps_delivering_and_its_return_closes_it(
) {
    let app = spawn_app().await;
    let mut broker = Broker::start();
    let port = broker.port;
    app.create_session(json!({"id": "outage", "enabledDistributors": ["websocket", "mqtt"], "distributors": {"mqtt": {
        "broker": broker.url(), "breakerThreshold": 2, "breakerCooldownMs": 300, "reconnectDelayMs": 100, "ackTimeoutMs": 1000}}}))
        .await;
    let mut ws = app.ws("outage", "").await;
    let sub = Subscriber::start(port, "synopticon/outage/#").await;
    wait_until("the distributor to connect", DEADLINE, || async {
        sub.all()
            .iter()
            .any(|m| m.payload == "online")
            .then_some(())
    })
    .await;
    app.publish("outage", batch("before", 3)).await;
    sub.wait_events(3).await;
    ws.events(3).await;

    broker.stop();
    let started = std::time::Instant::now();
    app.publish("outage", batch("during", 20)).await;
    let during = ws.events(20).await;
    let ws_elapsed = started.elapsed();
    let open = wait_until("the breaker to open", DEADLINE, || async {
        let d = app.distributor("outage", "mqtt").await;
        (d["breaker"] == "open").then_some(d)
    })
    .await;
    eprintln!("WebSocket delivered 20 events in {ws_elapsed:?} with the MQTT broker down");

    let _broker = Broker::start_on(port);
    // A subscriber of the new broker, subscribed before the last events are posted (the
    // first one reconnects on its own time, and could miss them).
    let back = Subscriber::start(port, "synopticon/outage/#").await;
    app.publish("outage", batch("after", 2)).await;
    let recovered = wait_until(
        "the breaker to close and the queue to drain",
        DEADLINE,
        || async {
            let d = app.distributor("outage", "mqtt").await;
            (d["breaker"] == "closed" && d["queued"] == 0 && d["sent"].as_u64() > Some(3))
                .then_some(d)
        },
    )
    .await;

    assert_eq!(during.last().unwrap()["seq"], 23);
    assert!(
        open["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("MQTT broker"),
        "{open}"
    );
    let c = |k: &str| recovered[k].as_u64().unwrap();
    assert_eq!(c("routed"), 25);
    assert_eq!(
        c("sent") + c("unconfirmed") + c("failed") + c("dropped") + c("queued"),
        25,
        "every event accounted for: {recovered}"
    );
    // The drained queue may come in before them; the last posted event arrives last.
    let last = wait_until("the last event over MQTT", DEADLINE, || async {
        let e = back.events();
        e.iter().any(|m| m.payload["seq"] == 25).then_some(e)
    })
    .await;
    assert_eq!(
        last.last().map(|m| m.payload["seq"].clone()),
        Some(json!(25)),
        "delivery resumed to the end, in order"
    );
}

#[tokio::test]
async fn a_backup_broker_takes_over_when_the_primary_is_down() {
    let app = spawn_app().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let session = format!("backup-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let sub = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    app.create_session(json!({"id": session, "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{dead}"), "backupBrokers": [format!("mqtt://127.0.0.1:{SHARED_BROKER}")],
        "reconnectDelayMs": 50, "breakerThreshold": 1000}}}))
        .await;

    wait_until("the backup broker to connect", DEADLINE, || async {
        sub.all()
            .iter()
            .any(|m| m.payload == "online")
            .then_some(())
    })
    .await;
    app.publish(&session, batch("via_backup", 3)).await;
    let got = sub.wait_events(3).await;

    assert_eq!(
        got.iter()
            .map(|m| m.payload["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[tokio::test]
async fn reconfiguring_the_broker_switches_mid_session() {
    let app = spawn_app().await;
    let second = Broker::start();
    let session = format!("switch-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let first_sub = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    let second_sub = Subscriber::start(second.port, &format!("synopticon/{session}/#")).await;
    app.create_session(
        json!({"id": session, "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}")}}}),
    )
    .await;
    wait_until("online on the first broker", DEADLINE, || async {
        first_sub
            .all()
            .iter()
            .any(|m| m.payload == "online")
            .then_some(())
    })
    .await;
    app.publish(&session, batch("first", 2)).await;
    first_sub.wait_events(2).await;

    let changed = app
        .put(
            &format!("/api/v1/sessions/{session}/distributors/mqtt"),
            &json!({"broker": second.url()}),
        )
        .await;
    wait_until("online on the second broker", DEADLINE, || async {
        second_sub
            .all()
            .iter()
            .any(|m| m.payload == "online")
            .then_some(())
    })
    .await;
    app.publish(&session, batch("second", 2)).await;
    let got = second_sub.wait_events(2).await;

    assert_eq!(changed.body["action"], "reconfigured");
    assert_eq!(
        got.iter()
            .map(|m| m.payload["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4],
        "same session, numbering goes on"
    );
    assert_eq!(
        first_sub.events().len(),
        2,
        "nothing more went to the old broker"
    );
}

#[tokio::test]
async fn mqtt_settings_are_validated_at_once() {
    let app = spawn_app().await;

    let answer = app
        .post(
            "/api/v1/sessions/validate",
            &json!({"enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
            "qos": 3, "topic": "a/#", "backupBrokers": ["http://x"]}}}),
        )
        .await;

    let errors: Vec<String> = serde_json::from_value(answer.body["errors"].clone()).unwrap();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors
        .iter()
        .any(|e| e.contains("MQTT distributor requires broker URL")));
}

#[tokio::test]
async fn per_event_options_set_topic_qos_and_retain() {
    let app = spawn_app().await;
    let session = format!("opts-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let sub = Subscriber::start(SHARED_BROKER, &format!("lab/{session}/#")).await;
    app.create_session(json!({"id": session, "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"), "qos": 0, "topic": "lab/{session}/other",
        "topics": {"alarm": {"topic": "lab/{session}/alarms", "qos": 2, "retain": true}, "gaze_*": "lab/{session}/gaze"}}}}))
        .await;

    app.publish(&session, json!([{"event": "alarm", "data": {"level": 3}}, {"event": "gaze_sample"}, {"event": "misc"}])).await;
    let got = sub.wait_events(3).await;
    mqtt_delivered(&app, &session, 3).await;
    let late = Subscriber::start(SHARED_BROKER, &format!("lab/{session}/alarms")).await;
    let retained = late.wait_events(1).await;

    let by_topic = |suffix: &str| {
        got.iter()
            .find(|m| m.topic.ends_with(suffix))
            .cloned()
            .unwrap()
    };
    assert_eq!(by_topic("/alarms").qos, QoS::ExactlyOnce);
    assert_eq!(by_topic("/gaze").qos, QoS::AtMostOnce);
    assert_eq!(by_topic("/other").payload["event"], "misc");
    assert!(
        retained[0].retain && retained[0].payload["data"] == json!({"level": 3}),
        "{retained:?}"
    );
}

#[tokio::test]
async fn credentials_reach_a_broker_that_requires_them() {
    let dir = std::env::temp_dir().join(format!("synopticon-mqtt-auth-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let passwd = dir.join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["lab", "s3cret"])
        .status()
        .unwrap();
    assert!(status.success());
    // Mosquitto drops root privileges: its own user must be able to read the files.
    for path in [&dir, &passwd] {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
    )
    .unwrap();
    let _broker = Broker {
        port,
        child: Some(
            Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ),
    };
    wait_until("the broker to listen", DEADLINE, || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .await;
    let app = spawn_app().await;
    app.create_session(
        json!({"id": "authed", "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://lab:s3cret@127.0.0.1:{port}")}}}),
    )
    .await;
    app.create_session(json!({"id": "refused", "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{port}"), "username": "lab", "password": "wrong", "ackTimeoutMs": 500}}}))
        .await;

    app.publish("authed", batch("ok", 2)).await;
    app.publish("refused", batch("nope", 1)).await;
    let authed = mqtt_delivered(&app, "authed", 2).await;
    let refused = wait_until(
        "the refused connection to fail the event",
        DEADLINE,
        || async {
            let d = app.distributor("refused", "mqtt").await;
            (d["failed"] == 1).then_some(d)
        },
    )
    .await;
    let status = app.status("refused").await;

    assert_eq!(authed["failed"], 0);
    assert!(
        refused["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("MQTT broker"),
        "{refused}"
    );
    assert_eq!(
        status["config"]["distributors"]["mqtt"]["password"],
        "***redacted***"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn mqtts_verifies_the_broker_with_the_configured_ca_and_suffixes_the_client_id() {
    // Arrange: a test CA, a server certificate for 127.0.0.1, and a broker with a TLS
    // listener (for the distributor) and a plain one (for the test's subscriber).
    let dir = std::env::temp_dir().join(format!("synopticon-mqtts-{}", uuid::Uuid::new_v4()));
    test_certificates(&dir);
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (plain, tls) = (free(), free());
    let d = dir.display();
    std::fs::write(dir.join("mosquitto.conf"), format!(
        "per_listener_settings false\nallow_anonymous true\nlog_dest stderr\nlog_type all\n\
         listener {plain} 127.0.0.1\nlistener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    )).unwrap();
    let log = std::fs::File::create(dir.join("broker.log")).unwrap();
    let _broker = Broker {
        port: plain,
        child: Some(
            Command::new("mosquitto")
                .arg("-c")
                .arg(dir.join("mosquitto.conf"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ),
    };
    wait_until("the TLS listener", DEADLINE, || async {
        std::net::TcpStream::connect(("127.0.0.1", tls))
            .ok()
            .map(|_| ())
    })
    .await;
    let sub = Subscriber::start(plain, "synopticon/#").await;
    let app = spawn_app().await;

    // Act: one session trusts the test CA, one relies on the system roots.
    app.create_session(json!({"id": "tls-ok", "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtts://127.0.0.1:{tls}"), "caFile": dir.join("ca.pem"), "clientId": "lab"}}}))
        .await;
    app.create_session(
        json!({"id": "tls-untrusted", "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtts://127.0.0.1:{tls}"), "ackTimeoutMs": 1000}}}),
    )
    .await;
    app.publish("tls-ok", batch("secure", 2)).await;
    app.publish("tls-untrusted", batch("insecure", 1)).await;

    // Assert
    let got = sub.wait_events(2).await;
    assert!(
        got.iter().all(|m| m.topic == "synopticon/tls-ok/secure"),
        "{got:?}"
    );
    let untrusted = wait_until(
        "the untrusted connection to fail the event",
        DEADLINE,
        || async {
            let d = app.distributor("tls-untrusted", "mqtt").await;
            (d["failed"] == 1).then_some(d)
        },
    )
    .await;
    assert_eq!(untrusted["sent"], 0);
    let log = std::fs::read_to_string(dir.join("broker.log")).unwrap();
    assert!(
        log.contains(" as lab-tls-ok "),
        "the client id carries the session id:\n{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_broker_announces_offline_when_the_server_dies_without_a_goodbye() {
    let session = format!("will-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let status_topic = format!("synopticon/{session}/status");
    let sub = Subscriber::start(SHARED_BROKER, &status_topic).await;
    let mut server = ServerProcess::start(&format!(
        "[server]\nport = 0\n[[sessions.declared]]\nid = \"{session}\"\nenabledDistributors = [\"mqtt\"]\n\
         [sessions.declared.distributors.mqtt]\nbroker = \"mqtt://127.0.0.1:{SHARED_BROKER}\"\nkeepAliveSecs = 5\n"
    ));
    let statuses = |sub: &Subscriber| {
        sub.all()
            .iter()
            .filter(|m| m.topic == status_topic)
            .map(|m| m.payload.clone())
            .collect::<Vec<_>>()
    };
    wait_until("online", DEADLINE, || async {
        statuses(&sub).contains(&json!("online")).then_some(())
    })
    .await;

    server.child.kill().unwrap(); // SIGKILL: no goodbye from the distributor
    server.child.wait().unwrap();

    wait_until("the last will", DEADLINE, || async {
        (statuses(&sub).last() == Some(&json!("offline"))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_event_over_the_packet_limit_is_refused_and_counted_while_the_connection_stays() {
    let app = spawn_app().await;
    let session = format!("mq-big-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let sub = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    app.create_session(
        json!({"id": session, "enabledDistributors": ["mqtt"], "distributors": {"mqtt": {
        "broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"), "qos": 1, "maxPacketBytes": 2048}}}),
    )
    .await;

    let big = "x".repeat(5000);
    app.publish(
        &session,
        json!([{"event": "frame", "data": {"jpeg": big}}, {"event": "small", "data": {"n": 1}}]),
    )
    .await;

    let got = sub.wait_events(1).await;
    assert_eq!(
        got[0].topic,
        format!("synopticon/{session}/small"),
        "the small event still goes out"
    );
    let d = mqtt_delivered(&app, &session, 1).await;
    assert_eq!(d["failed"], 1, "{d}");
    assert!(
        d["last_error"].to_string().contains("maxPacketBytes 2048"),
        "{d}"
    );
    assert!(sub.events().iter().all(|m| !m.topic.ends_with("/frame")));
}

#[tokio::test]
async fn a_frozen_broker_opens_the_breaker_and_what_it_took_counts_as_unconfirmed() {
    let app = spawn_app().await;
    let broker = Broker::start();
    // A threshold the failures alone would take a minute to reach: the watchdog decides.
    app.create_session(
        json!({"id": "frozen", "enabledDistributors": ["websocket", "mqtt"],
        "distributors": {"mqtt": {"broker": broker.url(), "qos": 1, "maxInFlight": 4,
            "ackTimeoutMs": 1500, "stallTimeoutMs": 1000, "breakerThreshold": 1000,
            "breakerCooldownMs": 300}}}),
    )
    .await;
    let sub = Subscriber::start(broker.port, "synopticon/frozen/#").await;
    app.publish("frozen", batch("before", 3)).await;
    sub.wait_events(3).await;
    let mut ws = app.ws("frozen", "").await;

    broker.freeze(true);
    app.publish("frozen", batch("during", 20)).await;
    let live = ws.events(20).await;
    let stalled = wait_until("the watchdog to open the breaker", DEADLINE, || async {
        let d = app.distributor("frozen", "mqtt").await;
        (d["breaker"] == "open" && d["stalls"].as_u64() >= Some(1)).then_some(d)
    })
    .await;
    let health = app.get("/api/health").await.body;
    let metrics = app.metrics().await;
    // The publishes in flight when the broker froze time out: sent, never acknowledged.
    let unacknowledged = wait_until("the in-flight publishes to time out", DEADLINE, || async {
        let d = app.distributor("frozen", "mqtt").await;
        (d["unconfirmed"].as_u64() >= Some(1)).then_some(d)
    })
    .await;
    broker.freeze(false);
    let recovered = wait_until(
        "the breaker to close and the queue to drain",
        DEADLINE,
        || async {
            let d = app.distributor("frozen", "mqtt").await;
            (d["breaker"] == "closed" && d["queued"] == 0 && d["sent"].as_u64() >= Some(4))
                .then_some(d)
        },
    )
    .await;
    let received = wait_until(
        "every sent or unconfirmed event at the subscriber",
        DEADLINE,
        || async {
            let d = app.distributor("frozen", "mqtt").await;
            let c = |k: &str| d[k].as_u64().unwrap_or_default();
            // At rest: nothing queued, nothing in flight.
            let settled = c("sent") + c("unconfirmed") + c("failed") + c("dropped") == c("routed");
            let mut seqs: Vec<u64> = sub
                .events()
                .iter()
                .filter_map(|m| m.payload["seq"].as_u64())
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            (settled && seqs.len() as u64 >= c("sent") + c("unconfirmed")).then_some((seqs, d))
        },
    )
    .await;

    assert_eq!(
        live.last().unwrap()["seq"],
        23,
        "WebSocket never waited for the broker"
    );
    assert!(
        stalled["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{stalled}"
    );
    assert_eq!(
        health["components"]["sessions"]["status"], "degraded",
        "{health}"
    );
    let listed = health["components"]["sessions"]["unhealthy_distributors"].to_string();
    assert!(
        listed.contains("frozen") && listed.contains("mqtt"),
        "{health}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "synopticon_distributor_stalls_total{session=\"frozen\",distributor=\"mqtt\"}"
        ),
        Some(1.0)
    );
    assert_eq!(unacknowledged["failed"], 0, "{unacknowledged}");
    let (seqs, last) = received;
    let c = |k: &str| last[k].as_u64().unwrap();
    assert_eq!(
        c("sent") + c("unconfirmed") + c("failed") + c("dropped") + c("queued"),
        c("routed"),
        "{last}"
    );
    assert_eq!(c("routed"), 23);
    // Nothing was lost: the unconfirmed ones arrived too, so the books match the peer.
    assert_eq!(seqs, (1..=23).collect::<Vec<_>>(), "{recovered}");
    assert_eq!(c("sent") + c("unconfirmed"), 23, "{last}");
}
