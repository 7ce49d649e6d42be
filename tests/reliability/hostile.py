"""The hostile-input catalogue, as data, and ``run_hostile``: every input through the real CLI.

The promise under test: given hostile input the store keeps working, loses nothing and never
writes outside its own folders. Each ``Case`` names the input, the command line that feeds
it to ``python main.py``, and the exact refusal expected (exit code and the fragment of the
one error line naming the bad name, path or tensor); ``hostile_scene.run_case`` runs it and
judges the result. Categories:

- names: ``--name`` values (traversal, separators, control characters, length, the store's
  own files, case and Unicode look-alikes of a registered name), and names given to other
  commands. NUL cannot travel in argv, so it comes through a train config;
- repo_ids: import-model SOURCE strings that would climb out of a folder or a URL;
- hub_listing: a Hub repo whose file listing holds a hostile path (the fake Hub serves it);
- safetensors: malformed headers, hostile tensor names, an index naming shards outside;
- pickle: pickle weights whose payload would create a marker file, local and on the Hub;
- remote_code: a config.json whose ``auto_map`` points at code creating a marker;
- symlinks: links planted in ``models/`` and ``.modelstore/`` (``hostile_links``).

``run_hostile()`` returns the figures for the README's reliability table.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.reliability import hostile_files as files
from tests.reliability.hostile_links import LINK_CASES
from tests.reliability.hostile_scene import MODEL, Case, Scene, make_scene, make_template, run_case

IMPORT = "import-model"
NAME_HINT = "; choose another name with --name"


def _fixed(text: str) -> Callable[[Scene], str]:
    return lambda scene: text


def _import_named(name: str | Callable[[Scene], str]) -> Callable[[Scene], list[str]]:
    return lambda scene: [IMPORT, str(scene.src), "--name", name(scene) if callable(name) else name, "-y"]


def _name_case(case_id: str, name: str | Callable[[Scene], str], rule: str) -> Case:
    shown = (lambda scene: repr(name(scene))) if callable(name) else _fixed(repr(name))
    return Case("names", case_id, _import_named(name), 2,
                lambda scene: f"error: invalid model name {shown(scene)}: {rule}")


def _nul_config(scene: Scene) -> list[str]:
    path = scene.base / "nul.toml"
    if not path.exists():  # beside the workspace: the watch must see only what the CLI does
        path.write_text(f'model_name = "{MODEL}"\noutput_name = "a\\u0000b"\n')
    return ["train", "--config", str(path)]


def _delete_case(case_id: str, name: Callable[[Scene], str]) -> Case:
    """delete-model only looks a name up: a hostile one is simply not registered."""
    return Case("names", f"delete-{case_id}", lambda s: ["delete-model", name(s), "-y", "--delete-files"], 1,
                lambda s: f"error: no model named {name(s)!r} is registered")


SEPARATOR = "a name must not contain '/' or '\\'"
CONTROL = "a name must not contain control characters (NUL, newline, tab, ...)"
OWN_FILE = "is the name of one of the store's own files"
CASE_OF_GOOD = "it differs only by case from the registered model 'good'"
ASCII_ONLY = "use only ASCII letters, digits, '.', '_', '-' and '+'"
NAME_CASES = [
    _name_case("dotdot", "..", "a name must not contain '..'"),
    _name_case("dotdot-climb", "../../outside/x", SEPARATOR),
    _name_case("absolute", "/abs", SEPARATOR),
    _name_case("absolute-into-sentinel", lambda s: str(s.outside / "abs"), SEPARATOR),
    _name_case("slash", "a/b", SEPARATOR),
    _name_case("backslash", "a\\b", SEPARATOR),
    _name_case("backslash-climb", "..\\..\\x", SEPARATOR),
    _name_case("leading-dot", ".hidden", "a name must not start with '.'"),
    _name_case("newline", "a\nb", CONTROL),
    _name_case("tab", "a\tb", CONTROL),
    _name_case("300-chars", "x" * 300, "a name must be at most 100 characters (this one has 300)"),
    _name_case("empty", "", "a name must not be empty"),
    _name_case("registry.json", "registry.json", f"'registry.json' {OWN_FILE}"),
    _name_case("REGISTRY.JSON", "REGISTRY.JSON", f"'REGISTRY.JSON' {OWN_FILE}"),
    _name_case("registry.json.prev", "registry.json.prev", f"'registry.json.prev' {OWN_FILE}"),
    _name_case("device-name", "CON", "'CON' is a reserved device name on Windows"),
    _name_case("checkpoint-at", "good@step-1", "'@' is reserved for checkpoint references"),
    _name_case("case-of-registered", "GOOD", CASE_OF_GOOD),
    _name_case("case-mixed", "Good", CASE_OF_GOOD),
    # Unicode look-alikes and normalisation variants: refused as non-ASCII before any comparison.
    _name_case("fullwidth-lookalike", "\uff47\uff4f\uff4f\uff44", ASCII_ONLY),
    _name_case("zero-width-joiner", "good\u200d", ASCII_ONLY),
    _name_case("latin-script-g", "\u0261ood", ASCII_ONLY),
    _name_case("nfc-accent", "caf\u00e9", ASCII_ONLY),
    _name_case("nfd-accent", "cafe\u0301", ASCII_ONLY),
    Case("names", "nul-via-train-config", _nul_config, 2,
         _fixed(f"key 'output_name': invalid model name 'a\\x00b': {CONTROL}"), slow=True),
    _delete_case("dotdot", lambda s: ".."),
    _delete_case("climb", lambda s: "../outside"),
    _delete_case("absolute", lambda s: str(s.outside)),
    _delete_case("case", lambda s: "GOOD"),
]


def _source_case(case_id: str, source: str, exit_code: int, message: Callable[[Scene], str]) -> Case:
    return Case("repo_ids", case_id, lambda scene: [IMPORT, source, "-y"], exit_code, message)


def _missing(rel: str) -> Callable[[Scene], str]:
    return lambda scene: f"error: {scene.ws / rel} does not exist"


def _not_repo(source: str, reason: str) -> Callable[[Scene], str]:
    return _fixed(f"error: {source!r} is not a Hub model repo: {reason}")


DOTDOT = "a repo id must not contain '--' or '..'"
# Anything that is not namespace/name is a local path (missing here), else a refused Hub id.
REPO_ID_CASES = [
    _source_case("dotdot-x", "../x", 1, _missing("../x")),
    _source_case("absolute", "/abs", 1, _fixed("error: /abs does not exist")),
    _source_case("three-parts", "a/b/c", 1, _missing("a/b/c")),
    _source_case("a-dotdot", "a/..", 2, _not_repo("a/..", DOTDOT)),
    _source_case("drive", "C:\\x", 1, _missing("C:\\x")),
    _source_case("backslash-dotdot", "..\\x", 1, _missing("..\\x")),
    _source_case("hf-dotdot", "hf://../x", 2, _not_repo("hf://../x", DOTDOT)),
    _source_case("hf-climb", "hf://a/../../b", 2,
                 _not_repo("hf://a/../../b", "a repo id is namespace/name, with exactly one '/'")),
    _source_case("hf-git-config", "hf://.git/config", 2,
                 _not_repo("hf://.git/config", "'.git' is not a valid part of a repo id")),
    _source_case("url-climb", "https://huggingface.co/../../etc/passwd", 2,
                 _not_repo("https://huggingface.co/../../etc/passwd", DOTDOT)),
    _source_case("dot-git-suffix", "org/name.git", 2,
                 _not_repo("org/name.git", "a repo id must not end with '.git'")),
]


def _with_weights(write: Callable[[Path], None]) -> Callable[[Scene], None]:
    return lambda scene: write(scene.src)


def _weights_case(case_id: str, write: Callable[[Path], None], reason: str) -> Case:
    return Case("safetensors", case_id, _import_named("bad"), 1,
                lambda scene: f"error: {scene.src / files.WEIGHTS} is not a valid safetensors file: "
                              f"{reason}; re-export the weights with safetensors (nothing was imported)",
                prepare=_with_weights(write))


def _index_case(case_id: str, shard: Callable[[Scene], str]) -> Case:
    return Case("safetensors", case_id, _import_named("bad"), 1,
                lambda scene: f"the checkpoint index names missing shard {shard(scene)!r}",
                prepare=lambda scene: files.index_naming(shard(scene))(scene.src))


SAFETENSORS_CASES = [
    *[_weights_case(cid, write, reason) for cid, (write, reason) in files.MALFORMED_SAFETENSORS.items()],
    *[_weights_case(cid, files.tensor_named(name), f"tensor name {name!r} is unusable: it {rule}")
      for cid, (name, rule) in files.HOSTILE_TENSOR_NAMES.items()],
    _index_case("index-shard-climbs", lambda scene: "../outside/keep.txt"),
    _index_case("index-shard-absolute", lambda scene: str(scene.outside / "nested" / "data.bin")),
]


def _pickle_only(payload: Callable[[Path], bytes]) -> Callable[[Scene], None]:
    def prepare(scene: Scene) -> None:
        (scene.src / files.WEIGHTS).unlink()
        (scene.src / "pytorch_model.bin").write_bytes(payload(scene.marker))
    return prepare


def _pickle_renamed(payload: Callable[[Path], bytes]) -> Callable[[Scene], None]:
    return lambda scene: (scene.src / files.WEIGHTS).write_bytes(payload(scene.marker))


def _pickle_beside(scene: Scene) -> None:
    (scene.src / "pytorch_model.bin").write_bytes(files.pickle_payload(scene.marker))


def _not_stored(*names: str, view: str = "imported") -> Callable[[Scene], list[str]]:
    def check(scene: Scene) -> list[str]:
        folder = scene.ws / "models" / view
        missing = [] if folder.is_dir() else [f"models/{view} was not registered"]
        return missing + [f"models/{view}/{n} was stored" for n in names if (folder / n).exists()]
    return check


_PICKLE_HINT = ("which modelstore never loads because unpickling can run arbitrary code; convert the "
                "weights to safetensors")
PICKLE_CASES = [
    Case("pickle", "pickle-only", _import_named("bad"), 1,
         lambda s: f"error: {s.src}/pytorch_model.bin holds pickle weights and no safetensors weights, "
                   + _PICKLE_HINT, prepare=_pickle_only(files.pickle_payload)),
    Case("pickle", "torch-zip-only", _import_named("bad"), 1,
         lambda s: f"error: {s.src}/pytorch_model.bin holds pickle weights and no safetensors weights",
         prepare=_pickle_only(files.zip_pickle_payload)),
    Case("pickle", "pickle-renamed-safetensors", _import_named("bad"), 1,
         lambda s: f"error: {s.src / files.WEIGHTS} holds pickle weights (a pickle stream), " + _PICKLE_HINT,
         prepare=_pickle_renamed(files.pickle_payload)),
    Case("pickle", "torch-zip-renamed-safetensors", _import_named("bad"), 1,
         lambda s: f"error: {s.src / files.WEIGHTS} holds pickle weights (a zip archive: PyTorch's "
                   "torch.save format)", prepare=_pickle_renamed(files.zip_pickle_payload)),
    Case("pickle", "pickle-beside-safetensors", _import_named("imported"), 0,
         _fixed("warning: skipped pytorch_model.bin: pickle weights are never loaded"),
         prepare=_pickle_beside, acts=True, sole_line=False, check=_not_stored("pytorch_model.bin")),
]


def _auto_map(model_type: str | None = None) -> Callable[[Scene], None]:
    def prepare(scene: Scene) -> None:
        config = scene.src / "config.json"
        config.write_bytes(files.with_auto_map(config.read_bytes(), model_type))
        for name, data in files.remote_code(scene.marker).items():
            (scene.src / name).write_bytes(data)
    return prepare


def _imported_with_auto_map(scene: Scene) -> None:
    from registry.ingest.folder import import_folder
    from registry.workspace import Workspace

    _auto_map()(scene)
    import_folder(Workspace.open(scene.ws), scene.src, name="imported")


REMOTE_CODE_CASES = [
    Case("remote_code", "auto-map-skipped", _import_named("imported"), 0,
         _fixed("warning: skipped modeling_evil.py: remote code is never run"), prepare=_auto_map(),
         acts=True, sole_line=False, check=_not_stored("modeling_evil.py")),
    Case("remote_code", "auto-map-unknown-architecture", _import_named("imported"), 1,
         lambda s: f"error: unsupported architecture 'evil' in {s.src / 'config.json'}; supported:",
         prepare=_auto_map("evil")),
    # The view keeps config.json verbatim, auto_map included: loading it must still not run code.
    Case("remote_code", "auto-map-generate",
         lambda s: ["generate", "imported", "--prompt", "hi", "--max-new-tokens", "2", "--device", "cpu"],
         0, _fixed("imported"), prepare=_imported_with_auto_map, sole_line=False, slow=True, timeout=300),
]

# Paths a hostile or broken endpoint could list; the Hub import must refuse the repo whole.
HOSTILE_LISTING = {
    "dotdot-json": ("../evil.json", "it has an empty, '.' or '..' component"),
    "absolute-etc": ("/etc/x", "it is absolute"),
    "absolute-into-sentinel": ("{outside}/x.json", "it is absolute"),
    "drive": ("C:\\x", "it is absolute"),
    "backslash-dotdot": ("..\\x", "it contains a backslash"),
    "git-config": (".git/config", "it is inside .git"),
    "climb-through-folder": ("a/../../b", "it has an empty, '.' or '..' component"),
    "double-slash": ("a//b.json", "it has an empty, '.' or '..' component"),
}


def _hub_repo(case_id: str, extra: Callable[[Scene], dict[str, bytes]], *, raw_paths: bool = False,
              drop: tuple[str, ...] = ()) -> Callable[[Scene], None]:
    """Publish ``src/`` (less ``drop``, plus ``extra``) on the fake Hub as ``evil/CASE_ID``."""
    def prepare(scene: Scene) -> None:
        content = {p.name: p.read_bytes() for p in scene.src.iterdir() if p.name not in drop}
        content.update(extra(scene))
        scene.hub.add_repo(f"evil/{case_id}", content, card_license="mit", raw_paths=raw_paths)
    return prepare


def _nothing_fetched(repo_id: str) -> Callable[[Scene], list[str]]:
    def check(scene: Scene) -> list[str]:
        fetched = [r.file for r in scene.hub.requests.file_requests(method="*") if r.repo_id == repo_id]
        return [f"files of {repo_id} were requested: {fetched}"] if fetched else []
    return check


def _listing_case(case_id: str, path: str, problem: str) -> Case:
    where = lambda s: path.format(outside=s.outside)  # noqa: E731
    return Case("hub_listing", case_id, lambda s: [IMPORT, f"evil/{case_id}", "-y"], 1,
                lambda s: f"lists the unsafe file path {where(s)!r} ({problem}); the whole repo is refused",
                prepare=_hub_repo(case_id, lambda s: {where(s): b"{}"}, raw_paths=True),
                check=_nothing_fetched(f"evil/{case_id}"), hub=True)


def _hub_weights_case(category: str, case_id: str, weights: Callable[[Scene], bytes],
                      message: str) -> Case:
    """model.safetensors on the Hub is hostile: it is fetched (to a temp file), checked, refused."""
    return Case(category, case_id, lambda s: [IMPORT, f"evil/{case_id}", "-y"], 1, _fixed(message),
                hub=True, sole_line=False, prepare=_hub_repo(case_id, lambda s: {files.WEIGHTS: weights(s)}))


HUB_CASES = [
    *[_listing_case(cid, path, problem) for cid, (path, problem) in HOSTILE_LISTING.items()],
    Case("pickle", "hub-pickle-only", lambda s: [IMPORT, "evil/hub-pickle-only", "-y"], 1,
         _fixed("/pytorch_model.bin holds pickle weights and no safetensors weights, " + _PICKLE_HINT),
         prepare=_hub_repo("hub-pickle-only", lambda s: {"pytorch_model.bin": files.pickle_payload(s.marker)},
                           drop=(files.WEIGHTS,)),
         check=_nothing_fetched("evil/hub-pickle-only"), hub=True, sole_line=False),
    _hub_weights_case("pickle", "hub-pickle-renamed", lambda s: files.pickle_payload(s.marker),
                      f"/{files.WEIGHTS} holds pickle weights (a pickle stream), " + _PICKLE_HINT),
    _hub_weights_case("safetensors", "hub-header-past-end", lambda s: files.HEADER_PAST_END,
                      f"/{files.WEIGHTS} is not a valid safetensors file: header length 1000 runs past"),
    # A Hub import loads the model once (the load check): with auto_map, that must not run code either.
    Case("remote_code", "hub-auto-map-load-check", lambda s: [IMPORT, "evil/hub-auto-map", "-y"], 0,
         _fixed("warning: skipped modeling_evil.py: remote code is never run"), hub=True, acts=True,
         sole_line=False, slow=True, timeout=300, check=_not_stored("modeling_evil.py", view="hub-auto-map"),
         prepare=_hub_repo("hub-auto-map", lambda s: {
             "config.json": files.with_auto_map((s.src / "config.json").read_bytes()),
             **files.remote_code(s.marker)})),
]

CASES: list[Case] = [*NAME_CASES, *REPO_ID_CASES, *SAFETENSORS_CASES, *PICKLE_CASES, *REMOTE_CODE_CASES,
                     *HUB_CASES, *LINK_CASES]
CATEGORIES = sorted({case.category for case in CASES})


def run_hostile(cases: list[Case] | None = None, *, workdir: Path | None = None,
                template: Path | None = None, verify: str = "always") -> dict:
    """Run every case (or ``cases``) in a fresh scene; return the figures.

    ``template``: a ``make_template`` folder to reuse (default: one is built, with a tiny model).

    ``{"tried", "accepted", "wrote_outside", "store_changed", "tracebacks", "failed": [ids],
    "by_category": {category: {"tried", "accepted", "wrote_outside", "store_changed", "tracebacks",
    "failed"}}}``: ``failed`` counts the cases with any broken promise (``failed`` lists them).
    """
    from tests.fixtures.tiny import write_tiny_model
    from tests.hub.server import HubServer

    cases = CASES if cases is None else cases
    owned = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="hostile-")) if owned else workdir
    figures = {"tried": 0, "accepted": 0, "wrote_outside": 0, "store_changed": 0, "tracebacks": 0,
               "failed": [], "by_category": {}}
    try:
        if template is None:
            template = make_template(workdir / "template", write_tiny_model(workdir / "tiny", "qwen2"))
        with HubServer() as hub:
            for i, case in enumerate(cases):
                scene = make_scene(workdir / f"{i:03d}-{case.category}", template, hub if case.hub else None)
                outcome = run_case(case, scene, verify=verify)
                row = figures["by_category"].setdefault(
                    case.category, {"tried": 0, "accepted": 0, "wrote_outside": 0, "store_changed": 0,
                                    "tracebacks": 0, "failed": 0})
                for key, value in (("tried", True), ("accepted", outcome.accepted),
                                   ("wrote_outside", outcome.wrote_outside),
                                   ("store_changed", outcome.store_changed),
                                   ("tracebacks", outcome.traceback)):
                    row[key] += int(value)
                    figures[key] += int(value)
                row["failed"] += int(bool(outcome.problems))
                if outcome.problems:
                    figures["failed"].append(f"{case.category}/{case.id}: {'; '.join(outcome.problems)}")
                shutil.rmtree(scene.base, ignore_errors=True)
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)
    return figures
