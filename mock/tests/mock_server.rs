//! Exercises the mock over raw HTTP/1.1 on std::net::TcpStream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use bulkhead_mock::{DownMode, Endpoint, Fault, MockServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal keep-alive HTTP/1.1 client.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(server: &MockServer) -> Client {
        let s = TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        Client {
            reader: BufReader::new(s),
        }
    }

    fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;

        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed without a response",
            ));
        }
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf)?;
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8(buf).unwrap(),
        })
    }

    fn form(&mut self, path: &str, data: &str) -> std::io::Result<Reply> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("data", data)
            .append_pair("verbose", "1")
            .append_pair("ip", "0")
            .finish();
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }

    fn import(&mut self, json: &str, auth: Option<&str>) -> std::io::Result<Reply> {
        let header;
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            header = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a)
            );
            headers.push(("Authorization", &header));
        }
        self.request("POST", "/import?strict=1", &headers, json.as_bytes())
    }
}

fn event(name: &str, insert_id: &str) -> Value {
    json!({"event": name, "properties": {"token": "tok", "distinct_id": "u1",
           "time": 1_700_000_000_000u64, "$insert_id": insert_id, "plan": "pro"}})
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn track_form_post_is_recorded_and_deduplicated() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let batch = json!([event("Signed up", "a1"), event("Signed up", "a2")]).to_string();
    let r = c.form("/track", &batch).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": 1, "error": null}));
    // Same connection (keep-alive), a retry of the first event.
    let r = c
        .form("/track", &event("Signed up", "a1").to_string())
        .unwrap();
    assert_eq!(r.json()["status"], 1);

    let s = server.stats();
    assert_eq!(s.requests, 2);
    assert_eq!(s.requests_by_endpoint.get(Endpoint::Track), 2);
    assert_eq!(s.events, 2);
    assert_eq!(s.duplicates, 1);
    let events = server.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["properties"]["$insert_id"], "a2");
    let reqs = server.requests();
    assert_eq!(reqs[0].records, 2);
    assert!(!reqs[0].data_base64);
    assert_eq!(
        reqs[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );

    // Invalid data: HTTP 200 with status 0, nothing recorded.
    let r = c
        .form("/track", r#"[{"event":"x","properties":{}}]"#)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], 0);
    assert_eq!(server.stats().rejected, 1);
    assert_eq!(server.stats().events, 2);

    // Without verbose: a bare 1.
    let body = format!(
        "data={}",
        form_urlencoded::byte_serialize(event("E", "b1").to_string().as_bytes())
            .collect::<String>()
    );
    let r = c.request("POST", "/track", &[], body.as_bytes()).unwrap();
    assert_eq!(r.body, "1");
    // Wrong method.
    assert_eq!(c.request("GET", "/track", &[], b"").unwrap().status, 405);
    assert!(server.wait_for_events(3, WAIT));
}

#[test]
fn base64_data_and_engage_groups() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let b64 = base64::engine::general_purpose::STANDARD.encode(event("B", "b1").to_string());
    let r = c.form("/track", &b64).unwrap();
    assert_eq!(r.json()["status"], 1, "{}", r.body);
    assert!(server.requests()[0].data_base64);
    assert_eq!(server.events()[0]["event"], "B");

    let upd = json!({"$token": "tok", "$distinct_id": "u1", "$set": {"a": 1}});
    let b64 = base64::engine::general_purpose::STANDARD.encode(upd.to_string());
    assert_eq!(c.form("/engage", &b64).unwrap().json()["status"], 1);
    let grp =
        json!([{"$token": "tok", "$group_key": "company", "$group_id": "acme", "$set": {"x": 1}}]);
    assert_eq!(
        c.form("/groups", &grp.to_string()).unwrap().json()["status"],
        1
    );
    let bad = json!([{"$token": "tok", "$group_key": "company"}]);
    assert_eq!(
        c.form("/groups", &bad.to_string()).unwrap().json()["status"],
        0
    );

    let s = server.stats();
    assert_eq!(s.updates, 2);
    assert_eq!(s.rejected, 1);
    assert_eq!(server.updates()[1]["$group_id"], "acme");
}

