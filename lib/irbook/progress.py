"""Progress bars for long work: one place decides when they are shown."""

from __future__ import annotations

import os
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A ``tqdm.auto`` bar, hidden when ``enabled`` is false or ``TQDM_DISABLE=1`` is set.

    Tests and the nbval golden notebooks set ``TQDM_DISABLE`` because bars write timings.
    """
    hidden = not enabled or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(iterable, disable=hidden, **kwargs)
