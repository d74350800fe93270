"""A real SMTP server for the tests (aiosmtpd from PyPI).

Writes each message it accepts to DIR/<n>.json (atomically: written to a
temporary name, then renamed): the envelope, the headers, and the decoded
plain-text and HTML parts. Optionally requiring STARTTLS with a
throwaway certificate and AUTH with one user. Prints "ready" on stdout
once it accepts connections, and runs until killed.

    python smtp_sink.py --port 2525 --dir /tmp/mail [--tls DIR] [--auth user:password]
"""

import argparse
import email
import email.policy
import json
import os
import ssl
import subprocess
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = len([n for n in os.listdir(directory) if n.endswith(".json")])

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                parts[part.get_content_type()] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
        }
        name = os.path.join(self.directory, f"{time.time_ns()}-{self.count}.json")
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 OK"


def certificate(directory):
    """A throwaway CA (ca.pem, which clients trust) and a server
    certificate for 127.0.0.1 signed by it."""
    path = lambda name: os.path.join(directory, name)
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    if not os.path.exists(path("cert.pem")):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=governor test CA", "-keyout", path("ca-key.pem"), "-out", path("ca.pem"))
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", path("key.pem"), "-out", path("cert.csr"))
        with open(path("ext.cnf"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", path("cert.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca-key.pem"),
            "-CAcreateserial", "-days", "1", "-extfile", path("ext.cnf"), "-out", path("cert.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(path("cert.pem"), path("key.pem"))
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls", help="directory for the throwaway certificate: require STARTTLS")
    parser.add_argument("--auth", help="user:password: require AUTH")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    options = {}
    if args.tls:
        options.update(tls_context=certificate(args.tls), require_starttls=True)
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticate(server, session, envelope, mechanism, data):
            ok = data.login.decode() == user and data.password.decode() == password
            return AuthResult(success=ok, handled=False)

        options.update(authenticator=authenticate, auth_required=True,
                       auth_require_tls=bool(args.tls))
    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port, **options)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
