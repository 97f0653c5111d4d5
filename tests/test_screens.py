"""Pilot tests of the modal dialogs in pq_tui.ui.screens, each pushed over a tiny host app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Awaitable, Callable

import pytest
from textual.app import App
from textual.geometry import Region
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Label, Static

from pq_tui.ui.screens import ConfirmScreen, HelpScreen, OpenFileScreen, PromptScreen
from pq_tui.ui.screens.open_file import JobFileTree, complete_path, resolve_typed_path

SIZE = (80, 24)


class Host(App):
    """Pushes one dialog at start and records what it dismisses with."""

    def __init__(self, make_dialog: Callable[[], Screen]) -> None:
        super().__init__()
        self.make_dialog = make_dialog
        self.results: list = []

    def on_mount(self) -> None:
        self.push_screen(self.make_dialog(), self.results.append)


def run(make_dialog: Callable[[], Screen], drive: Callable[[Host, Pilot], Awaitable[None]]) -> Host:
    """Run ``drive`` against the dialog ``make_dialog`` makes, at 80x24; returns the host to
    inspect afterwards. The dialog is made inside the running app: on Python 3.9 a widget made
    outside an event loop fails (Textual creates asyncio locks in its constructor)."""
    app = Host(make_dialog)

    async def inner() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await drive(app, pilot)

    asyncio.run(inner())
    return app


async def wait_for(pilot: Pilot, condition: Callable[[], bool], what: str) -> None:
    """Suggestions and directory listings arrive from workers; give them a moment."""
    for _ in range(200):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(app: App, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


# -- open a job file -----------------------------------------------------------


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / "nightly.toml").write_text('[[job]]\ncmd = "make"\n')
    (tmp_path / "broken.toml").write_text("bad\nbad\n")
    (tmp_path / "notes.txt").write_text("not a job file")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "demo.toml").write_text('[[job]]\ncmd = "true"\n')
    (tmp_path / ".git").mkdir()
    return tmp_path


class StubLoader:
    """Stands in for the app's loader: every line containing "bad" is a problem."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    async def __call__(self, path: Path) -> tuple[list, list[str]]:
        self.calls.append(path)
        lines = path.read_text().splitlines()
        problems = [f"{path}:{number}: bad line" for number, line in enumerate(lines, 1) if "bad" in line]
        return ([] if problems else [f"jobs of {path.name}"]), problems


def open_file(job_dir: Path, loader: StubLoader | None = None) -> OpenFileScreen:
    return OpenFileScreen(job_dir, loader or StubLoader())


def test_typed_path_and_enter_dismisses_with_the_jobs(job_dir: Path) -> None:
    loader = StubLoader()

    async def drive(app: Host, pilot: Pilot) -> None:
        assert app.focused is app.screen.query_one("#path")
        await pilot.press(*"examples/demo.toml", "enter")
        await pilot.pause()

    app = run(lambda: open_file(job_dir, loader), drive)
    assert app.results == [["jobs of demo.toml"]]
    assert loader.calls == [job_dir.resolve() / "examples" / "demo.toml"]


def test_problems_are_shown_and_the_dialog_stays_open(job_dir: Path) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"broken.toml", "enter")
        await pilot.pause()
        assert isinstance(app.screen, OpenFileScreen)
        assert text_of(app, "#headline") == "2 problems, nothing was pushed"
        # The loader names the file by its full path; the dialog shortens it to fit 80 columns.
        assert text_of(app, "#problem-lines") == "broken.toml:1: bad line\nbroken.toml:2: bad line"
        assert app.screen.query_one("#problems").display
        await pilot.press("escape")

    assert run(lambda: open_file(job_dir), drive).results == [None]


def test_a_missing_path_is_reported(job_dir: Path) -> None:
    loader = StubLoader()

    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"nope.toml", "enter")
        await pilot.pause()
        assert isinstance(app.screen, OpenFileScreen)
        assert text_of(app, "#headline") == "No such file: nope.toml"
        assert not app.screen.query_one("#problems").display

    assert run(lambda: open_file(job_dir, loader), drive).results == []
    assert loader.calls == []


def test_a_directory_moves_the_tree_there(job_dir: Path) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"examples", "enter")
        await pilot.pause()
        assert text_of(app, "#headline") == "examples is a directory: pick a .toml file in it."
        assert app.screen.query_one(JobFileTree).path == job_dir.resolve() / "examples"
        assert app.screen.query_one("#path", Input).value == "examples/"
        await pilot.press(*"demo.toml", "enter")
        await pilot.pause()

    assert run(lambda: open_file(job_dir), drive).results == [["jobs of demo.toml"]]


