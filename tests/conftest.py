"""Test-session settings shared by the unit tests and the notebook smoke runs."""

import os
import tempfile

# No progress bars in tests: they go to stderr, which the golden comparison reads.
os.environ.setdefault("TQDM_DISABLE", "1")
# Notebooks executed outside the runner report into a scratch folder, not runs/.
os.environ.setdefault("IRBOOK_RUN_DIR", tempfile.mkdtemp(prefix="irbook-test-run-"))

# Build matplotlib's font cache here, once: on a new machine the first import prints a notice
# to stderr, which would differ from the golden notebooks.
import matplotlib.font_manager  # noqa: E402,F401
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """Every chapter executed once with the smoke profile, shared by the notebook and book tests."""
    from irbook.chapters import CHAPTERS
    from irbook.runner import run_chapter

    root = tmp_path_factory.mktemp("runs")
    for key in CHAPTERS:
        run_chapter(key, "smoke", out_root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def browser():
    """Chromium and ChromeDriver for the browser tests, or a skip naming how to install them;
    with IRBOOK_REQUIRE_BROWSER=1 (set by CI, which installs them) a missing browser fails."""
    from irbook.htmlcheck import find_browser

    try:
        return find_browser()
    except FileNotFoundError as error:
        if os.environ.get("IRBOOK_REQUIRE_BROWSER") == "1":
            raise
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def one_faiss_thread():
    """FAISS on one thread (``pytestmark = pytest.mark.usefixtures("one_faiss_thread")``):
    deterministic k-means, and no OpenMP spin-waits making builds erratic on a busy machine."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)
