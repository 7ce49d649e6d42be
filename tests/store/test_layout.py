"""The FORMAT marker and digest <-> path mapping."""

from __future__ import annotations

import pytest

from store.errors import StoreFormatError
from store.layout import FORMAT_VERSION, Layout


def test_create_writes_format_marker_and_folders(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    assert layout.format_file.read_text() == '{"format":1,"hash":"blake3"}\n'
    assert layout.objects.is_dir() and layout.tmp.is_dir() and layout.quarantine.is_dir()
    layout.create()  # idempotent
    layout.check_format()


def test_unknown_format_version_is_refused_naming_both_numbers(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    layout.format_file.write_text('{"format": 7, "hash": "blake3"}')
    with pytest.raises(StoreFormatError) as info:
        layout.check_format()
    assert str(info.value) == (f"store format 7 is not supported: this modelstore reads format "
                               f"{FORMAT_VERSION}; upgrade modelstore to open this store")


def test_other_hash_is_refused(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    layout.format_file.write_text('{"format": 1, "hash": "sha256"}')
    with pytest.raises(StoreFormatError, match="store hash 'sha256' is not supported"):
        layout.check_format()


def test_missing_or_garbled_marker_is_refused(tmp_path):
    layout = Layout(tmp_path)
    layout.create()
    layout.format_file.write_text("format one")
    with pytest.raises(StoreFormatError, match="is unreadable"):
        layout.check_format()
    layout.format_file.unlink()
    (layout.objects / "ab").mkdir()  # a store that holds something: never taken as new
    with pytest.raises(StoreFormatError, match="has no FORMAT marker"):
        layout.check_format()


def test_digest_path_round_trip(tmp_path):
    layout = Layout(tmp_path)
    digest = "ab" + "cd" * 31
    path = layout.object_path(digest)
    assert path.relative_to(layout.objects).parts == ("ab", "cd" * 31)
    assert layout.digest_of(path) == digest
    assert layout.digest_of(tmp_path / "elsewhere") is None
    assert layout.object_relpath(digest) == f".modelstore/objects/ab/{'cd' * 31}"
