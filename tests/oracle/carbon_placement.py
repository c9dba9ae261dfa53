"""Placement oracle: where carbon's own router sends each name.

Reads JSON from stdin:
  {"names": [...], "cases": [{"method": "carbon_ch" | "fnv1a_ch",
    "dests": ["host:port[:instance]", ...], "replication": N, "diverse": bool}]}
and writes JSON to stdout: for each case, for each name, the list of indices
into "dests" that carbon's ConsistentHashingRouter.getDestinations yields, in
order, without repeats (carbon-relay sends to a set of client factories, so a
destination yielded twice is sent to once).

It imports carbon from the graphite-carbon package: run it with the
interpreter of carbon's own scripts (the shebang of `carbon-cache`).
"""

import json
import sys

try:
    import carbon  # noqa: F401
except ImportError:
    # Debian's graphite-carbon installs carbon for the system python3.
    sys.path.append("/usr/lib/python3/dist-packages")

from carbon.routers import ConsistentHashingRouter  # noqa: E402
from carbon.util import parseDestinations  # noqa: E402


class Settings(dict):
    """The attribute-style settings object the router reads."""

    __getattr__ = dict.__getitem__


def main():
    req = json.load(sys.stdin)
    names = req["names"]
    results = []
    for case in req["cases"]:
        settings = Settings(
            REPLICATION_FACTOR=case["replication"],
            DIVERSE_REPLICAS=case["diverse"],
            ROUTER_HASH_TYPE=case["method"],
        )
        router = ConsistentHashingRouter(settings)
        dests = parseDestinations(case["dests"])
        for d in dests:
            router.addDestination(d)
        index = {(s, i): n for n, (s, _p, i) in enumerate(dests)}
        placed = []
        for name in names:
            out = []
            for (server, _port, instance) in router.getDestinations(name):
                n = index[(server, instance)]
                if n not in out:
                    out.append(n)
            placed.append(out)
        results.append(placed)
    json.dump(results, sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main()