def test_tab_completes_a_job_file_from_a_prefix(job_dir: Path) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        path_input = app.screen.query_one("#path", Input)
        await pilot.press(*"ni")
        await wait_for(pilot, lambda: path_input._suggestion == "nightly.toml", "a suggestion")
        await pilot.press("tab")
        assert path_input.value == "nightly.toml"
        assert app.focused is path_input
        await pilot.press("enter")
        await pilot.pause()

    assert run(lambda: open_file(job_dir), drive).results == [["jobs of nightly.toml"]]


def test_tab_without_a_suggestion_moves_to_the_tree(job_dir: Path) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press("tab")
        assert app.focused is app.screen.query_one(JobFileTree)

    run(lambda: open_file(job_dir), drive)


def test_a_file_is_picked_in_the_tree_by_keyboard(job_dir: Path) -> None:
    loader = StubLoader()

    async def drive(app: Host, pilot: Pilot) -> None:
        tree = app.screen.query_one(JobFileTree)
        await wait_for(pilot, lambda: bool(tree.root.children), "the tree")
        # Directories first, then files by name; .git and notes.txt are filtered out.
        assert [str(node.label) for node in tree.root.children] == ["examples", "broken.toml", "nightly.toml"]
        await pilot.press("tab", "down", "enter")  # onto "examples", open it
        await wait_for(pilot, lambda: bool(tree.root.children[0].children), "examples to load")
        await pilot.press("down", "enter")  # onto examples/demo.toml, pick it
        await pilot.pause()

    assert run(lambda: open_file(job_dir, loader), drive).results == [["jobs of demo.toml"]]
    assert loader.calls == [job_dir.resolve() / "examples" / "demo.toml"]


def test_escape_cancels_the_file_dialog(job_dir: Path) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"nightly", "escape")

    assert run(lambda: open_file(job_dir), drive).results == [None]


def test_a_loader_that_raises_is_reported_not_fatal(job_dir: Path) -> None:
    async def failing_loader(path: Path) -> tuple[list, list[str]]:
        raise RuntimeError("disk on fire")

    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"nightly.toml", "enter")
        await pilot.pause()
        assert text_of(app, "#headline") == "Could not load nightly.toml: disk on fire"

    assert run(lambda: OpenFileScreen(job_dir, failing_loader), drive).results == []


def test_complete_path(job_dir: Path) -> None:
    assert complete_path("ex", job_dir) == "examples/"
    assert complete_path("examples/d", job_dir) == "examples/demo.toml"
    assert complete_path("b", job_dir) == "broken.toml"
    assert complete_path("no", job_dir) is None  # notes.txt is not a job file
    assert complete_path(".g", job_dir) == ".git/"  # hidden only when asked for
    assert complete_path("examples/", job_dir) == "examples/demo.toml"
    assert complete_path("missing/x", job_dir) is None
    assert complete_path(f"{job_dir}/ni", Path("/")) == f"{job_dir}/nightly.toml"


def test_resolve_typed_path(job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(job_dir))
    assert resolve_typed_path("~/nightly.toml", Path("/elsewhere")) == job_dir / "nightly.toml"
    assert resolve_typed_path("a/b.toml", Path("/start")) == Path("/start/a/b.toml")
    assert resolve_typed_path("/abs.toml", Path("/start")) == Path("/abs.toml")
    assert complete_path("~/ni", Path("/")) == "~/nightly.toml"


# -- prompt --------------------------------------------------------------------


def test_prompt_returns_the_stripped_value() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"  make test ", "enter")

    assert run(lambda: PromptScreen("Add a command to lane build"), drive).results == ["make test"]


def test_prompt_starts_with_the_initial_value_selected() -> None:
    async def keep(app: Host, pilot: Pilot) -> None:
        await pilot.press("enter")

    async def replace(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"warn", "enter")

    async def edit(app: Host, pilot: Pilot) -> None:
        await pilot.press("end", "backspace", "2", "enter")

    assert run(lambda: PromptScreen("Search the log", value="error 1"), keep).results == ["error 1"]
    assert run(lambda: PromptScreen("Search the log", value="error 1"), replace).results == ["warn"]
    assert run(lambda: PromptScreen("Search the log", value="error 1"), edit).results == ["error 2"]


def test_an_empty_answer_cancels_unless_allowed() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press("space", "enter")

    assert run(lambda: PromptScreen("Search the log"), drive).results == [None]
    assert run(lambda: PromptScreen("Search the log", allow_empty=True), drive).results == [""]


