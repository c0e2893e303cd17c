"""multiprocessing.Pool with an initializer: the model is built once per pool process.
    pool.py CHUNKS_DIR OUT_DIR PROCESSES"""
import os
import sys
from multiprocessing import Pool

from model import build_model, score_file

model = None


def init():
    global model
    model = build_model()


def run(name):
    score_file(model, os.path.join(sys.argv[1], name), os.path.join(sys.argv[2], name))


if __name__ == "__main__":
    chunks, out, processes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    with Pool(processes, initializer=init) as pool:
        for _ in pool.imap_unordered(run, sorted(os.listdir(chunks)), chunksize=1):
            pass
