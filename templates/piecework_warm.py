"""Turn a function process(in_path, out_path) into a piecework warm worker.

    # score.py
    from piecework_warm import serve
    model = load_model()                    # once per process, not once per chunk
    def process(in_path, out_path):
        with open(in_path) as src, open(out_path, "w") as dst:
            for line in src:
                dst.write(score(model, line))
    serve(process)

    piecework work JOB --warm -- python3 score.py             # one process per lane
    piecework work JOB -- python3 score.py {in} {out}         # the same script, one process per chunk

Copy this file next to your script (it ships in piecework's package, templates/piecework_warm.py).

The protocol (see `piecework work --help`): one JSON request per line on stdin,
{"v":1,"in":…,"out":…,"name":…,"files":[…]|null,"attempt":n,"job":…}; one answer line per
request on stdout: "ok" once out_path is written, or "fail <message>". While process() runs,
anything printed to stdout — by Python code or by C libraries — goes to stderr instead, so that a
library's print can never be taken for an answer. An exception fails that chunk only (its
traceback goes to stderr, which piecework keeps in the failure record); the process carries on.
"""
import json
import os
import sys
import traceback

__all__ = ["serve"]


def _private_stdout():
    """The real stdout for answers only; fd 1 (and sys.stdout) then point at stderr."""
    sys.stdout.flush()
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answers


def _one_line(text):
    return " ".join(str(text).split()) or "error"


def serve(process):
    """Answer piecework's requests with process(in_path, out_path) until stdin closes.

    Without --warm (PIECEWORK_WARM unset) it runs process() once, on the paths given as the two
    arguments ({in} {out}) or in PIECEWORK_IN / PIECEWORK_OUT, so one script serves both modes.
    """
    if not os.environ.get("PIECEWORK_WARM"):
        args = sys.argv[1:3]
        in_path, out_path = args if len(args) == 2 else (os.environ["PIECEWORK_IN"], os.environ["PIECEWORK_OUT"])
        process(in_path, out_path)
        return
    answers = _private_stdout()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            process(request["in"], request["out"])
            sys.stderr.flush()
            answers.write("ok\n")
        except Exception as error:  # one chunk failed; the process keeps serving
            traceback.print_exc()
            sys.stderr.flush()
            answers.write("fail %s\n" % _one_line("%s: %s" % (type(error).__name__, error)))


if __name__ == "__main__":
    sys.exit("piecework_warm is a module: from piecework_warm import serve; serve(process)")
