"""Shared by the emulator's tests: the emulator's server, started as a test module's fixture, and a session
with a role's credentials as Lambda gets them."""

import contextlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3


@contextlib.contextmanager
def serve(env: dict[str, str] | None = None):
    """The emulator's server (gatekeeper_moto.py) on a free port, with `env` beside PATH: its URL, until the
    block ends."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gatekeeper_moto.py")), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "... listening on http://127.0.0.1:<port>", printed once the socket is bound
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(5)


def role_session(url: str, role_arn: str, session_name: str | None = None, region: str = "us-east-1") -> boto3.Session:
    """A boto3 session with the credentials the emulator issues for `role_arn`, as Lambda gets its
    function's (POST /_gatekeeper/role-credentials): calls made with them are checked against the role."""
    body = {"role_arn": role_arn, **({"session_name": session_name} if session_name else {})}
    req = urllib.request.Request(f"{url}/_gatekeeper/role-credentials", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        creds = json.loads(resp.read())
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )
