"""One process per item (GNU parallel's way): build the model, score one item, exit.
    one.py IN OUT"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import build_model, score_file  # noqa: E402

score_file(build_model(), sys.argv[1], sys.argv[2])
