//! [`GovernLayer`]: governs the axum routes it wraps. Each request is a
//! call of the action `"<METHOD> <route>"`, made by the request's
//! principal, with its path parameters, query and JSON body as arguments.
//! Allowed requests reach the handler and their status is recorded;
//! denied ones get a problem document; ones that need approval get
//! `202 Accepted` with `execution_id` and `poll_url` (the seed's FastAPI
//! behaviour). Once approved, the client sends the same request again
//! with `Governor-Execution: <id>` and it runs, exactly as approved.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use governor_core::{
    Action, Admitted, Args, Call, ExecutionId, GovernError, Governor, Policy, Principal,
};
use serde_json::{Map, Value, json};

use crate::auth::ApiKeys;
use crate::problem::Problem;

/// The header that carries an approved execution's id on the retry.
pub const EXECUTION_HEADER: &str = "governor-execution";

/// Bodies larger than this are refused (413) before any policy runs.
const MAX_BODY: usize = 1 << 20;

/// Governs every request of the routes it wraps (use it with
/// `Router::route_layer`, so the matched route names the action).
#[derive(Clone)]
pub struct GovernLayer {
    config: Arc<Config>,
}

struct Config {
    governor: Governor,
    keys: Option<ApiKeys>,
    policies: Vec<Arc<dyn Policy>>,
    name: Option<String>,
    /// One action per route, built on first use (rate limits keep state).
    actions: Mutex<HashMap<String, Action>>,
}

impl std::fmt::Debug for GovernLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernLayer")
            .field("policies", &self.config.policies.len())
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl GovernLayer {
    /// Governs with `governor` and no policies yet. The principal is the
    /// [`Principal`] (or `Arc<Principal>`) the app's own authentication
    /// put in the request's extensions, unless
    /// [`authenticate_with`](Self::authenticate_with) is used.
    pub fn new(governor: Governor) -> Self {
        Self {
            config: Arc::new(Config {
                governor,
                keys: None,
                policies: Vec::new(),
                name: None,
                actions: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        if let Some(config) = Arc::get_mut(&mut self.config) {
            f(config);
        } else {
            // Cloned before configuring: configure a fresh copy.
            let c = &self.config;
            let mut fresh = Config {
                governor: c.governor.clone(),
                keys: c.keys.clone(),
                policies: c.policies.clone(),
                name: c.name.clone(),
                actions: Mutex::new(HashMap::new()),
            };
            f(&mut fresh);
            self.config = Arc::new(fresh);
        }
        self
    }

    /// Authenticates requests by bearer token against `keys`.
    pub fn authenticate_with(self, keys: ApiKeys) -> Self {
        self.edit(|c| c.keys = Some(keys))
    }

    /// Adds a policy evaluated for every governed request.
    pub fn policy(self, policy: impl Policy) -> Self {
        self.edit(|c| c.policies.push(Arc::new(policy)))
    }

    /// Names the action instead of `"<METHOD> <route>"`.
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|c| c.name = Some(name))
    }
}

impl<S> tower::Layer<S> for GovernLayer {
    type Service = Govern<S>;

    fn layer(&self, inner: S) -> Govern<S> {
        Govern {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`GovernLayer`] wraps a route in.
#[derive(Clone)]
pub struct Govern<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> std::fmt::Debug for Govern<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Govern").finish_non_exhaustive()
    }
}

impl<S> tower::Service<Request> for Govern<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            Ok(govern(&config, inner, req)
                .await
                .unwrap_or_else(IntoResponse::into_response))
        })
    }
}

/// A request taken apart for governing.
struct Governed {
    parts: Parts,
    body: axum::body::Bytes,
    principal: Principal,
    action: String,
    arguments: Value,
}