#[test]
fn gzip_bodies_are_decoded() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let form = format!(
        "data={}&verbose=1",
        form_urlencoded::byte_serialize(json!([event("G", "g1")]).to_string().as_bytes())
            .collect::<String>()
    );
    let r = c
        .request(
            "POST",
            "/track",
            &[("Content-Encoding", "gzip")],
            &gzip(form.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.json()["status"], 1, "{}", r.body);

    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("tok:")
    );
    let body = gzip(
        json!([event("H", "h1"), event("H", "h2")])
            .to_string()
            .as_bytes(),
    );
    let r = c
        .request(
            "POST",
            "/import?strict=1&project_id=7",
            &[
                ("Content-Encoding", "gzip"),
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &body,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"code": 200, "num_records_imported": 2, "status": "OK"})
    );
    let s = server.stats();
    assert_eq!(s.gzip_requests, 2);
    assert_eq!(s.events, 3);
    let rec = &server.requests()[1];
    assert_eq!(rec.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(rec.auth_username.as_deref(), Some("tok"));
    assert_eq!(rec.auth_password.as_deref(), Some(""));
    assert_eq!(rec.query, "strict=1&project_id=7");
}

#[test]
fn import_partial_success_and_auth() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let batch = json!([
        event("I", "i0"),
        {"event": "I", "properties": {"distinct_id": "u1", "$insert_id": "i1"}},
        event("I", "i2"),
        {"event": "I", "properties": {"time": 1, "distinct_id": "u1", "$insert_id": "i3", "secret": 1}},
    ])
    .to_string();

    let r = c.import(&batch, None).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["status"], "error");

    server.set_import_reject_property(Some("secret".into()));
    let r = c.import(&batch, Some("svc:pw")).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let j = r.json();
    assert_eq!(j["num_records_imported"], 2);
    let failed = j["failed_records"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["index"], 1);
    assert_eq!(failed[0]["$insert_id"], "i1");
    assert_eq!(failed[0]["field"], "properties.time");
    assert_eq!(failed[1]["index"], 3);

    let s = server.stats();
    assert_eq!(s.events, 2);
    assert_eq!(s.rejected, 2);
    let ids: Vec<_> = server
        .events()
        .iter()
        .map(|e| e["properties"]["$insert_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("i0"), json!("i2")]);
    assert_eq!(server.requests()[1].auth_password.as_deref(), Some("pw"));
}

#[test]
fn down_refuse_hang_and_up() {
    let server = MockServer::start();
    let data = event("D", "d1").to_string();

    server.set_down(DownMode::Refuse);
    let mut c = Client::connect(&server);
    assert!(
        c.form("/track", &data).is_err(),
        "refused request must fail"
    );
    // Control endpoints still answer while down.
    let mut c = Client::connect(&server);
    let r = c.request("GET", "/_mock/stats", &[], b"").unwrap();
    assert_eq!(r.json()["requests"], 1);

    server.set_down(DownMode::Hang);
    let mut c = Client::connect(&server);
    c.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        c.form("/track", &data).is_err(),
        "hung request must not be answered"
    );
    assert!(server.wait_until(WAIT, |s| s.hanging == 1));
    drop(c); // the client gives up: the held request is released
    assert!(server.wait_until(WAIT, |s| s.hanging == 0));

    server.set_down(DownMode::Up);
    let mut c = Client::connect(&server);
    assert_eq!(c.form("/track", &data).unwrap().json()["status"], 1);
    assert_eq!(server.stats().events, 1);
    assert_eq!(server.stats().requests, 3);

    // Dropping the server while a request is held must not block.
    server.set_down(DownMode::Hang);
    let mut held = Client::connect(&server);
    held.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(held.form("/track", &data).is_err());
    drop(server);
}

