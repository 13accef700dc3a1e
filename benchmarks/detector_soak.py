"""Memory over many detector calls: bare ``yuface.detect`` vs dsfnet's detector (a script, not a test).

``yuface.detect`` leaks ~30 KB per call in its C code; :class:`dsfnet.detect.YuFaceDetector` sends its calls
through :class:`dsfnet.detect.recycling.RecyclingCaller` (in-process for the first 1,000, then a worker process
replaced every 2,000). Each phase runs in its own fresh process (so one's leak does not count against the other)
and prints the resident-set growth of that process and of its workers, in MB, and per call in KB.

    python benchmarks/detector_soak.py [--calls 5000] [--size 320]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

_PHASE = r"""
import json, sys, numpy as np, cv2, importlib.resources as r
from dsfnet.io import read_image
calls, size, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
img = cv2.resize(read_image(str(r.files("dsfnet.assets") / "sample.jpg")), (size, size))
def rss(pid="self"):
    try:
        return int(open(f"/proc/{pid}/statm").read().split()[1]) * 4096 / 1e6
    except OSError:
        return 0.0
if which == "bare":
    import yuface
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    call = lambda: yuface.detect(bgr, 0.5)
else:
    from dsfnet.detect.yuface_detector import DETECT_CALLER, YuFaceDetector
    det = YuFaceDetector()
    call = lambda: det.detect(img)
call()
start, peak_worker = rss(), 0.0
for i in range(calls):
    call()
    if which != "bare" and DETECT_CALLER.worker_pid:
        peak_worker = max(peak_worker, rss(DETECT_CALLER.worker_pid))
print(json.dumps({"growth_mb": rss() - start, "peak_worker_mb": peak_worker}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--size", type=int, default=320, help="image side in px (small: the leak, not detection, is measured)")
    args = ap.parse_args()
    print(f"{args.calls} calls on a {args.size}² image")
    for which in ("bare", "dsfnet"):
        out = subprocess.run([sys.executable, "-c", _PHASE, str(args.calls), str(args.size), which],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        extra = f", largest worker RSS {r['peak_worker_mb']:.0f} MB" if which == "dsfnet" else ""
        print(f"{which:7s} main-process growth {r['growth_mb']:7.1f} MB ({1000 * r['growth_mb'] / args.calls:5.1f} KB/call)"
              f"{extra}")


if __name__ == "__main__":
    main()
