"""piecework's side: the helper from templates/ turns score_file into a warm worker; without
--warm (PIECEWORK_WARM unset) the same script scores one chunk, {in} {out}, and exits."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(here, "..", "..", "templates")]
from model import build_model, score_file  # noqa: E402
from piecework_warm import serve  # noqa: E402

model = build_model()
serve(lambda in_path, out_path: score_file(model, in_path, out_path))
