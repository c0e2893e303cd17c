# A warm worker in plain Python: the model is built once per process, then each request line on
# stdin is one chunk. Answer "ok" when the output is written, "fail <message>" otherwise.
#
#   piecework work JOB -j 4 --warm -- python3 examples/warm/score.py
import json
import sys

# Stands in for the expensive part: imports, a model read from disk, a GPU context…
WEIGHTS = {word: len(word) % 5 for word in "the of and a to in is was he for it with".split()}

for line in sys.stdin:
    request = json.loads(line)
    try:
        with open(request["in"]) as src, open(request["out"], "w") as dst:
            for text in src:
                score = sum(WEIGHTS.get(word, 1) for word in text.split())
                dst.write(f"{score}\t{text}")
        print("ok", flush=True)
    except Exception as error:
        print("fail", " ".join(str(error).split()), flush=True)
