"""Smoke test of an installed bulkhead Python package, run from outside the repository:

    python smoke.py MOCK_BINARY EXPECTED_LIBRARY_PREFIX

Imports the package with no BULKHEAD_LIB, checks the library came from
EXPECTED_LIBRARY_PREFIX (the throw-away virtual environment), tracks three events to the
mock and checks they arrived.
"""

import json
import os
import subprocess
import sys
import urllib.request


def main() -> None:
    mock_bin, prefix = sys.argv[1], os.path.realpath(sys.argv[2])
    if os.environ.get("BULKHEAD_LIB"):
        sys.exit("BULKHEAD_LIB is set; the smoke test must load the installed copy")
    import bulkhead

    path = os.path.realpath(bulkhead.library_path)
    if not path.startswith(prefix + os.sep):
        sys.exit(f"library loaded from {path}, not from under {prefix}")
    mock = subprocess.Popen(
        [mock_bin, "--port", "0", "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = mock.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            sys.exit("bulkhead-mock printed no URL")
        with bulkhead.Client(token="tok", api_host=url, flush_interval_ms=50) as client:
            for i in range(3):
                if not client.track(f"u{i}", "Smoke", {"n": i}):
                    sys.exit("track refused")
            if not client.flush(timeout=10):
                sys.exit("flush timed out")
            stats = client.stats()
        if stats.enqueued != 3 or stats.sent != 3:
            sys.exit(f"stats: {stats}")
        with urllib.request.urlopen(f"{url}/_mock/stats", timeout=10) as r:
            got = json.load(r)
        if got["events"] != 3:
            sys.exit(f"mock stats: {got}")
        print(f"python smoke ok: bulkhead {bulkhead.__version__} from {path}")
    finally:
        mock.terminate()
        mock.wait(10)


if __name__ == "__main__":
    main()
