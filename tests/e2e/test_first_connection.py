"""The set holds an address before the DNS answer that names it reaches the sandbox."""

from __future__ import annotations

import json

import pytest

from tests.e2e.runtad_process import RuntadProcess
from tests.lab.processes import wait_for_listeners

pytestmark = [pytest.mark.root, pytest.mark.slow]

TRIES = 200

# Resolve a name never seen before, connect at once: a dropped first SYN would cost a
# 1 s retransmission, so any connect slower than 0.5 s counts as a failure.
PROBE = """
import json, socket, sys, time
results = []
for index in range(1, int(sys.argv[1]) + 1):
    name = f"r{index}.race.test"
    try:
        address = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        started = time.monotonic()
        socket.create_connection((address, 8080), timeout=3).close()
        results.append(time.monotonic() - started)
    except OSError as error:
        results.append(str(error))
print(json.dumps(results))
"""


LISTENER = """
import socket, time
server = socket.create_server(("0.0.0.0", 8080), backlog=512, reuse_port=True)
server.settimeout(1)
end = time.time() + 300
while time.time() < end:
    try:
        server.accept()[0].close()
    except OSError:
        pass
"""


def test_first_connection_after_answer(own_runtad: RuntadProcess) -> None:
    lab = own_runtad.lab
    for index in range(1, TRIES + 1):
        address = f"198.51.100.{index}" if index < 53 else f"198.51.100.{index + 1}"
        lab.add_server_address(address)
        lab.dns.set_records(f"r{index}.race.test", "A", [address], 300)
    listener = lab.spawn(lab.inet_netns, ["python3", "-c", LISTENER])
    wait_for_listeners(
        server="race listener",
        process=listener,
        netns=lab.inet_netns,
        endpoints=[("198.51.100.1", 8080)],
        log_path=None,
        timeout=10,
    )
    sandbox = own_runtad.create_sandbox()
    assert sandbox.post("allow", ["*.race.test"]).status_code == 200
    assert sandbox.post("enable").status_code == 200

    result = sandbox.run(["python3", "-c", PROBE, str(TRIES)], timeout=120)
    timings = json.loads(result.stdout)
    failures = [item for item in timings if not isinstance(item, float) or item > 0.5]
    assert len(timings) == TRIES
    assert failures == []