async fn govern<S>(config: &Config, inner: S, req: Request) -> Result<Response, Problem>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send,
    S::Future: Send,
{
    let g = take_apart(config, req).await?;
    let action = config.action(&g.action)?;
    let retry = g
        .parts
        .headers
        .get(EXECUTION_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.parse::<ExecutionId>().ok())
                .ok_or_else(|| {
                    Problem::bad_request(format!("`{EXECUTION_HEADER}` is not an execution id"))
                })
        })
        .transpose()?;
    let admitted = match retry {
        Some(id) => approved(config, &g, id).await?,
        None => {
            let args = object_args(&g.arguments);
            match action
                .admit(Call::new(args).principal(g.principal.clone()))
                .await
            {
                Ok(a) => a,
                Err(GovernError::Pending { execution_id }) => return Ok(accepted(execution_id)),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let req = Request::from_parts(g.parts, Body::from(g.body));
    let response = call(inner, req).await;
    let status = response.status().as_u16();
    let execution = config
        .governor
        .complete_external(admitted.execution_id, Ok(json!({ "status": status })))
        .await?;
    if let Some(failure) = execution.failure {
        // A post-execution policy refused the outcome: the handler ran,
        // but the caller is told it was not allowed.
        return Err(
            Problem::new(StatusCode::FORBIDDEN, "denied", failure.message)
                .with("execution_id", execution.id.to_string()),
        );
    }
    Ok(response)
}

async fn call<S>(mut inner: S, req: Request) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    match inner.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Starts an approved execution after checking that this request is the
/// one that was approved, by the same principal.
async fn approved(config: &Config, g: &Governed, id: ExecutionId) -> Result<Admitted, Problem> {
    let execution = config
        .governor
        .execution(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("execution {id} does not exist")))?;
    if execution.principal.id != g.principal.id || *execution.action != *g.action {
        return Err(Problem::forbidden(format!(
            "execution {id} is not a `{}` request of `{}`",
            g.action, g.principal.id
        )));
    }
    if execution.arguments_to_run().value() != g.arguments {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "not-what-was-approved",
            format!("this request differs from the one approved as execution {id}"),
        ));
    }
    Ok(config.governor.start_external(id).await?)
}

fn accepted(id: ExecutionId) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "execution_id": id,
            "status": "awaiting_approval",
            "poll_url": format!("/govern/executions/{id}"),
            "retry_with_header": EXECUTION_HEADER,
        })),
    )
        .into_response()
}

fn object_args(arguments: &Value) -> Args {
    arguments
        .as_object()
        .into_iter()
        .flatten()
        .fold(Args::new(), |args, (k, v)| args.value(k, v.clone()))
}

async fn take_apart(config: &Config, req: Request) -> Result<Governed, Problem> {
    let (mut parts, body) = req.into_parts();
    let principal = principal(config, &parts)?;
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let action = config
        .name
        .clone()
        .unwrap_or_else(|| format!("{} {route}", parts.method));
    let path: Map<String, Value> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect()
        })
        .unwrap_or_default();
    let query = query_arguments(parts.uri.query().unwrap_or(""))?;
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("governed request bodies are limited to {MAX_BODY} bytes"),
        )
    })?;
    let json_body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&body)))
    };
    Ok(Governed {
        parts,
        body,
        principal,
        action,
        arguments: json!({ "path": path, "query": query, "body": json_body }),
    })
}

/// The query string as the handler will read it: percent-decoded (and `+`
/// as a space) exactly as axum's `Query` decodes it, so that a policy
/// condition sees the value the handler acts on. A name given twice is
/// refused: a policy and a handler could each read a different one.
fn query_arguments(query: &str) -> Result<Map<String, Value>, Problem> {
    let mut out = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if out.contains_key(name.as_ref()) {
            return Err(Problem::bad_request(format!(
                "query parameter `{name}` is given more than once"
            )));
        }
        out.insert(name.into_owned(), Value::from(value.into_owned()));
    }
    Ok(out)
}

fn principal(config: &Config, parts: &Parts) -> Result<Principal, Problem> {
    if let Some(keys) = &config.keys {
        return keys
            .authenticate_headers(&parts.headers)
            .map(|p| (*p).clone());
    }
    parts
        .extensions
        .get::<Principal>()
        .cloned()
        .or_else(|| {
            parts
                .extensions
                .get::<Arc<Principal>>()
                .map(|p| (**p).clone())
        })
        .ok_or_else(|| Problem::unauthenticated("no authenticated principal on the request"))
}

impl Config {
    fn action(&self, name: &str) -> Result<Action, Problem> {
        let mut actions = self.actions.lock().map_err(|_| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server-error",
                "governor layer poisoned",
            )
        })?;
        if let Some(a) = actions.get(name) {
            return Ok(a.clone());
        }
        let action = self
            .governor
            .action(name)
            .policies(self.policies.iter().cloned())
            .external(Duration::from_secs(3600))
            .build()?;
        actions.insert(name.to_owned(), action.clone());
        Ok(action)
    }
}
