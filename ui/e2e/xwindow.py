#!/usr/bin/env python3
"""Closes an X11 window the way a window manager does when the user clicks its close button:
a WM_DELETE_WINDOW client message (the app then decides what closing means). Xvfb runs no
window manager, so the e2e test and the tray benchmark send it themselves.

    xwindow.py close TITLE       exit 0 once sent to every viewable top-level window so named
    xwindow.py count TITLE       prints how many viewable top-level windows have that title

Needs python-xlib (ui/e2e/requirements.txt, tests/bench/requirements.txt) and DISPLAY.
"""
import sys

from Xlib import X, display
from Xlib.protocol import event


def windows(d, title):
    """Viewable top-level windows whose _NET_WM_NAME or WM_NAME is `title`."""
    utf8, net_name = d.intern_atom("UTF8_STRING"), d.intern_atom("_NET_WM_NAME")
    found = []
    for w in d.screen().root.query_tree().children:
        try:
            if w.get_attributes().map_state != X.IsViewable:
                continue
            prop = w.get_full_property(net_name, utf8)
            name = prop.value.decode("utf-8", "replace") if prop else w.get_wm_name()
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
        except Exception:  # the window went away while we looked
            continue
        if name == title:
            found.append(w)
    return found


def close(title):
    d = display.Display()
    protocols, delete = d.intern_atom("WM_PROTOCOLS"), d.intern_atom("WM_DELETE_WINDOW")
    found = windows(d, title)
    for w in found:
        msg = event.ClientMessage(window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0]))
        w.send_event(msg, event_mask=X.NoEventMask)
    d.flush()
    d.close()
    return len(found)


def count(title):
    d = display.Display()
    n = len(windows(d, title))
    d.close()
    return n


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("close", "count"):
        sys.exit(__doc__)
    if sys.argv[1] == "close":
        sys.exit(0 if close(sys.argv[2]) else f"no window titled {sys.argv[2]!r}")
    print(count(sys.argv[2]))
