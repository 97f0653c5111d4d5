"""``F``: search the logs of every job; Enter on a hit opens that job's log at that line.

The queue searches (``Queue.search``: in the server when attached, in a thread when embedded);
the hits come in batches and go into the list as they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from pq_tui.core.queue import Queue
from pq_tui.core.safe import printable
from pq_tui.core.search import Hit, Query, SearchError, Unreadable


@dataclass(frozen=True)
class Jump:
    """Where Enter goes: a hit, and the search that found it (to mark its matches)."""

    hit: Hit
    query: Query


class SearchScreen(ModalScreen[Optional[Jump]]):
    """A pattern, two toggles, and the hits as they come."""

    DEFAULT_CSS = """
    SearchScreen {
        align: center middle;
        & > #search-dialog {
            width: 100%;
            height: 100%;
            padding: 0 1;
            border: round $primary;
            background: $surface;
        }
        & #search-options {
            height: auto;
        }
        & Checkbox {
            border: none;
            padding: 0 1;
            background: $surface;
        }
        & #search-status {
            color: $text-muted;
            height: 1;
        }
        & #search-hits {
            height: 1fr;
            border: none;
        }
    }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="search.close", tooltip="Close the search"),
        Binding("ctrl+r", "flip('regex')", "Regex", id="search.regex",
                tooltip="The pattern is a regular expression, or plain text"),
        Binding("ctrl+t", "flip('case')", "Case", id="search.case",
                tooltip="Tell upper and lower case apart, or not"),
    ]

    def __init__(self, queue: Queue, pattern: str = "") -> None:
        super().__init__()
        self.queue = queue
        self.initial = pattern
        self.hits: List[Hit] = []
        self.query_used: Optional[Query] = None

    def compose(self) -> ComposeResult:
        with Vertical(id="search-dialog") as dialog:
            dialog.border_title = "Search every log"
            dialog.border_subtitle = "Enter searches, then opens a hit · Esc closes"
            yield Input(self.initial, placeholder="pattern", id="search-pattern")
            with Horizontal(id="search-options"):
                yield Checkbox("regex (ctrl+r)", True, id="search-regex", compact=True)
                yield Checkbox("ignore case (ctrl+t)", False, id="search-case", compact=True)
            yield Static("", id="search-status", markup=False)
            yield OptionList(id="search-hits")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search-pattern", Input).focus()

    def action_close(self) -> None:
        self.workers.cancel_group(self, "search")
        self.dismiss(None)

    def action_flip(self, which: str) -> None:
        box = self.query_one(f"#search-{which}", Checkbox)
        box.value = not box.value

    @on(Input.Submitted, "#search-pattern")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value:
            self.start(event.value)

    def start(self, pattern: str) -> None:
        query = Query(pattern, fixed=not self.query_one("#search-regex", Checkbox).value,
                      ignore_case=self.query_one("#search-case", Checkbox).value)
        self.hits = []
        self.query_one("#search-hits", OptionList).clear_options()
        self.run_search(query)

    @work(group="search", exclusive=True)
    async def run_search(self, query: Query) -> None:
        status = self.query_one("#search-status", Static)
        hits = self.query_one("#search-hits", OptionList)
        status.update("searching…")
        unreadable = 0
        more = False
        try:
            async for batch in self.queue.search(query):
                new = [item for item in batch.found if isinstance(item, Hit)]
                unreadable += sum(1 for item in batch.found if isinstance(item, Unreadable))
                if new:
                    first = not self.hits
                    self.hits += new
                    hits.add_options([Option(hit_text(hit)) for hit in new])
                    if first:
                        hits.highlighted = 0
                        hits.focus()
                    status.update(f"{len(self.hits)} hits, searching…")
                more = more or batch.more
        except SearchError as exc:
            status.update(str(exc))
            return
        self.query_used = query
        count = f"{len(self.hits)} hit{'' if len(self.hits) == 1 else 's'}"
        status.update(
            (f"{count} (more… stopped at {query.max_hits})" if more else count or "no hits")
            + (f"; {unreadable} logs could not be read" if unreadable else ""))

    @on(OptionList.OptionSelected, "#search-hits")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_index < len(self.hits):
            query = self.query_used or Query(self.query_one("#search-pattern", Input).value)
            self.workers.cancel_group(self, "search")
            self.dismiss(Jump(self.hits[event.option_index], query))


def hit_text(hit: Hit) -> Text:
    """``job:line: text``, the matches marked. The text is safe (``plain_line``); the id is
    foreign too."""
    text = Text.assemble((printable(hit.job_id), "magenta"), ":", (str(hit.line), "green"),
                         ": ", no_wrap=True, overflow="ellipsis")
    start = len(text)
    text.append(hit.text.replace("\t", " "))  # one cell each: the spans stay where they are
    for first, last in hit.spans:
        text.stylize("bold reverse", start + first, start + last)
    return text
