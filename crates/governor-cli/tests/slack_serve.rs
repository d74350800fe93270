//! `governor serve` with `[slack]`: requests are posted to a local server
//! implementing Slack's Web API methods, a signed click on the served
//! `/slack/interactions` decides, and the message is updated.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// The calls a fake Web API got, as (method, JSON body).
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// A Web API that answers every method as Slack documents it.
fn fake_slack() -> (String, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let method = path
                .trim_start_matches("/api/")
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = match method.as_str() {
                "chat.postMessage" => {
                    json!({"ok": true, "channel": args["channel"], "ts": format!("1700000000.{n:06}")})
                }
                "users.info" => {
                    json!({"ok": true, "user": {"id": "UCFO", "profile": {"email": "cfo@example.com"}}})
                }
                _ => json!({"ok": true}),
            };
            seen.lock().unwrap().push((method, args));
            let text = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (base, calls)
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(message.as_bytes())?;
            c.wait_with_output()
        })
        .expect("openssl computes the HMAC");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn wait_for(calls: &Mutex<Vec<(String, Value)>>, method: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Some((_, v)) = calls
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(m, _)| m == method)
        {
            return v.clone();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {method} call");
}

#[test]
fn serve_posts_to_slack_and_a_signed_click_decides() {
    let (api, calls) = fake_slack();
    let server = super::serve(
        &[("principal = \"agent\"", "agent-token")],
        &format!(
            "public_url = \"https://governor.example.com\"\n\
             [[actions]]\nname = \"wire\"\npolicies = \"wire.yaml\"\n\n\
             [slack]\nbot_token_file = \"slack.token\"\nsigning_secret_file = \"slack.secret\"\n\
             channel = \"C0APPROVALS\"\napi_base = \"{api}\"\n"
        ),
        &[
            ("slack.token", "xoxb-test\n"),
            ("slack.secret", &format!("{SECRET}\n")),
            (
                "wire.yaml",
                "policies:\n  - type: approval\n    name: Cfo\n    approvers: [cfo@example.com]\n",
            ),
        ],
    );
    let (status, body) = super::http_body(
        &server.addr,
        "POST",
        "/govern/executions",
        Some("agent-token"),
        r#"{"action": "wire", "arguments": {"amount": 5000}}"#,
    );
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let posted = wait_for(&calls, "chat.postMessage");
    assert_eq!(posted["channel"], "C0APPROVALS");
    let value = posted["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(value.starts_with(&id), "{value}");

    let payload = json!({
        "type": "block_actions", "user": {"id": "UCFO"}, "trigger_id": "1.2.3",
        "channel": {"id": "C0APPROVALS"},
        "actions": [{"action_id": "governor.approve", "value": value}],
    });
    let form = format!("payload={}", encode(&payload.to_string()));
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signature = hmac_hex(SECRET, &format!("v0:{at}:{form}"));
    let send = |sig: &str| {
        let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
        write!(
            stream,
            "POST /slack/interactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             X-Slack-Request-Timestamp: {at}\r\nX-Slack-Signature: v0={sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response[9..12].parse::<u16>().unwrap()
    };
    assert_eq!(send(&"0".repeat(64)), 401, "a forged signature");
    assert_eq!(send(&signature), 200);
    assert_eq!(send(&signature), 401, "a replay");
    let (_, shown) = super::http(
        &server.addr,
        "GET",
        &format!("/govern/executions/{id}"),
        Some("agent-token"),
    );
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["execution"]["status"], "approved", "{shown}");
    let updated = wait_for(&calls, "chat.update");
    assert!(
        updated["blocks"].to_string().contains("Approved"),
        "{updated}"
    );
}

/// Percent-encoding for a form value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
