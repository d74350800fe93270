//! Approval channels: how humans hear about a request. A channel is told
//! only after the request is durably stored, so a decision made the moment
//! it arrives always finds the request (the original lost those).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::approval::ApprovalRequest;
use crate::decide::Verdict;
use crate::execution::ExecutionId;
use crate::governor::Governor;
use crate::json::Json;
use crate::principal::Principal;

/// What a channel is told about a new request (inputs already redacted).
#[derive(Debug, Clone)]
pub struct ApprovalNotice {
    /// The parked execution.
    pub execution_id: ExecutionId,
    /// The governed action.
    pub action: String,
    /// Who asked.
    pub requester: String,
    /// The call's arguments, redacted.
    pub inputs: Json,
    /// The stages and who may decide them.
    pub request: ApprovalRequest,
}

/// Delivers approval requests to people: a terminal, a chat, an inbox.
#[async_trait]
pub trait ApprovalChannel: Send + Sync + 'static {
    /// The channel's name, for logs.
    fn name(&self) -> &str;

    /// Tells someone about a new request. Runs in its own task; an error is
    /// logged and does not affect the request.
    async fn notify(&self, governor: &Governor, notice: &ApprovalNotice) -> Result<(), String>;
}

type Callback = dyn Fn(Governor, ApprovalNotice) -> crate::action::BoxFuture<'static, Result<(), String>>
    + Send
    + Sync;

/// A channel backed by an async closure (a webhook call, a ticket in your
/// tracker, a message to your own bot).
pub struct CallbackChannel {
    name: String,
    callback: Arc<Callback>,
}

impl CallbackChannel {
    /// A channel that runs `callback` for every request.
    pub fn new<F, Fut>(name: impl Into<String>, callback: F) -> Self
    where
        F: Fn(Governor, ApprovalNotice) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            callback: Arc::new(move |g, n| Box::pin(callback(g, n))),
        }
    }
}

#[async_trait]
impl ApprovalChannel for CallbackChannel {
    fn name(&self) -> &str {
        &self.name
    }
    async fn notify(&self, governor: &Governor, notice: &ApprovalNotice) -> Result<(), String> {
        (self.callback)(governor.clone(), notice.clone()).await
    }
}

type Reader = Box<dyn AsyncBufRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A terminal prompt: shows the action, the requester and the redacted
/// inputs, and reads `y`/`n` with an optional reason. Decisions are made as
/// `operator`, who must be one of the stage's approvers like anyone else.
pub struct CliChannel {
    operator: Principal,
    io: Mutex<(Reader, Writer)>,
}

impl CliChannel {
    /// A prompt on standard input and output.
    pub fn new(operator: Principal) -> Self {
        Self::with_io(
            operator,
            tokio::io::BufReader::new(tokio::io::stdin()),
            tokio::io::stdout(),
        )
    }

    /// A prompt on other streams (a socket, a test).
    pub fn with_io(
        operator: Principal,
        input: impl AsyncBufRead + Unpin + Send + 'static,
        output: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Self {
        Self {
            operator,
            io: Mutex::new((Box::new(input), Box::new(output))),
        }
    }
}

fn banner(n: &ApprovalNotice) -> String {
    let mut s = format!(
        "\n== approval requested ==\nexecution    {}\naction       {}\nrequested by {}\ninputs       {}\n",
        n.execution_id, n.action, n.requester, n.inputs
    );
    if let Some((i, stage)) = n.request.current_stage() {
        s.push_str(&format!(
            "stage        {} of {}: {} (approvers: {})\nwhy          {}\n",
            i + 1,
            n.request.stages.len(),
            stage.spec.policy,
            stage.spec.approvers.join(", "),
            stage.spec.reason
        ));
    }
    s.push_str("approve? y/n, then an optional reason: ");
    s
}

/// `y ok`, `yes`, `n too risky`, `no` → verdict and reason.
fn parse_answer(line: &str) -> Option<(Verdict, Option<String>)> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let verdict = match word.to_ascii_lowercase().as_str() {
        "y" | "yes" | "approve" => Verdict::Approve,
        "n" | "no" | "reject" => Verdict::Reject,
        _ => return None,
    };
    let reason = rest.trim();
    Some((verdict, (!reason.is_empty()).then(|| reason.to_owned())))
}

#[async_trait]
impl ApprovalChannel for CliChannel {
    fn name(&self) -> &str {
        "cli"
    }

    async fn notify(&self, governor: &Governor, notice: &ApprovalNotice) -> Result<(), String> {
        let mut io = self.io.lock().await;
        let (input, output) = &mut *io;
        let io_err = |e: std::io::Error| e.to_string();
        output
            .write_all(banner(notice).as_bytes())
            .await
            .map_err(io_err)?;
        output.flush().await.map_err(io_err)?;
        loop {
            let mut line = String::new();
            if input.read_line(&mut line).await.map_err(io_err)? == 0 {
                return Ok(()); // The terminal closed: the request stays open.
            }
            let Some((verdict, reason)) = parse_answer(&line) else {
                output
                    .write_all(b"please answer y or n: ")
                    .await
                    .map_err(io_err)?;
                output.flush().await.map_err(io_err)?;
                continue;
            };
            let outcome = match governor
                .decide(
                    notice.execution_id,
                    &self.operator,
                    verdict,
                    reason.as_deref(),
                )
                .await
            {
                Ok(e) => format!("recorded: execution {} is now {}\n", e.id, e.status),
                Err(e) => format!("not recorded: {e}\n"),
            };
            output.write_all(outcome.as_bytes()).await.map_err(io_err)?;
            output.flush().await.map_err(io_err)?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer("y looks fine\n"),
            Some((Verdict::Approve, Some("looks fine".into())))
        );
        assert_eq!(parse_answer("NO"), Some((Verdict::Reject, None)));
        assert_eq!(parse_answer("maybe"), None);
    }
}
