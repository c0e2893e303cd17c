"""Dask distributed's LocalCluster: one process per worker, the model built once per worker by a
worker plugin, one task per item.
    dask_local.py CHUNKS_DIR OUT_DIR WORKERS"""
import os
import sys

from distributed import Client, LocalCluster, WorkerPlugin, get_worker

from model import build_model, score_file


class Model(WorkerPlugin):
    def setup(self, worker):
        worker.piecework_bench_model = build_model()


def run(in_path, out_path):
    score_file(get_worker().piecework_bench_model, in_path, out_path)


if __name__ == "__main__":
    chunks, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=True)
    # Its scratch space beside the job, which the bench removes (by default Dask leaves
    # dask-worker-space/ with two lock files in /tmp).
    space = os.path.join(os.path.dirname(os.path.abspath(out)), "dask-space")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, local_directory=space) as cluster, Client(cluster) as client:
        client.register_worker_plugin(Model())
        names = sorted(os.listdir(chunks))
        futures = client.map(run, [os.path.join(chunks, n) for n in names], [os.path.join(out, n) for n in names], pure=False)
        client.gather(futures)
