"""Parallel ranged transfers (registry/hub/transfer.py): same blobs and manifest as one stream,
per-range retries, servers that ignore Range, resume after a kill (real SIGKILL of the CLI)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from registry.hub.errors import HubDownloadError
from registry.hub.importer import import_from_hub
from registry.hub.partial import Intervals, PartialRecord, kept_partials
from registry.workspace import Workspace
from tests.hub.fixtures import hub_server, set_hub_timeouts  # noqa: F401  (fixtures)

REPO = "Qwen/Tiny"
ROOT = Path(__file__).resolve().parents[3]
RANGE = 16_000  # bytes: several ranges per tiny shard


@pytest.fixture(autouse=True)
def _small_ranges(monkeypatch):
    monkeypatch.setenv("MODELSTORE_HUB_RANGE_MB", str(RANGE / (1 << 20)))
    monkeypatch.setenv("MODELSTORE_HUB_BACKOFF_S", "0.01")
    monkeypatch.setenv("MODELSTORE_HUB_RETRIES", "2")


def publish(hub, tiny_model, **kwargs) -> Path:
    folder = tiny_model(name="src", **kwargs)
    hub.add_repo(REPO, folder, card_license="apache-2.0")
    return folder


def weights_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def cdn_gets(hub) -> list:
    return [r for r in hub.requests.file_requests("*.safetensors") if r.server == "cdn"]


def manifest_view(result) -> tuple:
    m = result.manifest
    return ({n: (t.digest, t.nbytes) for n, t in m.tensors.items()},
            {p: f.digest for p, f in m.files.items()},
            msgspec.json.encode(m.origin.files))


def test_interval_bookkeeping():
    spans = Intervals()
    assert spans.add(10, 20) == 10 and spans.add(0, 5) == 5 and spans.add(4, 12) == 5
    assert spans.as_list() == [(0, 20)] and spans.covered_from(0) == 20 and spans.covered_from(25) == 25
    spans.add(30, 40)
    assert spans.missing(50) == [(20, 30), (40, 50)] and spans.total() == 30


def test_parallel_ranges_give_the_same_blobs_and_manifest_as_one_stream(workspace, hub_server, tiny_model,
                                                                        monkeypatch, tmp_path):
    folder = publish(hub_server, tiny_model, shards=3)
    parallel = import_from_hub(workspace, REPO, assume_yes=True, connections=4)
    gets = cdn_gets(hub_server)
    assert sum(1 for r in gets if r.range) > 3  # ranges, over the shards
    assert hub_server.requests.bytes_served("*.safetensors") == weights_size(folder)  # each byte once

    monkeypatch.setenv("MODELSTORE_HUB_RANGE_MB", "64")
    single = import_from_hub(Workspace.open(tmp_path / "single"), REPO, assume_yes=True, connections=1)
    assert manifest_view(parallel) == manifest_view(single)
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_bytes_just_received_are_fed_from_memory_and_give_what_reading_back_gives(
        workspace, hub_server, tiny_model, monkeypatch, tmp_path):
    """The feeder takes chunks a connection just wrote to the partial from memory (no read
    back); with no room to hold any, it reads every byte back: the same blobs either way."""
    import dataclasses

    from registry.hub import download, settings, transfer

    publish(hub_server, tiny_model, shards=2)
    fed = {"memory": 0, "read back": 0}
    take = transfer.RangedFile._take_fresh

    def counted(self, at):
        data = take(self, at)
        fed["memory" if data is not None else "read back"] += 1
        return data

    monkeypatch.setattr(transfer.RangedFile, "_take_fresh", counted)
    budgets = []

    class Budget(transfer.HeldBudget):  # the import's one budget, shared by its files
        def __init__(self, limit):
            super().__init__(limit)
            budgets.append(self)

    monkeypatch.setattr(download, "HeldBudget", Budget)
    held = import_from_hub(workspace, REPO, assume_yes=True, connections=2)
    assert fed["memory"] > 0
    assert len(budgets) == 1 and budgets[0].used == 0  # every held byte given back

    configured = settings.TransferSettings.configured
    monkeypatch.setattr(settings.TransferSettings, "configured",
                        classmethod(lambda cls, c=None: dataclasses.replace(configured(c), held=0)))
    fed.update({"memory": 0, "read back": 0})
    read_back = import_from_hub(Workspace.open(tmp_path / "ref"), REPO, assume_yes=True, connections=2)
    assert fed["memory"] == 0 and fed["read back"] > 0
    assert manifest_view(held) == manifest_view(read_back)
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_a_range_failing_midway_is_retried_alone_from_the_byte_it_reached(workspace, hub_server, tiny_model):
    folder = publish(hub_server, tiny_model)
    size = (folder / "model.safetensors").stat().st_size
    dropped = hub_server.faults.add(kind="drop", match="model.safetensors", skip=1, after_bytes=RANGE // 2)
    import_from_hub(workspace, REPO, assume_yes=True, connections=3)
    assert dropped.fired == 1
    gets = cdn_gets(hub_server)
    broken = next(r for r in gets if r.fault == "drop")
    start, end = map(int, broken.range.split("=")[1].split("-"))
    # The same range's end, asked again once, from the byte it reached (what arrived before the reset).
    again = [r for r in gets if r is not broken and r.range and int(r.range.split("-")[1]) == end]
    assert again and start <= int(again[0].range.split("=")[1].split("-")[0]) <= start + broken.bytes_sent
    assert len(again) == 1 and again[0].status == 206, [(r.range, r.fault, r.status, r.bytes_sent) for r in gets]
    assert len(gets) == -(-size // RANGE) + 1
    assert hub_server.requests.bytes_served("model.safetensors") <= size + broken.bytes_sent


@pytest.mark.parametrize("status", [429, 503])
def test_busy_answers_are_retried(workspace, hub_server, tiny_model, status):
    publish(hub_server, tiny_model)
    armed = hub_server.faults.add(kind="status", status=status, match="model.safetensors", times=2)
    assert import_from_hub(workspace, REPO, assume_yes=True).entry.model_name == "Tiny"
    assert armed.fired == 2


def test_a_server_ignoring_range_still_imports_with_one_stream(workspace, hub_server, tiny_model, tmp_path):
    folder = publish(hub_server, tiny_model)
    hub_server.faults.add(kind="norange", match="model.safetensors", times=None)
    result = import_from_hub(workspace, REPO, assume_yes=True, connections=4)
    reference = import_from_hub(Workspace.open(tmp_path / "ref"), REPO, assume_yes=True, connections=1)
    assert manifest_view(result) == manifest_view(reference)
    assert any(r.status == 200 and r.fault == "norange" for r in cdn_gets(hub_server))
    assert (folder / "model.safetensors").exists() and sorted(os.listdir(workspace.layout.tmp)) == []


def test_a_server_that_stops_answering_keeps_the_partials_and_the_rerun_fetches_the_rest(
        workspace, hub_server, tiny_model, monkeypatch):
    set_hub_timeouts(monkeypatch, download=0.5)
    folder = publish(hub_server, tiny_model)
    size = (folder / "model.safetensors").stat().st_size
    # The third range request onwards stalls: the first two ranges arrive, then nothing.
    hub_server.faults.add(kind="stall", match="model.safetensors", skip=2, times=None, seconds=3, after_bytes=0)
    with pytest.raises(HubDownloadError) as info:
        import_from_hub(workspace, REPO, assume_yes=True, connections=2)
    assert "stopped answering" in str(info.value) and "\n" not in str(info.value)
    assert workspace.read_registry().models == {}
    kept = kept_partials(workspace.layout.tmp)
    assert {p.suffix for p in kept} == {".part", ".rec"}
    record = msgspec.json.decode(next(p for p in kept if p.suffix == ".rec").read_bytes(), type=PartialRecord)
    have = sum(b - a for a, b in record.received)
    assert record.path == "model.safetensors" and record.size == size and have >= RANGE

    hub_server.faults.clear()
    hub_server.wait_idle()
    hub_server.requests.clear()
    assert import_from_hub(workspace, REPO, assume_yes=True).entry.model_name == "Tiny"
    assert hub_server.requests.bytes_served("model.safetensors") <= size - have + RANGE
    assert sorted(os.listdir(workspace.layout.tmp)) == []


def test_a_changed_upstream_file_never_reuses_a_partial(workspace, hub_server, tiny_model, monkeypatch):
    set_hub_timeouts(monkeypatch, download=0.5)
    publish(hub_server, tiny_model)
    hub_server.faults.add(kind="stall", match="model.safetensors", skip=1, times=None, seconds=3)
    with pytest.raises(HubDownloadError):
        import_from_hub(workspace, REPO, assume_yes=True, connections=1)
    old = {p.name for p in kept_partials(workspace.layout.tmp)}
    assert old
    hub_server.faults.clear()
    hub_server.wait_idle()
    changed = tiny_model(name="changed", seed=7)
    hub_server.add_commit(REPO, changed)
    hub_server.requests.clear()
    import_from_hub(workspace, REPO, assume_yes=True)
    assert hub_server.requests.bytes_served("model.safetensors") == (changed / "model.safetensors").stat().st_size
    assert {p.name for p in kept_partials(workspace.layout.tmp)} == old  # the old one waits for gc


# --- kill -9 of the CLI at random points, then run again -----------------------------------------


def _cli(root: Path) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "--root", str(root), "import-model", REPO, "--yes"]


def _kill_trials(hub, root: Path, folder: Path, trials: int, seed: int) -> None:
    size = weights_size(folder)
    rng = random.Random(seed)
    hub.cdn_mode(rate=400_000, delay=0.005)  # slow enough to be killed mid-download
    base = root
    for trial in range(trials):
        root = base / f"trial{trial}"  # an empty store each time
        start_bytes = hub.body_bytes
        target = start_bytes + rng.uniform(0.1, 0.9) * size
        proc = subprocess.Popen(_cli(root), start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while hub.body_bytes < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hub.wait_idle(10)
        tmp = root / ".modelstore" / "tmp"
        records = [msgspec.json.decode(p.read_bytes(), type=PartialRecord)
                   for p in kept_partials(tmp) if p.suffix == ".rec"]
        have = sum(b - a for r in records for a, b in r.received)
        files = len(list(folder.glob("*.safetensors")))
        before = hub.body_bytes
        done = subprocess.run(_cli(root), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        fetched = hub.body_bytes - before
        # Non-weight files are small: they are fetched again whole.
        others = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()
                     and not p.name.endswith(".safetensors"))
        assert (root / "models" / "Tiny").exists()
        assert fetched <= size - have + files * RANGE + others + 4096, (trial, fetched, size, have)
        check = subprocess.run([*_cli(root)[:4], "validate-registry"], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert kept_partials(tmp) == []
    hub.cdn_mode(None)


def test_kill_minus_nine_then_rerun_resumes(hub_server, tiny_model, tmp_path):
    folder = publish(hub_server, tiny_model, shards=2)
    _kill_trials(hub_server, tmp_path / "store", folder, trials=2, seed=1)


@pytest.mark.slow
def test_kill_minus_nine_at_many_points(hub_server, tiny_model, tmp_path):
    folder = publish(hub_server, tiny_model, shards=3)
    _kill_trials(hub_server, tmp_path / "store", folder, trials=8, seed=2)
