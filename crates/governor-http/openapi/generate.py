"""Writes ../src/openapi.json, the OpenAPI 3.1 document of the governor
HTTP API. Edit this file, run `python3 generate.py`, commit both. The test
`the_served_document_is_the_generated_one` keeps them in step, and
schemathesis (scripts/schemathesis.sh) checks the server against it."""

import json
import pathlib
import sys

UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
ANY = {}
STATUS = {"type": "string", "enum": [
    "pending", "awaiting_approval", "approved", "running", "completed",
    "failed", "denied", "rejected", "expired", "cancelled"]}


EXPECTED_DIGEST = {"type": "string", "description": "The `digest` the approver saw; 409 if what would run changed since"}
SEED_APPROVER = {"type": "string", "description": "The seed's body: must be the token's principal id or email (else 403)"}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def problem(desc):
    return {"description": desc, "content": {"application/problem+json": {"schema": ref("Problem")}}}


def ok(schema, desc="OK"):
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


COMMON = {
    "400": problem("Malformed request: a bad parameter or id"),
    "401": problem("Missing or unknown bearer token"),
    "413": problem("The body is over max_body_bytes (default 2 MiB)"),
    "414": problem("The request target is over max_uri_bytes (default 8 KiB)"),
    "431": problem("More headers than max_headers (default 100)"),
    "503": problem("The store cannot be reached, more requests than max_concurrent are running, or the request took longer than request_timeout"),
}


def responses(extra):
    out = dict(COMMON)
    out.update(extra)
    return out


def body(schema, required=False):
    return {"required": required, "content": {"application/json": {"schema": schema}}}


ID = {"name": "id", "in": "path", "required": True, "schema": UUID,
      "description": "The execution id"}


def query(name, schema, desc):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": desc}


LIMIT = query("limit", {"type": "integer", "minimum": 0}, "Page size (default 50, at most 500)")
CURSOR = query("cursor", UUID, "`next_cursor` of the previous page")