#[test]
fn scripted_faults_and_limits() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let data = event("F", "f1").to_string();

    server.push_fault(Fault::rate_limited(2));
    server.push_fault(Fault::Reject {
        error: "nope".into(),
    });
    server.push_fault_for(Endpoint::Import, Fault::status(503));
    let r = c.form("/track", &data).unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    let r = c.form("/track", &data).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": 0, "error": "nope"}));
    // The rejected record stays rejected (a bad record); others are accepted, and the
    // /import fault is skipped by /track requests.
    assert_eq!(c.form("/track", &data).unwrap().json()["status"], 0);
    let other = event("F", "f2").to_string();
    assert_eq!(c.form("/track", &other).unwrap().json()["status"], 1);
    assert_eq!(server.pending_faults(), 1);
    assert_eq!(c.import("[]", Some("tok")).unwrap().status, 503);
    assert_eq!(server.stats().faults_served, 3);
    assert_eq!(
        server.stats().rejected,
        2,
        "the scripted reject and its repeat"
    );

    server.push_fault(Fault::Drop);
    assert!(c.form("/track", &data).is_err());

    // Size limit on the decoded body.
    let mut c = Client::connect(&server);
    server.set_max_body_bytes(Some(100));
    let r = c.form("/track", &data).unwrap();
    assert_eq!(r.status, 413);
    server.set_max_body_bytes(None);

    // The same through the HTTP control surface.
    let r = c
        .request(
            "POST",
            "/_mock/fault?status=503&count=2&retry_after=1",
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    c.request("POST", "/_mock/fault?kind=reject&count=1", &[], b"")
        .unwrap();
    assert_eq!(c.form("/track", &data).unwrap().status, 503);
    assert_eq!(c.form("/track", &data).unwrap().status, 503);
    assert_eq!(c.form("/track", &data).unwrap().json()["status"], 0);
    c.request("POST", "/_mock/max_body_bytes?bytes=10", &[], b"")
        .unwrap();
    assert_eq!(c.form("/track", &data).unwrap().status, 413);
    c.request("POST", "/_mock/reset", &[], b"").unwrap();
    assert_eq!(server.stats().requests, 0);
    assert_eq!(c.form("/track", &data).unwrap().json()["status"], 1);
    let r = c.request("GET", "/_mock/events", &[], b"").unwrap();
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    c.request("POST", "/_mock/down?mode=refuse", &[], b"")
        .unwrap();
    assert_eq!(server.down_mode(), DownMode::Refuse);
    c.request("POST", "/_mock/up", &[], b"").unwrap();
    assert_eq!(server.down_mode(), DownMode::Up);
}

#[test]
fn no_store_keeps_counters_only() {
    let server = MockServer::start();
    server.set_store(false);
    let mut c = Client::connect(&server);
    let batch = json!([event("N", "n1"), event("N", "n1"), event("N", "n2")]).to_string();
    assert_eq!(c.form("/track", &batch).unwrap().json()["status"], 1);
    let s = server.stats();
    assert_eq!((s.events, s.duplicates), (2, 1));
    assert!(server.events().is_empty());
    assert!(server.requests().is_empty());
}

#[test]
fn hostile_faults_and_reject_property() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    server.push_fault(Fault::redirect());
    let r = c.form("/track", &event("R", "r1").to_string()).unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/_mock/landing"));
    let r = c.request("GET", "/_mock/landing", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<html>"));
    assert_eq!(server.stats().landing_hits, 1);

    // Answered before the body is read, then the connection is closed.
    let mut c = Client::connect(&server);
    server.push_fault(Fault::EarlyClose { status: 413 });
    let r = c.form("/track", &event("E", "e1").to_string()).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));

    let mut c = Client::connect(&server);
    server.push_fault(Fault::ResetMidBody);
    assert!(c.form("/track", &event("M", "m1").to_string()).is_err());

    // One record with the property refuses the whole batch, as status 0 or HTTP 400.
    let mut c = Client::connect(&server);
    let batch = json!([event("A", "a1"), {"event": "B", "properties": {"token": "tok",
        "distinct_id": "u", "$insert_id": "b1", "bad": true}}])
    .to_string();
    server.set_reject_property(Some("bad".into()), 200);
    assert_eq!(c.form("/track", &batch).unwrap().json()["status"], 0);
    server.set_reject_property(Some("bad".into()), 400);
    assert_eq!(c.form("/track", &batch).unwrap().status, 400);
    c.request("POST", "/_mock/reject_property", &[], b"")
        .unwrap();
    assert_eq!(c.form("/track", &batch).unwrap().json()["status"], 1);
    assert_eq!(server.stats().events, 2);
    let r = c
        .request("POST", "/_mock/fault?kind=redirect&status=307", &[], b"")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        c.form("/track", &event("C", "c1").to_string())
            .unwrap()
            .status,
        307
    );
}

