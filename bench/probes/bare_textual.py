"""Issue 17 target 4's floor: a bare Textual app, a Static and a Footer, started the way the
console is (a new interpreter in a terminal). Its Static shows the words the bench waits for in
the console's first frame (the job table's header), so both are timed alike."""

from textual.app import App, ComposeResult
from textual.widgets import Footer, Static


class Bare(App):
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static("  #  ID    LANE    STATE")
        yield Footer()


if __name__ == "__main__":
    Bare().run()
