"""An SMTP server for Weir's tests: aiosmtpd, with each message kept twice.

Usage: python3 server.py PORT DIR

- DIR/Maildir: the raw messages, for a mail reader;
- DIR/NNNN.json: each message as Python's email package reads it (subject,
  addresses, the envelope's recipients, the text and HTML bodies decoded), so
  tests check what a mail client would show, independently of the sender.

A recipient whose address starts with "reject" is refused with 550, as a
server refuses an unknown user.
"""

import email
import email.policy
import json
import mailbox
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, root):
        self.root = root
        self.box = mailbox.Maildir(os.path.join(root, "Maildir"), create=True)
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        self.box.add(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "subject": str(msg["subject"] or ""),
            "from": str(msg["from"] or ""),
            "to": str(msg["to"] or ""),
            "envelope_from": envelope.mail_from,
            "envelope_to": list(envelope.rcpt_tos),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        self.count += 1
        path = os.path.join(self.root, "%04d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def main():
    port, root = int(sys.argv[1]), sys.argv[2]
    os.makedirs(root, exist_ok=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    controller = Controller(Handler(root), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    controller.stop()


if __name__ == "__main__":
    main()