schemas = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "description": "urn:governor:problem:<kind>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "execution_id": UUID,
            "policy": {"type": "string"},
            "reason": {"type": "string"},
            "retry_after": {"type": "number"},
            "errors": {"type": "array", "items": {
                "type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}},
        },
    },
    "Principal": {
        "type": "object", "required": ["id"],
        "properties": {
            "id": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "permissions": {"type": "array", "items": {"type": "string"}},
            "attributes": {"type": "object"},
            "tenant": {"type": "string"},
        },
    },
    "Failure": {
        "type": "object", "required": ["kind", "message"],
        "properties": {"kind": {"type": "string"}, "message": {"type": "string"},
                       "policy": {"type": "string"}},
    },
    "ApprovalRequest": {
        "type": "object", "required": ["requested_at", "stages"],
        "properties": {
            "requested_at": TIME,
            "stages": {"type": "array", "items": {"type": "object", "required": ["spec"], "properties": {
                "spec": {"type": "object"},
                "expires_at": TIME,
                "decisions": {"type": "array", "items": {"type": "object", "properties": {
                    "approver": {"type": "string"}, "approved": {"type": "boolean"},
                    "at": TIME, "reason": {"type": "string"}}}},
            }}},
            "edited_inputs": ANY,
            "digest": {"type": "string"},
            "policy_version": {"type": "string"},
        },
    },
    "Execution": {
        "type": "object",
        "required": ["id", "action", "status", "principal", "inputs", "created_at", "updated_at", "version"],
        "properties": {
            "id": UUID, "action": {"type": "string"}, "status": STATUS,
            "principal": ref("Principal"), "inputs": ANY, "output": ANY,
            "failure": ref("Failure"), "approval": ref("ApprovalRequest"),
            "lease": {"type": "object", "properties": {"owner": {"type": "string"}, "until": TIME}},
            "created_at": TIME, "updated_at": TIME, "finished_at": TIME,
            "version": {"type": "integer", "minimum": 0},
        },
    },
    "Event": {
        "type": "object", "required": ["id", "type", "time", "execution_id", "action", "data"],
        "properties": {"id": UUID, "type": {"type": "string"}, "time": TIME,
                       "execution_id": UUID, "action": {"type": "string"}, "data": ANY},
    },
    "Snapshot": {
        "type": "object", "required": ["execution_id", "checkpoint", "captured_at", "state"],
        "properties": {"execution_id": UUID, "checkpoint": {"type": "string"},
                       "captured_at": TIME, "state": ANY},
    },
    "ExecutionDetail": {
        "type": "object", "required": ["execution", "events", "snapshots"],
        "properties": {"execution": ref("Execution"),
                       "events": {"type": "array", "items": ref("Event")},
                       "snapshots": {"type": "array", "items": ref("Snapshot")}},
    },
    "ExecutionPage": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": ref("Execution")},
                       "next_cursor": {"type": ["string", "null"], "format": "uuid"}},
    },
    "Approval": {
        "type": "object",
        "required": ["execution_id", "action", "status", "requester", "inputs", "can_decide"],
        "properties": {
            "execution_id": UUID, "action": {"type": "string"}, "status": STATUS,
            "requester": {"type": "string"}, "tenant": {"type": ["string", "null"]},
            "inputs": ANY, "will_run": ANY, "edited": {"type": "boolean"},
            "changes": {"type": "array", "items": {"type": "object", "required": ["argument"], "properties": {
                "argument": {"type": "string"}, "asked": ANY, "will_run": ANY}}},
            "digest": {"type": ["string", "null"]},
            "success": {"type": "boolean"}, "message": {"type": "string"},
            "requested_at": NULLABLE_TIME,
            "stage": {"type": ["object", "null"], "properties": {
                "index": {"type": "integer"}, "of": {"type": "integer"},
                "policy": {"type": "string"},
                "approvers": {"type": "array", "items": {"type": "string"}},
                "reason": {"type": "string"}, "expires_at": NULLABLE_TIME,
                "quorum": {"type": "integer"}, "approvals": {"type": "integer"},
                "require_reason": {"type": "boolean"},
                "trigger": {"type": "object", "required": ["condition", "unless", "values"],
                            "description": "The condition that made the call ask, with the arguments it read",
                            "properties": {"condition": {"type": "string"}, "unless": {"type": "boolean"},
                                           "values": {"type": "object"}}}}},
            "title": {"type": "string", "description": "The action's title for these arguments, when it declares a display"},
            "display": ref("Display"),
            "can_decide": {"type": "boolean"},
            "approval": ref("ApprovalRequest"),
        },
    },
    "Display": {
        "type": "object", "description": "How an action's requests read to approvers",
        "properties": {
            "title": {"type": "string", "description": "Template: {argument}, {amount:currency(EUR)}, {weight:unit(kg)}, {n:number}"},
            "fields": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "label": {"type": "string"},
                "currency": {"type": "string"}, "unit": {"type": "string"}}}},
            "on_approve": {"type": "string", "description": "What approving does"},
        },
    },
    "ApprovalPage": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": ref("Approval")},
                       "next_cursor": {"type": ["string", "null"], "format": "uuid"}},
    },
    "Admitted": {
        "type": "object",
        "required": ["execution_id", "status", "arguments", "report_by", "complete_url"],
        "properties": {"execution_id": UUID, "status": {"const": "running"},
                       "arguments": {"type": "object"}, "report_by": TIME,
                       "complete_url": {"type": "string"}},
    },
    "Pending": {
        "type": "object", "required": ["execution_id", "status", "poll_url", "start_url"],
        "properties": {"execution_id": UUID, "status": {"const": "awaiting_approval"},
                       "poll_url": {"type": "string"}, "start_url": {"type": "string"}},
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "AuditEntry": {
        "type": "object", "required": ["seq", "record", "prev_hash", "hash"],
        "properties": {"seq": {"type": "integer", "minimum": 1}, "record": {"type": "object"},
                       "prev_hash": {"type": "string"}, "hash": {"type": "string"}},
    },
    "AuditPage": {
        "type": "object", "required": ["items", "next_after"],
        "properties": {"items": {"type": "array", "items": ref("AuditEntry")},
                       "next_after": {"type": ["integer", "null"]}},
    },
    "Verified": {
        "type": "object", "required": ["ok", "entries"],
        "properties": {"ok": {"type": "boolean"}, "entries": {"type": "integer"},
                       "error": {"type": "string"}, "next_from": {"type": "integer"}},
    },
    "Notification": {
        "type": "object",
        "required": ["id", "execution_id", "kind", "target", "state", "attempts", "created_at", "next_attempt_at"],
        "properties": {
            "id": {**UUID, "description": "Also the idempotency key receivers see (webhook-id)"},
            "execution_id": UUID,
            "kind": {"type": "string", "enum": ["requested", "stage_advanced", "decided", "expired", "escalated", "reminder"]},
            "target": {"type": "string"}, "recipient": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "created_at": TIME, "next_attempt_at": TIME,
            "last_error": {"type": "string"}, "delivered_at": TIME,
        },
    },
    "Grant": {
        "type": "object",
        "required": ["id", "action", "policy", "principal", "until", "granted_by", "created_at"],
        "properties": {
            "id": UUID, "action": {"type": "string"}, "policy": {"type": "string"},
            "principal": {"type": "string"}, "tenant": {"type": ["string", "null"]},
            "policy_version": {"type": "string"}, "execution_id": UUID,
            "arguments": ANY, "until": TIME, "granted_by": {"type": "string"},
            "reason": {"type": "string"}, "created_at": TIME,
        },
    },
    "Pause": {
        "type": "object", "required": ["action", "mode", "by", "reason", "since"],
        "properties": {"action": {"type": ["string", "null"]}, "mode": {"enum": ["deny", "hold"]},
                       "by": {"type": "string"}, "reason": {"type": "string"}, "since": TIME},
    },
    "Flows": {
        "type": "object", "required": ["flows", "truncated"],
        "properties": {
            "truncated": {"type": "boolean"},
            "flows": {"type": "array", "items": {
                "type": "object", "required": ["action", "waiting", "stages"],
                "properties": {
                    "action": {"type": "string"}, "waiting": {"type": "integer"},
                    "stages": {"type": "array", "items": {
                        "type": "object", "required": ["index", "policy", "approvers", "waiting"],
                        "properties": {"index": {"type": "integer"}, "policy": {"type": "string"},
                                       "approvers": {"type": "array", "items": {"type": "string"}},
                                       "waiting": {"type": "integer"}}}},
                }}},
        },
    },
}