def test_a_validation_error_is_shown_and_the_prompt_stays_open() -> None:
    lanes = ["build", "test"]

    def known_lane(name: str) -> str | None:
        return None if name in lanes else f'no lane "{name}"'

    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"soak", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        error = app.screen.query_one("#error", Static)
        assert error.display and str(error.render()) == 'no lane "soak"'
        await pilot.press("backspace")  # editing clears the error
        assert not error.display
        await pilot.press("ctrl+u", *"test", "enter")

    app = run(lambda: PromptScreen("Move job x to lane", validate=known_lane), drive)
    assert app.results == ["test"]


def test_escape_cancels_the_prompt() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*"make", "escape")

    assert run(lambda: PromptScreen("Add a command to lane build"), drive).results == [None]


def test_prompt_suggestions_complete_with_tab() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        answer = app.screen.query_one("#answer", Input)
        await pilot.press(*"te")
        await wait_for(pilot, lambda: answer._suggestion == "test", "a suggestion")
        await pilot.press("tab", "enter")

    app = run(lambda: PromptScreen("Move job x to lane", suggestions=["build", "test"]), drive)
    assert app.results == ["test"]


def test_prompt_title_is_not_markup() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        assert app.screen.query_one("#dialog").border_title == r"Move job \[x] to lane"

    run(lambda: PromptScreen("Move job [x] to lane"), drive)


# -- confirm -------------------------------------------------------------------

MESSAGE = (
    "2 jobs are running: build, soak. Their process trees will be killed; logs are kept. "
    "3 queued jobs will not run."
)


@pytest.mark.parametrize(
    ("danger", "keys", "expected"),
    [
        (False, ["y"], True),
        (False, ["enter"], True),
        (False, ["n"], False),
        (False, ["escape"], False),
        (False, ["tab", "enter"], False),
        (True, ["y"], True),
        # A dangerous action is never confirmed by a stray Enter: it lands on cancel.
        (True, ["enter"], False),
        (True, ["tab", "enter"], True),
        (True, ["escape"], False),
    ],
)
def test_confirm_keys(danger: bool, keys: list[str], expected: bool) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(*keys)
        await pilot.pause()

    def dialog() -> ConfirmScreen:
        return ConfirmScreen("Quit pq-tui?", MESSAGE, confirm_label="Kill and quit", danger=danger)

    assert run(dialog, drive).results == [expected]


def test_confirm_shows_the_message() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        assert text_of(app, "#message") == MESSAGE
        assert app.screen.has_class("-danger")

    run(lambda: ConfirmScreen("Quit pq-tui?", MESSAGE, danger=True), drive)


# -- help ----------------------------------------------------------------------

ROWS = [
    ("a", "Add a command to the lane", "Queue"),
    ("K", "Kill the job's process tree", "Jobs"),
    ("m", "Move the job to another lane", "Queue"),
    ("ctrl+[", "Not markup", "App"),
]


def test_help_lists_the_rows_grouped() -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        labels = [str(label.render()) for label in app.screen.query(Label)]
        assert labels == [
            "Queue", "",
            "a", "Add a command to the lane",
            "m", "Move the job to another lane",
            "Jobs", "",
            "K", "Kill the job's process tree",
            "App", "",
            "ctrl+[", "Not markup",
        ]  # fmt: skip
        assert text_of(app, "#intro").startswith("pq-tui: lanes run side by side")

    run(lambda: HelpScreen(ROWS), drive)


@pytest.mark.parametrize("key", ["escape", "question_mark", "q"])
def test_help_closes(key: str) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        await pilot.press(key)

    assert run(lambda: HelpScreen(ROWS), drive).results == [None]


def test_help_scrolls_by_keyboard() -> None:
    rows = [(f"k{number}", f"Key number {number}", f"Group {number // 5}") for number in range(40)]

    async def drive(app: Host, pilot: Pilot) -> None:
        dialog = app.screen.query_one("#dialog")
        assert app.focused is dialog and dialog.max_scroll_y > 0
        await pilot.press("end")
        assert dialog.scroll_y == dialog.max_scroll_y

    run(lambda: HelpScreen(rows), drive)


# -- all of them at 80x24 ------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: OpenFileScreen(tmp, StubLoader()),
        lambda tmp: PromptScreen("Add a command to lane build", help_text="Runs in the lane's cwd."),
        lambda tmp: ConfirmScreen("Quit pq-tui?", MESSAGE),
        lambda tmp: HelpScreen(ROWS * 10),
    ],
    ids=["open_file", "prompt", "confirm", "help"],
)
def test_the_dialog_fits_above_the_footer(make: Callable[[Path], Screen], tmp_path: Path) -> None:
    async def drive(app: Host, pilot: Pilot) -> None:
        above_footer = Region(0, 0, SIZE[0], SIZE[1] - 1)
        assert above_footer.contains_region(app.screen.query_one("#dialog").region)

    run(lambda: make(tmp_path), drive)
