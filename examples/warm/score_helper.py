# The same worker with templates/piecework_warm.py: write process(in_path, out_path), call serve().
# One script for both modes:
#   piecework work JOB --warm -- python3 examples/warm/score_helper.py
#   piecework work JOB -- python3 examples/warm/score_helper.py {in} {out}
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "templates"))
from piecework_warm import serve  # noqa: E402

WEIGHTS = {"error": 3, "warning": 2, "timeout": 1}  # built once per process


def process(in_path, out_path):
    with open(in_path) as src, open(out_path, "w") as dst:
        for text in src:
            dst.write(f"{sum(WEIGHTS.get(w, 0) for w in text.split())}\t{text}")


serve(process)