REASON = {"type": "string", "description": "Why; some policies require one"}
paths = {
    "/healthz": {"get": {"operationId": "healthz", "summary": "The process is up", "security": [],
                         "responses": {"200": ok(ref("Health"))}}},
    "/readyz": {"get": {"operationId": "readyz", "summary": "The store answers", "security": [],
                        "responses": {"200": ok(ref("Health")), "503": problem("Store unavailable")}}},
    "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                         "responses": responses({"200": {"description": "Prometheus text format",
                                                         "content": {"text/plain": {"schema": {"type": "string"}}}}})}},
    "/govern/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                     "responses": {"200": ok({"type": "object"})}}},
    "/govern/me": {"get": {"operationId": "me", "summary": "The principal the bearer token speaks for",
                           "responses": responses({"200": ok(ref("Principal"))})}},
    "/govern/audit": {"get": {
        "operationId": "listAudit", "summary": "The hash-chained audit log, oldest first (governor:read)",
        "parameters": [query("after", {"type": "integer", "minimum": 0}, "Only entries after this sequence number"),
                       query("limit", {"type": "integer", "minimum": 0}, "Page size (default 100, at most 1,000)")],
        "responses": responses({"200": ok(ref("AuditPage")), "403": problem("Needs governor:read")})}},
    "/govern/audit/verify": {"get": {
        "operationId": "verifyAudit",
        "summary": "Check each entry's hash and link (governor:read), a page at a time, at most 1,000,000 entries per request; `next_from` continues",
        "parameters": [query("from", {"type": "integer", "minimum": 0}, "The entry to start at (default: the first)"),
                       query("limit", {"type": "integer", "minimum": 0}, "At most this many entries (default and most 1,000,000)")],
        "responses": responses({"200": ok(ref("Verified")), "403": problem("Needs governor:read")})}},
    "/govern/pauses": {
        "get": {"operationId": "listPauses", "summary": "Active pauses (governor:read or governor:pause)",
                "responses": responses({"200": ok({"type": "array", "items": ref("Pause")}),
                                        "403": problem("Needs governor:read or governor:pause")})},
        "post": {"operationId": "pause", "summary": "Pause one action or every action (governor:pause); audited",
                 "requestBody": body({"type": "object", "required": ["reason"], "additionalProperties": False, "properties": {
                     "action": {"type": ["string", "null"], "description": "Absent or null: every action"},
                     "mode": {"enum": ["deny", "hold"], "description": "deny (default) or hold new calls"},
                     "reason": REASON}}, required=True),
                 "responses": responses({"200": ok(ref("Pause")), "403": problem("Needs governor:pause"),
                                         "422": problem("No reason")})}},
    "/govern/grants": {"get": {
        "operationId": "listGrants",
        "summary": "Standing grants in force, oldest first: readers and governor:grants see their tenant's; others those they gave or that cover them",
        "parameters": [query("action", {"type": "string"}, "Only grants for this action"),
                       query("limit", {"type": "integer", "minimum": 0}, "At most this many (default 100, at most 10,000)")],
        "responses": responses({"200": ok({"type": "array", "items": ref("Grant")})})}},
    "/govern/grants/{id}": {"delete": {
        "operationId": "revokeGrant",
        "summary": "Revoke a grant (who gave it, whom it covers, or governor:grants); audited, announced as grant.revoked",
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": UUID, "description": "The grant id"},
                       query("reason", {"type": "string"}, "Why (recorded in the audit log)")],
        "responses": responses({"200": ok(ref("Grant")),
                                "403": problem("Sees the grant but may not revoke it"),
                                "404": problem("No such grant in force, or one the caller may not see")})}},
    "/govern/notifications": {"get": {
        "operationId": "listNotifications",
        "summary": "The notification outbox, oldest first: governor:read lists the tenant's; others give execution_id of an execution they may see",
        "parameters": [query("execution_id", UUID, "Only those about this execution"),
                       query("state", {"type": "string", "enum": ["pending", "delivered", "dead"]}, "Only those in this state"),
                       query("after", UUID, "Only those after this id (the previous page's next_after)"),
                       query("limit", {"type": "integer", "minimum": 0}, "At most this many (default 100, at most 1,000)")],
        "responses": responses({"200": ok({"type": "object", "required": ["items", "next_after"], "properties": {
                                    "items": {"type": "array", "items": ref("Notification")},
                                    "next_after": {"type": ["string", "null"], "format": "uuid"}}}),
                                "403": problem("Listing every notification needs governor:read"),
                                "404": problem("No such execution, or one the caller may not see")})}},
    "/govern/notifications/{id}/retry": {"post": {
        "operationId": "retryNotification",
        "summary": "Send a dead notification again (governor:resume)",
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": UUID, "description": "The notification id"}],
        "responses": responses({"200": ok(ref("Notification")),
                                "403": problem("Needs governor:resume"),
                                "404": problem("No dead notification with this id the caller may see")})}},
    "/govern/pauses/lift": {"post": {
        "operationId": "liftPause", "summary": "Lift a pause (governor:pause); audited",
        "requestBody": body({"type": "object", "required": ["reason"], "additionalProperties": False, "properties": {
            "action": {"type": ["string", "null"], "description": "Absent or null: the pause of every action"},
            "reason": REASON}}, required=True),
        "responses": responses({"200": ok({"type": "object", "required": ["lifted"],
                                           "properties": {"lifted": {"type": "boolean"}}}),
                                "403": problem("Needs governor:pause"), "422": problem("No reason")})}},
    "/govern/actions": {"get": {
        "operationId": "listActions", "summary": "Registered actions: their policies, approval stages and input schema",
        "responses": responses({"200": ok({"type": "array", "items": {
            "type": "object", "required": ["name", "policies", "stages", "input_schema"],
            "properties": {
                "name": {"type": "string"},
                "policies": {"type": "array", "items": {"type": "object", "required": ["name", "kind", "phase", "shadow"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                   "phase": {"type": "string"}, "shadow": {"type": "boolean"}}}},
                "stages": {"type": "array", "items": {"type": "object", "required": ["policy", "approvers", "quorum"],
                    "properties": {"policy": {"type": "string"},
                                   "approvers": {"type": "array", "items": {"type": "string"}},
                                   "quorum": {"type": "integer"}}}},
                "input_schema": {},
                "display": ref("Display")}}})})}},
    "/govern/flows": {"get": {
        "operationId": "listFlows", "summary": "Approval pipelines with how many requests wait at each stage (governor:read)",
        "responses": responses({"200": ok(ref("Flows")), "403": problem("Needs governor:read")})}},
    "/govern/events": {"get": {
        "operationId": "events", "summary": "Live events over a WebSocket (governor:read); browsers send the token as the subprotocol `bearer.<token>` beside `governor`",
        "parameters": [query("action", {"type": "string"}, "Only this action"),
                       query("execution_id", UUID, "Only this execution"),
                       query("types", {"type": "string"}, "Comma-separated event types")],
        "responses": responses({"101": {"description": "Switching to the WebSocket"},
                                "403": problem("Needs governor:read"),
                                "426": problem("Not a WebSocket request")})}},
    "/govern/approvals/pending": {"get": {
        "operationId": "listPendingApprovals",
        "summary": "Approval requests waiting, newest first, that the caller may see",
        "parameters": [query("action", {"type": "string"}, "Only this action"),
                       query("approver", {"type": "string"}, "Only requests listing this approver entry"),
                       query("decidable", {"type": "boolean"}, "Only requests the caller can decide now"),
                       query("older_than", {"type": "integer", "minimum": 0}, "Made at least this many seconds ago"),
                       LIMIT, CURSOR],
        "responses": responses({"200": ok(ref("ApprovalPage"))})}},
    "/govern/approvals/{id}": {"get": {
        "operationId": "getApproval", "summary": "One approval request with its decisions",
        "parameters": [ID],
        "responses": responses({"200": ok(ref("Approval")), "403": problem("Not the requester, an approver or a reader"),
                                "404": problem("No such execution, or no approval request")})}},
    "/govern/approvals/{id}/approve": {"post": {
        "operationId": "approve", "summary": "Approve the waiting stage (approvers only)",
        "parameters": [ID],
        "requestBody": body({"type": "object", "additionalProperties": False, "properties": {
            "reason": REASON,
            "edits": {"type": "object", "description": "The complete new arguments"},
            "grant": {"type": "object", "additionalProperties": False, "required": ["window_seconds"],
                      "properties": {"window_seconds": {"type": "integer", "minimum": 0},
                                     "same_arguments": {"type": "boolean", "default": True}}},
            "expected_digest": EXPECTED_DIGEST, "approver": SEED_APPROVER,
            "approved": {"type": "boolean", "description": "The seed's body: true here (false is a 422)"}}}),
        "responses": responses({"200": ok(ref("Approval")),
                                "403": problem("Not an approver, the requester, an approver of another stage, or `approver` is not the token's"),
                                "404": problem("No such execution, or one the caller may not see"),
                                "409": problem("Not waiting, already decided, expired, or changed since `expected_digest`"),
                                "415": problem("Body is not JSON"),
                                "422": problem("Reason required, invalid edits, or a body of the wrong shape")})}},
    "/govern/approvals/{id}/reject": {"post": {
        "operationId": "reject", "summary": "Reject (approvers only); the reason reaches the caller",
        "parameters": [ID],
        "requestBody": body({"type": "object", "additionalProperties": False, "properties": {
            "reason": REASON, "expected_digest": EXPECTED_DIGEST, "approver": SEED_APPROVER,
            "approved": {"type": "boolean", "description": "The seed's body: false here (true is a 422)"}}}),
        "responses": responses({"200": ok(ref("Approval")),
                                "403": problem("Not an approver, an approver of another stage, or `approver` is not the token's"),
                                "404": problem("No such execution, or one the caller may not see"),
                                "409": problem("Not waiting, already decided, expired, or changed since `expected_digest`"),
                                "415": problem("Body is not JSON"),
                                "422": problem("Reason required, or a body of the wrong shape")})}},
    "/govern/executions": {
        "get": {
            "operationId": "listExecutions", "summary": "Executions, newest first (own only without governor:read)",
            "parameters": [query("status", {"type": "string"}, "Comma-separated statuses"),
                           query("action", {"type": "string"}, "Only this action"),
                           query("principal", {"type": "string"}, "Only this caller"),
                           query("since", TIME, "Created at or after"),
                           query("until", TIME, "Created before"), LIMIT, CURSOR],
            "responses": responses({"200": ok(ref("ExecutionPage")),
                                    "403": problem("Another principal's executions without governor:read")})},
        "post": {
            "operationId": "submitExecution",
            "summary": "Ask to run an action configured for agents; run it yourself when allowed, then report",
            "requestBody": body({"type": "object", "additionalProperties": False, "required": ["action"], "properties": {
                "action": {"type": "string", "examples": ["lookup", "refund"]},
                "arguments": {"type": "object", "examples": [{"q": "acme"}]},
                "wait_seconds": {"type": "number", "minimum": 0,
                                 "description": "Hold the connection for a decision (capped by the server, 300 s by default)"}}},
                required=True),
            "responses": responses({"200": ok(ref("Admitted"), "Allowed: run it with `arguments`"),
                                    "202": ok(ref("Pending"), "Waiting for approval: poll, then start"),
                                    "403": problem("Denied by a policy, or rejected by a person"),
                                    "404": problem("No such action for agents"),
                                    "409": problem("The action is paused"),
                                    "415": problem("Body is not JSON"),
                                    "422": problem("Arguments invalid, or a body of the wrong shape"),
                                    "429": problem("Rate limited; see Retry-After")})}},
    "/govern/executions/{id}": {"get": {
        "operationId": "getExecution", "summary": "An execution with its events and snapshots",
        "parameters": [ID],
        "responses": responses({"200": ok(ref("ExecutionDetail")), "404": problem("No such execution, or one the caller may not see")})}},
    "/govern/executions/{id}/resume": {"post": {
        "operationId": "resumeExecution", "summary": "Run an approved execution now (governor:resume)",
        "parameters": [ID],
        "responses": responses({"200": ok(ref("Execution")), "403": problem("Needs governor:resume"),
                                "404": problem("No such execution"),
                                "409": problem("Not approved, not registered here, paused, or changed since approval")})}},
    "/govern/executions/{id}/start": {"post": {
        "operationId": "startExecution", "summary": "Start an approved execution of an agent's action",
        "parameters": [ID],
        "responses": responses({"200": ok(ref("Admitted")), "403": problem("Not the requester (nor governor:run-as)"),
                                "404": problem("No such execution, or one the caller may not see"),
                                "409": problem("Not approved, paused, or changed since approval")})}},
    "/govern/executions/{id}/complete": {"post": {
        "operationId": "completeExecution", "summary": "Report the outcome: exactly one of output and error",
        "parameters": [ID],
        "requestBody": body({"type": "object", "additionalProperties": False, "properties": {
            "output": ANY, "error": {"type": "string"}}}),
        "responses": responses({"200": ok(ref("Execution")), "403": problem("Not the requester (nor governor:run-as)"),
                                "404": problem("No such execution, or one the caller may not see"),
                                "409": problem("Not running for an agent (not started, or already reported)"),
                                "415": problem("Body is not JSON"),
                                "422": problem("Neither or both of output and error")})}},
}

