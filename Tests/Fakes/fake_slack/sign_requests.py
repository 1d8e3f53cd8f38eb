#!/usr/bin/env python3
"""Signs Slack webhook bodies with Slack's own SDK (slack_sdk.signature.SignatureVerifier).

Reads a JSON array of {"timestamp": "<unix seconds>", "body": "<raw body>"} on stdin and the signing
secret as argv[1]; prints a JSON array of the X-Slack-Signature values, in order. Each signature is
also checked with SignatureVerifier.is_valid (with the clock set to the request's timestamp), so the
tests sign exactly what Slack's code accepts.
"""
import json
import sys

from slack_sdk.signature import SignatureVerifier


def main():
    secret = sys.argv[1]
    items = json.load(sys.stdin)
    out = []
    for item in items:
        ts, body = str(item["timestamp"]), item["body"]
        verifier = SignatureVerifier(secret, clock=FixedClock(int(ts)))
        sig = verifier.generate_signature(timestamp=ts, body=body)
        assert verifier.is_valid(body=body, timestamp=ts, signature=sig), "slack_sdk rejects its own signature"
        out.append(sig)
    json.dump(out, sys.stdout)


class FixedClock:
    def __init__(self, now):
        self._now = now

    def now(self):
        return float(self._now)


if __name__ == "__main__":
    main()
