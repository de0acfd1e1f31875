"""Helper process for the SIGKILL test: revokes the given keys one by one, acknowledging each.

Prints ``acked <key id hex> <seq>`` only after the revocation is committed, like a car that tells
the owner's phone "revoked". The test kills this process at random moments.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tether.errors import UsageError
from tether.vehicle.keystore import VehicleStore


def main() -> None:
    store = VehicleStore.open(Path(sys.argv[1]))
    for hex_id in sys.argv[2:]:
        endpoint_id = bytes.fromhex(hex_id)
        store.refresh()
        endpoint = store.endpoint(endpoint_id)
        if endpoint is None or endpoint.revoked:
            continue
        seq = store.revocation_seq() + 1
        try:
            store.revoke(endpoint_id, seq=seq, now=time.time(), by="sigkill test")
        except UsageError:
            continue
        print(f"acked {hex_id} {seq}", flush=True)
        time.sleep(0.005)


if __name__ == "__main__":
    main()
