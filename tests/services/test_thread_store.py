"""The runtime service's local store of evicted threads (services/runtime/store.py): where its
file lives, and that a store named by process id does not outlive a clean stop."""

from __future__ import annotations

import os
from pathlib import Path

from services.runtime.store import ThreadStore, store_path


def test_a_static_instance_finds_its_store_again(tmp_path: Path) -> None:
    path = store_path(tmp_path, "flowai.runtime", "runtime-a")
    assert path == tmp_path / "flowai.runtime.runtime-a.sqlite"
    store = ThreadStore(path)
    store.close()
    assert path.exists()
    reopened = ThreadStore(path)
    reopened.close()
    assert path.exists()


def test_a_store_named_by_process_id_is_removed_on_a_clean_stop(tmp_path: Path) -> None:
    path = store_path(tmp_path, "flowai.runtime", None)
    assert path.name == f"flowai.runtime.pid{os.getpid()}.sqlite"
    store = ThreadStore(path, remove_on_close=True)
    assert path.exists()
    store.close()
    assert sorted(tmp_path.iterdir()) == []


def test_unsafe_characters_in_names_stay_inside_the_state_directory(tmp_path: Path) -> None:
    path = store_path(tmp_path, "../group", "a/b")
    assert path.parent == tmp_path
    assert "/" not in path.name
