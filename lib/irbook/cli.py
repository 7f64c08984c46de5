"""The ``irbook`` command: run chapters, list their parameters, build the book, write data.

    irbook run ch02 --profile smoke -p pooling gem -p whitening none
    irbook params ch02
    irbook book --profile demo
    irbook data synth --profile demo
    irbook check-html _build/html
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .chapters import CHAPTERS, get_chapter
from .params import PROFILES, ParameterError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irbook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute one chapter notebook with papermill")
    run.add_argument("chapter", help=f"one of {', '.join(CHAPTERS)}")
    run.add_argument("--profile", default="demo", help=f"one of {', '.join(PROFILES)}")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="override one parameter (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    params = sub.add_parser("params", help="list a chapter's parameters")
    params.add_argument("chapter", help=f"one of {', '.join(CHAPTERS)}")

    book = sub.add_parser("book", help="run the chapters whose inputs changed and build the "
                                       "HTML book")
    book.add_argument("--profile", default="demo", help=f"one of {', '.join(PROFILES)}")
    book.add_argument("--no-run", action="store_true",
                      help="reuse the executed notebooks already in runs/<profile>/")
    book.add_argument("--chapters", default=None,
                      help=f"comma-separated chapters to bring up to date (default: all of "
                           f"{', '.join(CHAPTERS)}); the others keep their pages")
    book.add_argument("--force", action="store_true",
                      help="execute the chosen chapters even when nothing they depend on "
                           "changed")

    check = sub.add_parser("check-html", help="open every page of the built book in headless "
                                              "Chromium: console errors, images, math, search")
    check.add_argument("html", nargs="?", default="_build/html",
                       help="the built book (default: _build/html)")

    data = sub.add_parser("data", help="datasets: write the synthetic ones")
    data.add_argument("action", choices=("synth",))
    data.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    data.add_argument("--seed", type=int, default=0)
    return parser


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ParameterError(
            f"option '--profile' got {profile!r}; allowed: {', '.join(PROFILES)}"
        )


def _cmd_run(args: argparse.Namespace) -> int:
    from .distributed import launched_world
    from .runner import run_chapter

    chapter = get_chapter(args.chapter)
    _check_profile(args.profile)
    # run_chapter checks parameters, device, inputs and the runs folder before any work.
    out = run_chapter(chapter.key, args.profile, dict(args.param), progress=not args.quiet)
    if launched_world().rank == 0:  # under torchrun the others wrote nothing
        print(f"executed notebook and results.json in {out}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    chapter = get_chapter(args.chapter)
    print(f"{chapter.key}: {chapter.title} ({chapter.notebook})\n")
    for row in chapter.spec.describe():
        defaults = ", ".join(f"{p}={row[f'default[{p}]']!r}" for p in PROFILES)
        print(f"  {row['name']} ({row['type']}): {row['help']}")
        print(f"      allowed: {row['allowed']}")
        print(f"      defaults: {defaults}")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from .bookbuild import build_book

    _check_profile(args.profile)
    build_book(args.profile, run=not args.no_run, chapters=args.chapters, force=args.force)
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from .chapters.ch02 import SYNTH_IMAGE_SIZE
    from .data import synth
    from .paths import synthetic_dir

    root = synth.ensure_instance_suite(synthetic_dir() / args.profile, seed=args.seed,
                                       scale=args.profile,
                                       image_size=SYNTH_IMAGE_SIZE[args.profile])
    print(f"synthetic instance-retrieval suite in {root}")
    return 0


def _cmd_check_html(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .htmlcheck import chapter_pages, check_book

    root = Path(args.html)
    if not (root / "index.html").exists():
        raise FileNotFoundError(f"no built book at {root} (index.html missing); build it with "
                                "`make book` or `irbook book`")
    checks = check_book(root, [*chapter_pages(root), "index.html"])
    for check in checks:
        status = "ok" if check.ok else "FAILED"
        print(f"{status:6} {check.page} ({check.images} images, {check.math} math)")
        for problem in check.problems:
            print(f"         {problem}")
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} of {len(checks)} pages work offline")
    return 1 if failed else 0


COMMANDS = {"run": _cmd_run, "params": _cmd_params, "book": _cmd_book, "data": _cmd_data,
            "check-html": _cmd_check_html}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are printed as one or two lines with exit code 2 (refused before
    any work), 1 (failed while working) or 130 (interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("irbook: interrupted; the same command resumes from the last finished epoch",
              file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - known errors become messages, others re-raise
        code = _exit_code(error)
        if code is None:
            raise
        print(f"irbook: error: {error}", file=sys.stderr)
        return code


def _exit_code(error: Exception) -> int | None:
    """2: bad input refused before any work; 1: a run that failed; None: a bug (traceback)."""
    from .bookbuild import BookBuildError
    from .runner import ChapterRunError, RunsFolderError
    from .train.loop import CheckpointWriteError

    if isinstance(error, (RunsFolderError, ParameterError, ValueError, FileNotFoundError)):
        return 2
    if isinstance(error, (ChapterRunError, BookBuildError, CheckpointWriteError, OSError)):
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
