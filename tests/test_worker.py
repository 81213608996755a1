"""Background worker: rounds, held-out gate, failures that change nothing, non-blocking ranking, bursts."""

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from trainer.checkpoint import load_checkpoint
from trainer.data import Pair, content_id, is_held_out, read_table
from trainer.registry import create_method
from trainer.worker import TrainingWorker, WorkerConfig, latest_version, train_burst

DATA = Path(__file__).resolve().parent / "data"
TEXT = "Rank by the number of shapes."


class MemoryPairSource:
    """A label store in a list, as the app's store would be behind the PairSource protocol."""

    def __init__(self, reverse_held_out: bool = False):
        table = read_table(DATA / "count.tsv")
        self.images = {}
        counts = {}
        for item in table.items[:12]:
            data = item.read_bytes()
            self.images[content_id(data)] = data
            counts[content_id(data)] = item.target
        ids = sorted(counts)
        self.lock = threading.Lock()
        self._pairs = []
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                pid = f"{a[:8]}-{b[:8]}"
                label = 0.5 if counts[a] == counts[b] else float(counts[a] > counts[b])
                if reverse_held_out and is_held_out(pid, 0.3) and label != 0.5:
                    label = 1.0 - label  # held-out labels contradict the training ones
                self._pairs.append(Pair(TEXT, a, b, label, pid, "tester"))

    def pairs(self, instruction=None):
        with self.lock:
            return [p for p in self._pairs if instruction is None or p.instruction == instruction]

    def image_bytes(self, content_id):
        return self.images[content_id]


def make_worker(demo_backbone, tmp_path, source=None, **config):
    torch.manual_seed(0)
    method = create_method("rac", demo_backbone, dropout=0.0)
    defaults = dict(steps=12, batch_size=16, lr=1e-3, warmup_steps=2, holdout_fraction=0.3, device="cpu",
                    checkpoint_dir=str(tmp_path / "versions"), poll_seconds=0.05, min_new_labels=1)
    return TrainingWorker(source or MemoryPairSource(), demo_backbone, method, WorkerConfig(**{**defaults, **config}))


def test_round_publishes_a_better_version(demo_backbone, tmp_path):
    worker = make_worker(demo_backbone, tmp_path)
    assert worker.run_round() is True
    status = worker.status()
    assert (status.state, status.version, status.rounds, status.last_error) == ("idle", 1, 1, None)
    assert status.labels_used + status.held_out_labels == 66 and status.held_out_labels > 5
    point = status.curve[0]
    assert point["published"] and point["held_out_accuracy"] >= point["previous_accuracy"]
    assert status.held_out_accuracy == point["held_out_accuracy"] and status.progress == 1.0
    saved = latest_version(tmp_path / "versions")
    assert saved.name == "v0001.safetensors"
    reloaded = load_checkpoint(saved, backbone=demo_backbone)
    assert reloaded.info["metadata"]["version"] == 1
    feats = worker.cache.get(sorted(worker.source.images))
    with torch.no_grad():  # the serving path: no autograd (TransformerEncoder's fast path)
        assert torch.equal(reloaded.method.score(feats, TEXT), worker.score(feats, TEXT))


def test_failed_round_changes_nothing_and_next_round_succeeds(demo_backbone, tmp_path):
    source = MemoryPairSource()
    worker = make_worker(demo_backbone, tmp_path, source)
    before_pairs = source.pairs()
    version, served = worker.current()

    def explode(trainer, logs):
        if trainer.step == 3:
            raise RuntimeError("injected failure at step 3")

    worker.callbacks.append(explode)
    assert worker.run_round() is False
    status = worker.status()
    assert status.state == "error" and status.last_error == "RuntimeError: injected failure at step 3"
    assert status.step == 3 and status.version == 0 and worker.current() == (version, served)
    assert source.pairs() == before_pairs  # every label still there, untouched
    assert latest_version(tmp_path / "versions") is None
    feats = worker.cache.get(sorted(source.images))
    with torch.no_grad():
        assert torch.equal(worker.score(feats, TEXT), served.score(feats, TEXT))  # the old version still serves
    worker.callbacks.clear()
    assert worker.run_round() is True
    status = worker.status()
    assert (status.state, status.version, status.last_error, status.rounds) == ("idle", 1, None, 2)
    assert worker.current()[1] is not served


def test_no_publish_when_held_out_accuracy_drops(demo_backbone, tmp_path):
    worker = make_worker(demo_backbone, tmp_path, MemoryPairSource(reverse_held_out=True), steps=30)
    assert worker.run_round() is False
    point = worker.status().curve[0]
    assert not point["published"] and point["held_out_accuracy"] < point["previous_accuracy"]
    assert worker.status().version == 0 and worker.status().state == "idle"
    assert worker.status().held_out_accuracy == point["previous_accuracy"]


def test_ranking_never_waits_for_a_running_round(demo_backbone, tmp_path):
    worker = make_worker(demo_backbone, tmp_path, steps=6)
    inside, release = threading.Event(), threading.Event()

    def hold(trainer, logs):  # park the round mid-way, inside the training loop
        if trainer.step == 2:
            inside.set()
            assert release.wait(120)

    worker.callbacks.append(hold)
    worker.start()
    try:
        assert inside.wait(120), "the round did not start"
        status = worker.status()
        assert status.state == "training" and status.step == 2
        version, served = worker.current()
        keys = sorted(worker.source.images)
        feats = worker.cache.get(keys)
        with ThreadPoolExecutor(1) as pool:  # a request thread, as the web server's
            for _ in range(5):
                # Deadlock guard only: were ranking to wait for the round, this would never return.
                scores = pool.submit(worker.score, feats, TEXT).result(timeout=120)
                with torch.no_grad():
                    assert scores.shape == (12,) and torch.equal(scores, served.score(feats, TEXT))
        assert worker.status().state == "training" and worker.status().step == 2  # still mid-round
        release.set()
        assert worker.wait_for_rounds(1, timeout=120)
        assert worker.status().version == 1 and worker.current()[1] is not served
    finally:
        release.set()
        worker.stop()
    assert worker.status().state == "stopped" and not worker._thread.is_alive()


def test_request_round_and_clean_stop(demo_backbone, tmp_path):
    worker = make_worker(demo_backbone, tmp_path, min_new_labels=10_000, poll_seconds=0.05)
    worker.start()
    worker.request_round()
    assert worker.wait_for_rounds(1, timeout=120)
    worker.stop()
    assert not worker._thread.is_alive() and worker.status().state == "stopped"
    assert worker.status().version == 1


def test_burst_arguments_and_results_pickle(demo_backbone, tmp_path):
    calls = []

    def burst(spec):  # what a ZeroGPU @spaces.GPU function sees: pickled in, pickled out
        spec = pickle.loads(pickle.dumps(spec))
        calls.append(spec.train.steps)
        result = train_burst(demo_backbone, spec, device="cpu")
        assert all(v.device.type == "cpu" for v in result["state"].values())
        return pickle.loads(pickle.dumps(result))

    worker = make_worker(demo_backbone, tmp_path)
    worker.burst_fn = burst
    assert worker.run_round() is True and calls == [12]
    assert worker.status().version == 1
