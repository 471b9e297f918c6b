"""Progress display for long loops: a tqdm bar when stderr is a terminal; otherwise (logs)
the notes a loop writes at its milestones, one line each on stderr. ``enabled=False`` silences
both."""

from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """Steps done, the latest objective value, and milestone notes."""

    def __init__(self, total: int, enabled: bool = True, label: str = "objective"):
        interactive = getattr(sys.stderr, "isatty", lambda: False)()
        self.enabled = bool(enabled)
        self.label = label
        self._bar = None
        if self.enabled and interactive:
            from tqdm.auto import tqdm  # on first use: tqdm.auto takes long to import

            self._bar = tqdm(total=total, leave=False, dynamic_ncols=True)

    def update(self, steps: int = 1, value: float | None = None) -> None:
        if self._bar is not None:
            self._bar.update(steps)
            if value is not None:
                self._bar.set_postfix({self.label: f"{value:.5g}"})

    def note(self, text: str) -> None:
        """A milestone (an epoch's end): beside the bar, or a line of its own in a log."""
        if self._bar is not None:
            self._bar.set_postfix_str(text)
        elif self.enabled:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
