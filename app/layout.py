"""Window sizes that fit the screen: a wanted size shrunk to the screen's usable area, centred."""
from __future__ import annotations

# Room left for a task bar / dock and the window manager's title bar and borders (pixels). Tk
# cannot read the work area portably, so a fixed margin stands in for it (GNOME's top bar +
# a 48-px panel, the Windows task bar (40–48 px) + title bar (~31 px) all fit in 90).
MARGIN_W, MARGIN_H = 40, 90


def fit_size(want: tuple[int, int], screen: tuple[int, int],
             minimum: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """The window size to use: ``want`` shrunk to the screen's usable area, never below ``minimum``.

    Args:
        want: preferred (width, height) in pixels.
        screen: the screen's (width, height) in pixels.
        minimum: the smallest (width, height) at which every control is reachable.

    Returns:
        (width, height) in pixels.

    >>> fit_size((1280, 820), (1366, 768))
    (1280, 678)
    >>> fit_size((1280, 820), (1024, 700), minimum=(900, 560))
    (984, 610)
    >>> fit_size((1280, 820), (800, 600), minimum=(900, 560))
    (900, 560)
    """
    width = min(want[0], screen[0] - MARGIN_W)
    height = min(want[1], screen[1] - MARGIN_H)
    return max(width, minimum[0]), max(height, minimum[1])


def place(window, want: tuple[int, int], minimum: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """Size ``window`` (a Tk or Toplevel) to :func:`fit_size` of its screen, centred; set its minsize.

    Call on the Tk thread. Returns the (width, height) chosen.
    """
    screen = (window.winfo_screenwidth(), window.winfo_screenheight())
    width, height = fit_size(want, screen, minimum)
    x = max(0, (screen[0] - width) // 2)
    y = max(0, (screen[1] - MARGIN_H - height) // 2)
    window.geometry(f"{width}x{height}+{x}+{y}")
    if minimum != (0, 0):
        window.minsize(*minimum)
    return width, height


def wrap_row(frame, widgets, padx: int = 4, pady: int = 4) -> None:
    """Lay ``widgets`` (children of ``frame``) left to right, wrapping to a new line when the
    frame is too narrow (a flow layout; ``frame`` takes the height of the lines used).

    Tk thread; re-laid out on every width change of ``frame``.
    """
    def relayout(_event=None) -> None:
        width = frame.winfo_width()
        if width <= 1:
            return
        x = y = line = 0
        for w in widgets:
            need_w, need_h = w.winfo_reqwidth(), w.winfo_reqheight()
            if x and x + need_w > width:
                x, y, line = 0, y + line + pady, 0
            w.place(x=x, y=y)
            x += need_w + padx
            line = max(line, need_h)
        height = y + line
        if int(frame.cget("height") or 0) != height:
            frame.configure(height=height)
    frame.configure(height=max((w.winfo_reqheight() for w in widgets), default=1))
    frame.bind("<Configure>", relayout, add="+")
