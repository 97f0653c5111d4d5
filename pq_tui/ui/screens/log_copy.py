"""The main screen's copy keys: ``y``, ``Y``, ``w`` and ``ctrl+c`` in a log pane.

What is copied or written is plain text: each line in its last state, without colours or any
other escape (``pq_tui.core.logfile.plain_line``, through ``pq_tui.core.safe``): a job's output
can hold sequences that a terminal acts on, and a pasted log must not act on anything. Selected
lines are the text shown; the whole log is what ``pq-tui log ID`` prints (stderr marked ``! ``,
pq-tui's notes ``# ``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from textual import work

from pq_tui.core.logfile import format_log_lines, log_file_name, log_transcript, plain_line
from pq_tui.core.safe import printable
from pq_tui.ui.clipboard import COPY_LIMIT
from pq_tui.ui.screens.confirm import ConfirmScreen
from pq_tui.ui.screens.prompt import PromptScreen
from pq_tui.ui.widgets.log_pane import LogPane
from pq_tui.ui.widgets.log_view import LogView

if TYPE_CHECKING:
    from textual.app import App

HELP_ROWS = [
    ("v", "in the log: select lines from the cursor; ↑↓ PgUp PgDn Home extend, Esc drops", "Log"),
    ("y", "copy the selected lines, or the cursor's line, to your clipboard (OSC 52)", "Log"),
    ("Y", f"copy the job's whole output (up to {COPY_LIMIT // 1024} KiB, else to a file)", "Log"),
    ("w", "write the selected lines, or the whole log, to a file", "Log"),
    ("ctrl+c", "copy what is selected: lines (v), or text the mouse selected; never quits",
     "Log"),
]


class LogCopy:
    """Copying and writing out of the log panes, for MainScreen (the panes' keys post
    ``LogView.CopyAsked``)."""

    if TYPE_CHECKING:
        app: App
        start_dir: Path

        def _panes(self) -> list[LogPane]: ...

        def notify(self, message: str, *, title: str = "", severity: str = "information",
                   timeout: Optional[float] = None, markup: bool = False) -> None: ...

    def on_log_view_copy_asked(self, event: LogView.CopyAsked) -> None:
        event.stop()
        pane = event.log_view.parent
        if not isinstance(pane, LogPane):
            return
        if event.what == "log":
            self._copy_log(pane)
        elif event.what == "file":
            self._write_file(pane, whole=pane.view.selection is None)
        else:
            self._copy_lines(pane.view)

    def copy_selection(self) -> bool:
        """``ctrl+c`` wherever the focus is: copy the lines selected in a pane, if there are."""
        for pane in self._panes():
            if pane.view.selection is not None:
                self._copy_lines(pane.view)
                return True
        return False

    def _copy_lines(self, view: LogView) -> None:
        lines = view.chosen_lines()
        if not lines:
            self.notify("nothing to copy: the log is empty")
            return
        view.drop_selection()
        self.app.copy_to_clipboard("\n".join(plain_line(stream, text) for stream, text in lines))

    @work(group="copy-log", exclusive=True, description="read a job's log to copy it")
    async def _copy_log(self, pane: LogPane) -> None:
        job = pane.shown
        if job is None:
            return
        try:
            text = await asyncio.to_thread(_read_at_most, _whole_log(pane), COPY_LIMIT)
        except OSError as exc:
            self.notify(f"cannot read the log {printable(job.log_path)}: {exc.strerror or exc}",
                        severity="error")
            return
        if text is None:
            self._write_file(pane, whole=True, note=(
                f"Its output is over {COPY_LIMIT // 1024} KiB, more than a copy to the clipboard "
                "takes (OSC 52 through tmux and most terminals): write it to a file instead."))
        elif not text:
            self.notify("nothing to copy: the log is empty")
        else:
            self.app.copy_to_clipboard(text)

    def _write_file(self, pane: LogPane, whole: bool, note: str = "") -> None:
        job = pane.shown
        if job is None:
            return
        # Taken now: the pane may show another job by the time the name is typed.
        pieces: Iterable[str]
        if whole:
            what, pieces = f"the log of {job.id}", _whole_log(pane)
        else:
            chosen = [plain_line(stream, text) + "\n" for stream, text in pane.view.chosen_lines()]
            what = f"{len(chosen)} line{'' if len(chosen) == 1 else 's'} of {job.id}"
            pieces = chosen
            pane.view.drop_selection()
        start_dir = self.start_dir
        from pq_tui.ui.screens.open_file import resolve_typed_path  # DirectoryTree: at first use

        def validate(answer: str) -> Optional[str]:
            return write_problem(resolve_typed_path(answer, start_dir))

        def answered(answer: Optional[str]) -> None:
            if not answer:
                return
            path = resolve_typed_path(answer, start_dir)
            if not path.exists():
                self._write(path, pieces, overwrite=False)
                return

            def confirmed(yes: Optional[bool]) -> None:
                if yes:
                    self._write(path, pieces, overwrite=True)

            self.app.push_screen(ConfirmScreen(f"Overwrite {path}?",
                                               "The file is there already: replace it?",
                                               confirm_label="Overwrite", danger=True),
                                 confirmed)

        self.app.push_screen(
            PromptScreen(f"Write {what} to a file", value=log_file_name(job.id, job.run),
                         help_text=note or f"A path relative to {start_dir}, or ~/…",
                         validate=validate),
            answered)

    @work(group="write-log", description="write log lines to a file")
    async def _write(self, path: Path, pieces: Iterable[str], overwrite: bool) -> None:
        try:
            lines = await asyncio.to_thread(_write_pieces, path, pieces, overwrite)
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"{lines} line{'' if lines == 1 else 's'} written to {path}")


def write_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be written, in one line, or None (an existing file is asked about
    later, not refused)."""
    if path.is_dir():
        return f"{path} is a directory: name a file in it"
    parent = path.parent
    if not parent.exists():
        return f"no such directory: {parent}"
    if not parent.is_dir():
        return f"not a directory: {parent}"
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        return f"no permission to write {path}"
    return None


def _whole_log(pane: LogPane) -> Iterable[str]:
    """The shown job's log as ``pq-tui log`` prints it; a job without a log file (it never
    started) as the pane holds it."""
    job = pane.shown
    if job is not None and job.log_path:
        return log_transcript(job.log_path)
    return [format_log_lines(pane.view.lines)]


def _read_at_most(pieces: Iterable[str], limit: int) -> Optional[str]:
    """The pieces joined, or None once they are over ``limit`` bytes of UTF-8 (read no
    further)."""
    kept: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece.encode("utf-8", "surrogateescape"))
        if size > limit:
            return None
        kept.append(piece)
    return "".join(kept)


def _write_pieces(path: Path, pieces: Iterable[str], overwrite: bool) -> int:
    """Write the pieces to ``path`` (a new file unless ``overwrite``); the lines written."""
    lines = 0
    with open(path, "w" if overwrite else "x", encoding="utf-8", errors="surrogateescape") as f:
        for piece in pieces:
            f.write(piece)
            lines += piece.count("\n")
    return lines
