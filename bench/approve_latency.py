"""Approve-to-caller-continues over HTTP: a submission holds its
connection (`wait_seconds`), an approver approves over HTTP, and the time
from sending the approval to the held response arriving is measured.

    python3 bench/approve_latency.py http://127.0.0.1:8080 TOKEN 200
"""

import json
import sys
import threading
import time
import urllib.request


def call(base, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as res:
        return res.status, json.loads(res.read() or b"null")


def one(base, token):
    done = {}

    def held():
        status, _ = call(base, token, "POST", "/govern/executions",
                         {"action": "refund", "arguments": {"amount": 1}, "wait_seconds": 30})
        done["at"] = time.perf_counter()
        done["status"] = status

    t = threading.Thread(target=held)
    t.start()
    while True:
        _, page = call(base, token, "GET", "/govern/approvals/pending?decidable=true&limit=1")
        if page["items"]:
            break
        time.sleep(0.001)
    sent = time.perf_counter()
    call(base, token, "POST", f"/govern/approvals/{page['items'][0]['execution_id']}/approve", {})
    t.join()
    assert done["status"] == 200, done
    return done["at"] - sent


def main():
    base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # Earlier pending requests would be picked first: decide them away.
    while True:
        _, page = call(base, token, "GET", "/govern/approvals/pending?decidable=true&limit=500")
        if not page["items"]:
            break
        for item in page["items"]:
            call(base, token, "POST", f"/govern/approvals/{item['execution_id']}/reject", {"reason": "bench reset"})
    samples = sorted(one(base, token) for _ in range(n))
    p50 = samples[len(samples) // 2] * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    print(f"approve-to-continue over HTTP: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({n} samples)")


if __name__ == "__main__":
    main()