# Links let stateful testing follow a submission to its execution.
FOLLOW = {"parameters": {"id": "$response.body#/execution_id"}}
submit = paths["/govern/executions"]["post"]["responses"]
for code in ("200", "202"):
    submit[code]["links"] = {
        "GetExecution": {"operationId": "getExecution", **FOLLOW},
        "GetApproval": {"operationId": "getApproval", **FOLLOW},
        "Start": {"operationId": "startExecution", **FOLLOW},
        "Complete": {"operationId": "completeExecution", **FOLLOW},
        "Approve": {"operationId": "approve", **FOLLOW},
        "Reject": {"operationId": "reject", **FOLLOW},
    }

doc = {
    "openapi": "3.1.0",
    "info": {"title": "governor", "version": "0.1.0",
             "description": "Approvals, executions and governance for agents in any language. "
                            "Limits (each configurable in `governor serve`'s config file): request bodies up to "
                            "`max_body_bytes` (2 MiB, else 413), request targets up to 8 KiB (414), 100 headers (431), "
                            "`request_timeout_seconds` per request (30 s; a submission may wait its `wait_seconds`), "
                            "and `max_concurrent_requests` at once (1,024; more get 503). Every refusal is an RFC 9457 "
                            "problem document."},
    "security": [{"bearer": []}],
    "paths": paths,
    "components": {"schemas": schemas,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
}

default = pathlib.Path(__file__).resolve().parent.parent / "src" / "openapi.json"
out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else default
out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
