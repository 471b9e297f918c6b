"""Progress display for long loops: tqdm when it is installed and the output is a terminal,
otherwise nothing (no progress bars in logs)."""

from __future__ import annotations

import sys

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # tqdm is optional
    _tqdm = None

__all__ = ["Progress"]


class Progress:
    """A progress bar showing the latest objective value, or a no-op."""

    def __init__(self, total: int, enabled: bool = True, label: str = "objective"):
        interactive = getattr(sys.stderr, "isatty", lambda: False)()
        self._bar = None
        if enabled and _tqdm is not None and interactive:
            self._bar = _tqdm(total=total, leave=False, dynamic_ncols=True)
        self.label = label

    def update(self, value: float, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)
            self._bar.set_postfix({self.label: f"{value:.5g}"})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