#[test]
fn restart_kills_connections_and_keeps_port_and_store() {
    let server = MockServer::start();
    let addr = server.addr();
    let mut c = Client::connect(&server);
    assert_eq!(
        c.form("/track", &event("R", "r1").to_string())
            .unwrap()
            .json()["status"],
        1
    );
    // A request held open when the process dies gets no answer.
    server.set_down(DownMode::Hang);
    let mut held = Client::connect(&server);
    let server = std::thread::scope(|s| {
        let waiter = s.spawn(|| held.form("/track", &event("R", "r2").to_string()));
        assert!(server.wait_until(WAIT, |s| s.hanging == 1));
        let server = server.restart().expect("restart");
        assert!(
            waiter.join().unwrap().is_err(),
            "a killed request is not answered"
        );
        server
    });
    assert_eq!(server.addr(), addr, "same port");
    // The old keep-alive connection died with the process.
    assert!(c.form("/track", &event("R", "r3").to_string()).is_err());
    server.set_down(DownMode::Up);
    let mut c = Client::connect(&server);
    assert_eq!(
        c.form("/track", &event("R", "r1").to_string())
            .unwrap()
            .json()["status"],
        1
    );
    let s = server.stats();
    assert_eq!(
        (s.events, s.duplicates),
        (1, 1),
        "the store survived: {s:?}"
    );
}

#[test]
fn segment_batches_are_counted_as_events() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let msg = |id: &str| json!({"type": "track", "event": "E", "userId": "u1", "messageId": id});
    let body = json!({"batch": [msg("m1"), msg("m2")], "sentAt": "2026-01-01T00:00:00Z"});
    let r = c
        .request(
            "POST",
            "/v1/batch",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!((r.status, r.json()), (200, json!({})));
    // A gzip retry of m2 with a new m3: m2 is a duplicate.
    let body = json!({"batch": [msg("m2"), msg("m3")]}).to_string();
    let r = c
        .request(
            "POST",
            "/v1/batch",
            &[("Content-Encoding", "gzip")],
            &gzip(body.as_bytes()),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let s = server.stats();
    assert_eq!((s.events, s.duplicates, s.gzip_requests), (3, 1, 1));
    assert_eq!(s.requests_by_endpoint.get(Endpoint::Segment), 2);
    assert_eq!(server.events()[2]["messageId"], "m3");
    assert_eq!(server.requests()[0].records, 2);
    // Not a batch: 400, nothing counted.
    let r = c.request("POST", "/v1/batch", &[], b"[1]").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(server.stats().events, 3);
}

#[test]
fn posthog_batches_are_counted_and_obey_latency_and_down() {
    let server = MockServer::start();
    let mut c = Client::connect(&server);
    let with_uuid = json!({"event": "E", "distinct_id": "u1", "uuid": "p1"});
    let without = json!({"event": "E", "distinct_id": "u1"});
    let body = json!({"api_key": "k", "batch": [with_uuid, with_uuid, without, without]});
    server.set_latency(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    let r = c
        .request(
            "POST",
            "/batch/",
            &[("Content-Encoding", "gzip")],
            &gzip(body.to_string().as_bytes()),
        )
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "latency applies"
    );
    assert_eq!((r.status, r.json()), (200, json!({"status": 1})));
    // Deduplicated on uuid; messages without one always count.
    let s = server.stats();
    assert_eq!((s.events, s.duplicates), (3, 1));
    assert_eq!(s.requests_by_endpoint.get(Endpoint::Posthog), 1);

    server.set_latency(Duration::ZERO);
    server.set_down(DownMode::Refuse);
    let mut c = Client::connect(&server);
    assert!(c
        .request("POST", "/batch/", &[], body.to_string().as_bytes())
        .is_err());
    assert_eq!(server.stats().events, 3);
}
