"""Fetch and warm what the lessons would otherwise fetch at run time (Binder's postBuild runs this).

    python binder/prefetch.py

- ImageNet weights of the online backbones (resnet18, resnet50, mobilenet_v3_large), which the
  lessons offer as alternatives to the offline efficientnet_lite0, into torchvision's cache;
- matplotlib's font cache, so the first plot of a session is not slow;
- a check that the offline models load (EfficientNet-Lite0, -Lite1, -Lite2 and the sentence encoder).

Offline, the downloads are reported as skipped and the script still exits 0: nothing here is
needed to run the course, it only saves learners waiting.
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    started = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # builds the font cache on first import

    plt.figure().savefig(__import__("io").BytesIO())
    print("matplotlib font cache: ready")

    import xferlib as xl

    problems = 0
    for name, row in xl.list_backbones().iterrows():
        t = time.perf_counter()
        try:
            xl.load_backbone(name)
            print(f"{name}: weights ready ({time.perf_counter() - t:.1f} s)")
        except xl.BackboneUnavailable as err:
            if row["offline"]:  # the offline model must always load
                print(f"{name}: FAILED: {err}")
                problems += 1
            else:
                print(f"{name}: skipped, cannot download now ({str(err).split('(')[0].strip()})")
    try:
        from xferlib import text

        text.load_text_encoder()
        print("sentence encoder: ready")
    except ImportError as err:  # xferlib.text not present, or its packages missing
        print(f"sentence encoder: skipped ({err})")
    print(f"prefetch done in {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
