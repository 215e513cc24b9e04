#!/usr/bin/env python3
"""An SMTP server for healthmon's mail tests (tests/common/smtp.rs).

Debian's aiosmtpd on 127.0.0.1, on a free port it prints as "READY <port>"
once it accepts connections. Each message it accepts is written to
--dir/NNNN.json (written under a temporary name, then renamed, so a reader
never sees half a file): the envelope, the decoded headers and plain-text
body, whether it came over TLS and who logged in.

  --cert/--key       offer STARTTLS with this certificate (PEM), and refuse
                     mail before it (require_starttls)
  --implicit-tls     speak TLS from the first byte instead (needs --cert/--key)
  --user/--password  require AUTH (PLAIN or LOGIN) with these credentials

It runs until it is killed or its standard input closes (the test dropped
its handle), so a crashed test leaves no server behind.
"""

import argparse
import email
import email.policy
import json
import os
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"] or ""),
            "from": str(msg["from"] or ""),
            "to": str(msg["to"] or ""),
            "body": part.get_content() if part is not None else "",
            # session.ssl is set by STARTTLS only; implicit TLS shows on the
            # transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        with self.lock:
            self.count += 1
            n = self.count
        path = os.path.join(self.directory, "%04d.json" % n)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return check


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()

    kwargs = {}
    ssl_context = None
    if a.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)
        if a.implicit_tls:
            ssl_context = context
        else:
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = True
    if a.user:
        kwargs["authenticator"] = authenticator(a.user, a.password or "")
        kwargs["auth_required"] = True
        # Logins only after STARTTLS, as a real submission server. (With
        # implicit TLS aiosmtpd does not count the connection as TLS for
        # this rule, and it is all TLS anyway; with no TLS the test asked.)
        kwargs["auth_require_tls"] = bool(a.cert) and not a.implicit_tls

    # The port is free when chosen; another process may take it before the
    # bind, so a few tries.
    for attempt in range(5):
        controller = Controller(
            Sink(a.dir),
            hostname="127.0.0.1",
            port=free_port(),
            ssl_context=ssl_context,
            server_hostname="smtp.test",
            **kwargs,
        )
        try:
            controller.start()
            break
        except Exception as e:  # noqa: BLE001 - any failure to bind: try again
            if attempt == 4:
                print("FAILED %s" % e, flush=True)
                sys.exit(1)
    print("READY %d" % controller.port, flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
