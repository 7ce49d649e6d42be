"""A workspace of two imported tiny models, and the ways the validation tests break it.

Model ``a`` and model ``b`` come from tiny qwen2 folders with different seeds: their
random matrices are their own blobs, while config, tokenizer, norms (ones) and biases
(zeros) are shared blobs. Tests break one thing of ``a`` (or a shared blob, on purpose)
and prove ``b`` untouched with ``snapshot``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from registry.ingest.folder import ImportResult, import_folder
from registry.workspace import Workspace

EXCLUSIVE = "model.embed_tokens.weight"  # seed-dependent: a blob of its own model only
SAME_SIZE = ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight")
SHARED = "model.norm.weight"  # ones in every tiny model: one blob shared by a and b


@dataclass
class TwoModels:
    ws: Workspace
    src_a: Path
    src_b: Path
    a: ImportResult
    b: ImportResult

    @property
    def root(self) -> Path:
        return self.ws.root

    def result(self, name: str) -> ImportResult:
        return {"a": self.a, "b": self.b}[name]

    def tensor(self, name: str, tensor: str) -> str:
        return self.result(name).manifest.tensors[tensor].digest

    def file(self, name: str, relpath: str) -> str:
        return self.result(name).manifest.files[relpath].digest

    def obj(self, digest: str) -> Path:
        return self.ws.objects.path(digest)

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def link(self, name: str, tensor: str) -> Path:
        return self.root / "models" / name / f"tensor-{tensor}.safetensors"

    def snapshot(self, name: str) -> dict:
        """Everything of model ``name``: registry entry, view (links, bytes), objects' bytes."""
        view = self.root / "models" / name
        listing = {}
        for path in sorted(view.rglob("*")):
            rel = str(path.relative_to(view))
            if path.is_symlink():
                listing[rel] = ("link", os.readlink(path), _sha(path))
            elif path.is_file():
                listing[rel] = ("file", _sha(path))
        manifest = self.result(name).manifest
        objects = {d: _sha(self.obj(d)) for d in sorted(manifest.object_digests())}
        return {"entry": self.ws.read_registry().models[name], "view": listing, "objects": objects}


def two_models(workspace: Workspace, tiny_model) -> TwoModels:
    src_a = tiny_model(name="src-a", seed=1)
    src_b = tiny_model(name="src-b", seed=2)
    a = import_folder(workspace, src_a, name="a")
    b = import_folder(workspace, src_b, name="b")
    return TwoModels(workspace, src_a, src_b, a, b)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_object(path: Path, data: bytes) -> None:
    """Replace an object's bytes in place as damage would: same inode, mode and mtime kept."""
    st = os.stat(path)
    os.chmod(path, st.st_mode | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate(len(data))
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def flip_bit(path: Path, offset: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    rewrite_object(path, bytes(data))


def finding_keys(findings) -> list[tuple]:
    """What a finding is about, without its prose: (code, severity, models, digest, path)."""
    return [(f.code, f.severity, f.models, f.digest, f.path) for f in findings]


def workspace_state(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, mode, mtime and content digest."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path), st.st_mtime_ns)
        elif path.is_file():
            state[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, _sha(path))
        else:
            state[rel] = ("dir", stat.S_IMODE(st.st_mode))
    return state


def register_child(s: TwoModels, name: str = "child", parent: str = "a"):
    """A fine-tune of ``parent``: one tensor changed, optimizer state, ``parents`` set.

    Returns (manifest digest, manifest, digest of its own tensor, digest of its optimizer state).
    """
    import msgspec

    from registry.ops import register
    from store.manifest import FileEntry, TrainingInfo, TrainingOrigin, put_manifest

    base = s.result(parent)
    tensors = dict(base.manifest.tensors)
    entry = tensors[EXCLUSIVE]
    data = bytes(entry.nbytes)  # "trained" to all zeros
    put = s.ws.objects.put_tensor(EXCLUSIVE, entry.dtype, entry.shape, data)
    tensors[EXCLUSIVE] = msgspec.structs.replace(entry, digest=put.digest)
    optimizer = s.ws.objects.put_bytes(b"adam moments of " + name.encode())
    manifest = msgspec.structs.replace(
        base.manifest, source="finetuned", tensors=tensors, parents=[base.manifest_digest],
        origin=TrainingOrigin(run=name),
        training=TrainingInfo(step=10, optimizer={"optimizer.safetensors": FileEntry(
            digest=optimizer.digest, size=optimizer.size)}),
    )
    digest = put_manifest(s.ws.objects, manifest)
    register(s.ws, name, digest, manifest, fine_tuned_from=parent)
    return digest, manifest, put.digest, optimizer.digest
