"""Wait until an HTTP URL answers 200 (used by mk/trace.mk): wait_http.py URL [SECONDS] [LOG]."""

import sys
import time
import urllib.request

url, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 180.0
deadline = time.monotonic() + seconds
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        log = f": see {sys.argv[3]}" if len(sys.argv) > 3 else ""
        sys.exit(f"{url} did not answer in {seconds:.0f} s{log}")
    time.sleep(0.5)
