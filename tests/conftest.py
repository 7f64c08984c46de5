"""Test-session settings shared by the unit tests and the nbval notebooks."""

import os
import tempfile

# No progress bars in tests: they go to stderr, which nbval compares.
os.environ.setdefault("TQDM_DISABLE", "1")
# Notebooks executed by nbval report into a scratch folder, not runs/.
os.environ.setdefault("IRBOOK_RUN_DIR", tempfile.mkdtemp(prefix="irbook-nbval-"))

# Build matplotlib's font cache here, once: on a new machine the first import prints a notice
# to stderr, which would differ from the golden notebooks.
import matplotlib.font_manager  # noqa: E402,F401
