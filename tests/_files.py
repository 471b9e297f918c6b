"""Editing saved varinf files in tests: crafted and corrupted headers and arrays."""

import json

import numpy as np


def _rewrite(path, change):
    """Rewrite the npz at path with change(entries) applied (entries: name -> array)."""
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    change(entries)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def _edit_meta(path, edit):
    """Apply edit(meta) to the JSON of the file at path (json.dumps writes NaN as NaN)."""
    def change(entries):
        meta = json.loads(str(entries["__varinf__"]))
        edit(meta)
        entries["__varinf__"] = np.array(json.dumps(meta))
    _rewrite(path, change)
