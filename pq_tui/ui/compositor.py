"""Textual's compositor, with partial updates that render only the rows they paint.

A partial update (Textual 8) renders every widget that overlaps the bounding box of all the
dirty regions, each of them whole, and then paints only the dirty rows. With a job printing a
line a second the dirty rows are the job's row in the table and the log's new line, far apart:
the box is the screen, and every widget of it was rendered again for two rows. Here each widget
renders just its rows that are painted (and those between them); the rows it skips are never
looked at (`Compositor._render_chops` passes over the rows that are not painted).

This leans on Textual's private compositor API; where it is not as expected the update is
Textual's own. The change belongs upstream (Textual's `_get_renders` could take the rows).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Iterable, List, Optional

from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region
from textual.strip import Strip

_UNPAINTED = Strip([])  # a row of a render that no update paints: never looked at


class PaintedRowsCompositor(Compositor):
    """A `Compositor` whose partial updates render of each widget only its rows from the first
    to the last that is painted (one render each: a render's cost is mostly its own, not its
    rows', so two runs of rows in one widget are rendered as one)."""

    _painted_rows: Optional[List[int]] = None  # sorted

    def render_partial_update(self) -> Optional[ChopsUpdate]:
        spans = getattr(self, "_regions_to_spans", None)
        if spans is None or not self._dirty_regions:
            return super().render_partial_update()
        self._painted_rows = sorted({y for y, _, _ in spans(self._dirty_regions)})
        try:
            return super().render_partial_update()
        finally:
            self._painted_rows = None

    def _get_renders(self, crop: Optional[Region] = None) -> Iterable:
        rows = self._painted_rows
        if rows is None or crop is None:
            yield from super()._get_renders(crop)
            return
        for widget, (region, clip) in self.visible_widgets.items():
            if not crop.overlaps(clip):
                continue
            area = region.intersection(clip)
            first = bisect_left(rows, area.y)
            last = bisect_left(rows, area.bottom) - 1
            if not area.width or first > last:
                continue  # none of its rows is painted
            top, bottom = rows[first], rows[last] + 1
            strips = [_UNPAINTED] * area.height
            strips[top - area.y:bottom - area.y] = widget.render_lines(
                Region(area.x - region.x, top - region.y, area.width, bottom - top))
            yield region, clip, strips
