"""The same workloads as crates/agent-governor/benches/governed_call.rs,
run against the Python original (governor 0.2.0 from PyPI).

Run through bench/compare.sh, which installs it into bench/.venv.
Prints one JSON line per workload.
"""
import asyncio
import json
import sys
import time
import tracemalloc

from governor import (AuditPolicy, AuthorizationPolicy, RateLimitPolicy,
                      ValidationPolicy, govern)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


async def bare(amount, recipient):
    return amount


@govern()
async def governed_default(amount, recipient):
    return amount


@govern(
    policies=[
        ValidationPolicy(input_validator=lambda i: i["kwargs"].get("amount", 0) > 0),
        AuthorizationPolicy(required_roles={"admin", "finance"}),
        # A large budget: the original's limiter is O(calls in window).
        RateLimitPolicy(max_calls=10_000_000, window_seconds=60),
        AuditPolicy(sensitive_fields=["ssn"], compliance_tags=["SOC2"]),
    ],
    context={"user": {"id": "bench", "roles": ["admin"]}},
)
async def governed_policies(amount, recipient):
    return amount


async def measure(name, fn, n):
    for i in range(min(n, 1000)):
        await fn(amount=i + 1.0, recipient="Acme")
    samples = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter_ns()
        await fn(amount=i + 1.0, recipient="Acme")
        samples.append(time.perf_counter_ns() - t)
    total = time.perf_counter() - start
    samples.sort()
    p = lambda q: samples[int((len(samples) - 1) * q)] / 1000.0
    print(json.dumps({"workload": name, "store": "memory", "implementation": "python-governor-0.2.0",
                      "p50_us": round(p(0.5), 3), "p99_us": round(p(0.99), 3),
                      "calls_per_sec": round(n / total)}))


def two_threads(name, fn, n):
    """`n` calls from two threads, each with its own event loop, into the
    same governed function: what the original does with two callers on
    this machine's two cores (its interpreter lock runs one at a time)."""
    import threading
    ready = threading.Barrier(2)
    took = []

    async def caller(count):
        for i in range(min(count, 1000)):
            await fn(amount=i + 1.0, recipient="Acme")
        ready.wait()
        start = time.perf_counter()
        for i in range(count):
            await fn(amount=i + 1.0, recipient="Acme")
        took.append(time.perf_counter() - start)

    threads = [threading.Thread(target=asyncio.run, args=(caller(n // 2),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"workload": name, "store": "memory", "implementation": "python-governor-0.2.0",
                      "callers": 2, "threads": 2, "calls_per_sec": round(n / max(took))}))


async def retained(n):
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        await governed_default(amount=i + 1.0, recipient="Acme")
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(json.dumps({"workload": "b_govern_default", "store": "memory", "implementation": "python-governor-0.2.0",
                      "retained_bytes_per_execution": round((after - before) / n)}))


async def main():
    await measure("a_bare", bare, N)
    await measure("b_govern_default", governed_default, N)
    await measure("c_four_policies", governed_policies, N // 2)
    await retained(min(N, 5000))


asyncio.run(main())
two_threads("b_govern_default", governed_default, N)
two_threads("c_four_policies", governed_policies, N // 2)
