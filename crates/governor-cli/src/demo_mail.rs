//! The demo's own SMTP server: `governor demo --serve` emails approvers
//! through it (unless `--smtp` names a real one), saves each email as an
//! `.eml` file and prints its approve and reject links, so a newcomer can
//! open the emailed link and decide from it.
//!
//! It speaks just enough SMTP for a client that sends mail (EHLO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT), on loopback only. It is a sink for the
//! demo, not a mail server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Starts the sink on an ephemeral loopback port, saving mail in `dir`.
pub(crate) async fn start(dir: PathBuf) -> anyhow::Result<SocketAddr> {
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo's mail folder {}", dir.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut count = 0u64;
        while let Ok((stream, _)) = listener.accept().await {
            let dir = dir.clone();
            count += 1;
            let first = count * 10_000;
            tokio::spawn(async move {
                if let Err(e) = session(stream, &dir, first).await {
                    tracing::debug!("demo mail session: {e}");
                }
            });
        }
    });
    Ok(addr)
}

/// One SMTP session: every message it carries is saved and announced.
async fn session(
    stream: tokio::net::TcpStream,
    dir: &std::path::Path,
    first: u64,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 governor-demo ESMTP sink\r\n").await?;
    let mut to = Vec::new();
    let mut n = first;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-governor-demo\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 governor-demo\r\n",
            "MAIL" => {
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                if let Some(addr) = line.split(['<', '>']).nth(1) {
                    to.push(addr.to_owned());
                }
                b"250 OK\r\n"
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut message = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    message.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                n += 1;
                keep(dir, n, &to, &message);
                b"250 OK: kept\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "RSET" | "NOOP" => b"250 OK\r\n",
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Saves one message and prints where it went and its links.
fn keep(dir: &std::path::Path, n: u64, to: &[String], message: &str) {
    let path = dir.join(format!("{n}.eml"));
    if let Err(e) = std::fs::write(&path, message) {
        tracing::warn!("cannot save a demo email: {e}");
    }
    let links = links(message);
    let to = to.join(", ");
    match links.as_slice() {
        [] => out!("email to {to} saved in {}", path.display()),
        found => {
            out!("email to {to} (saved in {}):", path.display());
            for (label, url) in found {
                out!("  {label} {url}");
            }
        }
    }
}

/// The labelled links of the plain-text part (`Approve:`, `Reject:`,
/// `Sign in to decide:`), undoing quoted-printable's soft line breaks.
fn links(message: &str) -> Vec<(String, String)> {
    let text = message
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let mut found = Vec::new();
    for line in text.lines() {
        for label in ["Approve:", "Reject:", "Sign in to decide:"] {
            if let Some(url) = line.strip_prefix(label) {
                let url = url.trim();
                if url.starts_with("http") && !found.iter().any(|(_, u)| u == url) {
                    found.push((label.to_owned(), url.to_owned()));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_are_found_through_soft_line_breaks() {
        let message = "Subject: x\r\n\r\nApprove: http://127.0.0.1:8080/links/gl1.abc=\r\ndef.tag\r\nReject:  http://127.0.0.1:8080/links/gl1.xyz\r\n";
        assert_eq!(
            super::links(message),
            vec![
                (
                    "Approve:".to_owned(),
                    "http://127.0.0.1:8080/links/gl1.abcdef.tag".to_owned()
                ),
                (
                    "Reject:".to_owned(),
                    "http://127.0.0.1:8080/links/gl1.xyz".to_owned()
                ),
            ]
        );
    }
}
