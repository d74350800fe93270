"""A governor client for agents written in Python: standard library only.

The agent asks governor before a risky action, runs it itself when allowed,
and reports the outcome so the audit trail is whole:

    client = GovernorClient("http://127.0.0.1:8080", token)
    result = client.run("transfer_funds", {"amount": 120}, lambda amount: bank.send(amount))

`run` submits the action (POST /govern/executions); when a person must
approve, it polls the execution until they decide, then starts it; it
calls your function with the arguments governor returns (an approver may
have edited them) and reports the output or the error. Denials and
rejections raise `Refused` with the policy and reason, which an agent can
show to its model.

Run `python3 governor_client.py --url URL --token TOKEN` for a small demo
against `governor serve` (see the README of governor-http).
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


class GovernorError(Exception):
    """An error answer (RFC 9457 problem document) from governor."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem
        super().__init__(f"{status}: {problem.get('detail', problem)}")


class Refused(GovernorError):
    """Governor said no: a policy denied it or a person rejected it."""

    @property
    def policy(self):
        return self.problem.get("policy")

    @property
    def reason(self):
        return self.problem.get("reason") or self.problem.get("detail")


class GovernorClient:
    def __init__(self, base_url, token, timeout=60.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            problem = json.loads(e.read() or b"{}")
            kind = problem.get("type", "")
            if kind.endswith(":denied") or kind.endswith(":rejected"):
                raise Refused(e.code, problem) from None
            raise GovernorError(e.code, problem) from None

    def submit(self, action, arguments, wait_seconds=None):
        """Asks to run `action`: (200, admitted) or (202, pending)."""
        body = {"action": action, "arguments": arguments}
        if wait_seconds is not None:
            body["wait_seconds"] = wait_seconds
        return self._request("POST", "/govern/executions", body)

    def execution(self, execution_id):
        _, detail = self._request("GET", f"/govern/executions/{execution_id}")
        return detail["execution"]

    def start(self, execution_id):
        return self._request("POST", f"/govern/executions/{execution_id}/start")[1]

    def complete(self, execution_id, output=None, error=None):
        body = {"error": str(error)} if error is not None else {"output": output}
        return self._request("POST", f"/govern/executions/{execution_id}/complete", body)[1]

    def wait_for_decision(self, execution_id, poll_every=1.0, timeout=3600.0):
        """Polls until a person decides; returns the admitted run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            execution = self.execution(execution_id)
            status = execution["status"]
            if status == "approved":
                return self.start(execution_id)
            if status != "awaiting_approval":
                failure = execution.get("failure") or {}
                raise Refused(403, {
                    "detail": f"execution {execution_id} was {status}",
                    "reason": failure.get("message", status),
                    "policy": failure.get("policy"),
                    "execution_id": execution_id,
                })
            time.sleep(poll_every)
        raise TimeoutError(f"no decision on {execution_id} within {timeout}s")

    def run(self, action, arguments, fn, wait_seconds=None, poll_every=1.0,
            on_pending=None):
        """Governs one call of `fn(**arguments)` end to end."""
        status, answer = self.submit(action, arguments, wait_seconds)
        if status == 202:
            if on_pending:
                on_pending(answer)
            answer = self.wait_for_decision(answer["execution_id"], poll_every)
        execution_id = answer["execution_id"]
        try:
            output = fn(**answer["arguments"])
        except Exception as e:  # the agent's own failure is reported, then raised
            self.complete(execution_id, error=e)
            raise
        self.complete(execution_id, output=output)
        return output


def _demo(url, token):
    """Three calls: allowed, denied, and one that waits for a person."""
    client = GovernorClient(url, token)

    def say(**event):
        print(json.dumps(event), flush=True)

    found = client.run("lookup", {"q": "acme"}, lambda q: {"hits": len(q)})
    say(step="lookup", output=found)
    try:
        client.run("wire", {"amount": 10}, lambda amount: amount)
    except Refused as e:
        say(step="wire", refused=True, policy=e.policy, reason=e.reason)
    refunded = client.run(
        "refund", {"amount": 900}, lambda amount: {"refunded": amount},
        poll_every=0.05,
        on_pending=lambda p: say(step="refund", pending=p["execution_id"]),
    )
    say(step="refund", output=refunded)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    try:
        _demo(args.url, args.token)
    except GovernorError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
