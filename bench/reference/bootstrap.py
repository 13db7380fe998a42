"""The Python managed runtime's loop, reduced: import the handler (creating its clients), then serve
invocations from the Lambda Runtime API. Init = interpreter start + imports + client creation."""

import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import decide  # noqa: E402  (the import is the init being measured)

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"

while True:
    with urllib.request.urlopen(f"{API}/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    result = decide.handler(event, None)
    req = urllib.request.Request(f"{API}/{request_id}/response", data=json.dumps(result).encode(), method="POST")
    urllib.request.urlopen(req).read()
