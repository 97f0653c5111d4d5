"""Open a job file: a typed path with completion, or a pick from a tree of .toml files."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable, Generic, Iterable, Optional, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import DirectoryTree, Footer, Input, Static

from pq_tui.core.safe import has_unsafe, printable, printable_lines
from pq_tui.ui.screens._input import CompletingInput

log = logging.getLogger(__name__)

JOB_FILE_SUFFIX = ".toml"

# What a loader finds in a file (the console's: its jobs and lanes' slots).
Found = TypeVar("Found")
# Returns (what it found, problems); a coroutine, so that it can read the file off the event loop.
Loader = Callable[[Path], Awaitable[tuple[Optional[Found], list[str]]]]


def resolve_typed_path(text: str, start_dir: Path) -> Path:
    """The path the user means: ``~`` expanded, relative paths taken from ``start_dir``."""
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else start_dir / path


def complete_path(value: str, start_dir: Path) -> str | None:
    """Complete the last component of ``value`` to a directory or a job file in it.

    Returns ``value`` extended by the first match in name order (a directory gets a trailing
    ``/`` so the next component can follow), or None. The typed text is kept as typed, ``~``
    included, because Input shows only what extends it.
    """
    head, slash, prefix = value.rpartition("/")
    directory = resolve_typed_path(head + slash, start_dir)
    show_hidden = prefix.startswith(".")
    names = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.startswith(prefix):
                    continue
                if entry.name.startswith(".") and not show_hidden:
                    continue
                if has_unsafe(entry.name):  # not typeable, and not to be drawn raw
                    continue
                if entry.is_dir():
                    names.append(entry.name + "/")
                elif entry.name.endswith(JOB_FILE_SUFFIX):
                    names.append(entry.name)
    except OSError:
        return None
    return head + slash + min(names) if names else None


class PathSuggester(Suggester):
    """Suggests directories and job files for a path typed relative to ``start_dir``."""

    def __init__(self, start_dir: Path) -> None:
        # The cache may go stale if files appear while the dialog is open; the dialog is
        # short-lived, and the cache spares a slow SD card a directory scan per keystroke.
        super().__init__(use_cache=True, case_sensitive=True)
        self.start_dir = start_dir

    async def get_suggestion(self, value: str) -> str | None:
        # A big or slow directory must not freeze typing, so scan it off the event loop.
        return await asyncio.to_thread(complete_path, value, self.start_dir)


class JobFileTree(DirectoryTree):
    """A DirectoryTree showing only directories (not hidden ones) and job files."""

    # Emoji icons are missing or double-width on the Linux console and in many SSH fonts.
    ICON_NODE = "▶ "
    ICON_NODE_EXPANDED = "▼ "
    ICON_FILE = "  "

    def process_label(self, label: str | Text) -> Text:
        # A file name may hold any character but "/" and NUL: drawn escaped.
        return super().process_label(printable(label) if isinstance(label, str) else label)

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [
            path
            for path in paths
            if path.suffix == JOB_FILE_SUFFIX
            or (not path.name.startswith(".") and self._safe_is_dir(path))
        ]


class StartDirLine(Widget):
    """Names the directory typed paths are relative to, in one line.

    A path too long for the line loses its start rather than its end: the last components
    are the ones that tell directories apart.
    """

    PREFIX = "Paths are relative to "

    def __init__(self, path: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        try:
            self.path_text = printable(Path("~") / path.relative_to(Path.home()))
        except ValueError:
            self.path_text = printable(path)

    def render(self) -> Content:
        room = max(self.size.width - len(self.PREFIX), 1)
        shown = (
            self.path_text if len(self.path_text) <= room
            else "…" + self.path_text[-(room - 1):]
        )
        return Content(self.PREFIX + shown)


class OpenFileScreen(ModalScreen[Optional[Found]], Generic[Found]):
    """Asks for a job file and loads it; dismisses with what ``load`` found (the jobs), or None
    if cancelled.

    The file is loaded by ``load``, which returns ``(found, problems)``. If there are problems
    the dialog shows them and stays open: nothing is pushed until the file loads cleanly. The
    path is looked at off the event loop (a hung network mount must not freeze the console).
    """

    DEFAULT_CSS = """
    OpenFileScreen {
        align: center middle;

        & > #dialog {
            width: 100%;
            max-width: 90;
            height: 100%;
            max-height: 30;
            margin: 1 2 2 2;
            padding: 0 1;
            border: round $primary;
            background: $surface;
        }
        & #start-dir {
            height: 1;
            color: $text-muted;
        }
        & JobFileTree {
            height: 1fr;
            min-height: 4;
            background: $surface;
        }
        & #feedback {
            display: none;
            height: auto;
            max-height: 7;
            border-top: solid $error;
            &.-shown {
                display: block;
            }
        }
        & #headline {
            color: $text-error;
            text-style: bold;
        }
        & #problems {
            height: auto;
            max-height: 6;
            color: $text-error;
        }
    }
    """

    BINDINGS = [
        Binding(
            "escape", "cancel", "Cancel", id="open-file.cancel", tooltip="Close without opening"
        ),
    ]

    def __init__(self, start_dir: Path, load: Loader[Found],
                 title: str = "Open a job file") -> None:
        """``title``: over several hosts, it names the one the jobs go to."""
        super().__init__()
        self.start_dir = start_dir.expanduser().resolve()
        self.load = load
        self.title_text = printable(title)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = Content(self.title_text)
            dialog.border_subtitle = "Tab completes · Enter opens"
            yield StartDirLine(self.start_dir, id="start-dir")
            yield CompletingInput(
                placeholder="path to a .toml file",
                suggester=PathSuggester(self.start_dir),
                id="path",
            )
            yield JobFileTree(self.start_dir)
            with Vertical(id="feedback"):
                yield Static(id="headline", markup=False)
                with VerticalScroll(id="problems"):
                    yield Static(id="problem-lines", markup=False)
        yield Footer()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(DirectoryTree.FileSelected)
    def _file_picked(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        shown = self._display(event.path)
        if has_unsafe(shown):
            # An Input draws its text raw: such a name is opened, not typed in.
            self._open(str(event.path))
            return
        path_input = self.query_one("#path", Input)
        path_input.value = shown
        self._open(shown)

    @on(Input.Submitted, "#path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._open(event.value)

    def _open(self, text: str) -> None:
        text = text.strip()
        if not text:
            self._report("Type a path or pick a file below.")
            return
        self._open_path(text)

    @work(group="open-file", exclusive=True, description="open a job file")
    async def _open_path(self, text: str) -> None:
        def look() -> tuple[Path, str]:
            path = resolve_typed_path(text, self.start_dir).resolve()
            return path, "directory" if path.is_dir() else "file" if path.exists() else "missing"

        try:
            path, kind = await asyncio.to_thread(look)
        except Exception as error:  # a symlink loop, say
            self._report(f"Could not open {text}: {error}")
            return
        shown = self._display(path)
        if kind == "directory":
            self._enter_directory(path)
            return
        if kind == "missing":
            self._report(f"No such file: {shown}")
            return
        try:
            found, problems = await self.load(path)
        except Exception as error:  # a loader bug must not take the console down with it
            log.exception("loading %s failed", path)
            self._report(f"Could not load {shown}: {error}")
            return
        if problems:
            count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
            self._report(f"{count}, nothing was pushed", [self._shorten(p, path) for p in problems])
            return
        self.dismiss(found)

    def _enter_directory(self, path: Path) -> None:
        """Re-root the tree at ``path`` and leave the input ready for a name inside it."""
        shown = self._display(path)
        self.query_one(JobFileTree).path = path
        path_input = self.query_one("#path", Input)
        path_input.value = shown if shown.endswith("/") else shown + "/"
        path_input.cursor_position = len(path_input.value)
        self._report(f"{shown} is a directory: pick a .toml file in it.")

    def _report(self, headline: str, details: list[str] | None = None) -> None:
        # Paths and problems quote file names, ids and commands: shown escaped.
        self.query_one("#headline", Static).update(printable_lines(headline))
        self.query_one("#problem-lines", Static).update(
            "\n".join(map(printable_lines, details or ())))
        problems = self.query_one("#problems", VerticalScroll)
        problems.display = bool(details)
        problems.scroll_home(animate=False)
        self.query_one("#feedback").add_class("-shown")

    def _display(self, path: Path) -> str:
        """``path`` as the user would type it: relative to start_dir when it is inside it."""
        try:
            relative = path.relative_to(self.start_dir)
        except ValueError:
            return str(path)
        return str(relative) if relative.parts else "."

    def _shorten(self, problem: str, path: Path) -> str:
        # Loaders name the file as given, an absolute path here; at 80 columns the path as
        # the user typed it leaves room for the message.
        full = str(path)
        if problem.startswith(full):
            return self._display(path) + problem[len(full):]
        return problem
