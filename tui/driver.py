"""Textual's terminal driver with an input thread that sleeps while nothing is typed.

Textual's :class:`~textual.drivers.linux_driver.LinuxDriver` reads keys in a thread that
wakes ten times a second even when no key comes (``select(0.1)``, so that it notices the
exit and times out a lone Escape). At idle with eight QEMUs that was a third of
chaintui's CPU (issue 13). This thread waits for a key, for the exit (a byte on a pipe,
written when the driver's ``exit_event`` is set), or for the parser's own deadline (a
lone Escape), and for nothing else. Everything it reads goes through Textual's parser
and ``process_message`` as before.
"""

from __future__ import annotations

import os
import select
import selectors
import threading
import weakref
from codecs import getincrementaldecoder
from typing import Any

from textual._loop import loop_last
from textual._parser import ParseError
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

LONGEST_WAIT = 0.1  # Textual's own wait: the longest while the parser has a deadline
_UNKNOWN = object()


class _WakingEvent(threading.Event):
    """An Event that also writes a byte on a pipe when set, to wake a thread blocked in select.

    ``sets`` counts the calls: Textual clears the event once it joined *its* input thread, but
    after a SIGCONT it may have started two; the other one still sees that it was told to stop.
    """

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()
        try:
            os.write(self._wake_fd, b"x")
        except OSError:  # the pipe is full (it is drained on every wake) or closed
            pass


class QuietLinuxDriver(LinuxDriver):
    """:class:`LinuxDriver` whose input thread wakes only for a key, the exit or a parser deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._exit = self.exit_event = _WakingEvent(self._wake_w)
        self._read_lock = threading.Lock()
        # kept across suspend and resume (``close`` is called on suspend); closed with the driver
        weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)

    def run_input_thread(self) -> None:
        """Textual's input loop (``LinuxDriver.run_input_thread``) with a wait that ends only when needed."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        fileno, wake = self.fileno, self._wake_r
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        exit_event = self._exit
        sets = exit_event.sets

        def stopped() -> bool:
            return exit_event.is_set() or exit_event.sets != sets

        def wait() -> float | None:
            """None (until a key or the exit) when the parser holds nothing that can time out."""
            due = getattr(parser, "_timeout_time", _UNKNOWN)
            if due is None:
                return None
            if not isinstance(due, (int, float)):  # a Textual without this attribute: its own wait
                return LONGEST_WAIT
            return min(LONGEST_WAIT, max(0.0, due - get_time()))

        def drain() -> None:
            try:
                while os.read(wake, 512):
                    pass
            except OSError:  # empty (BlockingIOError) or closed
                pass

        def process(events: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> None:
            keys = [(key, mask) for key, mask in events if key.fd == fileno]
            if len(keys) != len(events) and not stopped():
                drain()  # a byte left from an earlier exit; a real one stays for every thread to see
            for last, (_key, mask) in loop_last(keys):
                if mask & selectors.EVENT_READ:
                    with self._read_lock:  # Textual may run two of these threads (after SIGCONT):
                        if not select.select([fileno], [], [], 0)[0]:  # the other one took the key
                            continue
                        raw = os.read(fileno, 1024 * 4)
                    data = decode(raw, final=final and last)
                    if not data:
                        break
                    for event in parser.feed(data):
                        self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        try:
            drain()  # the byte of an earlier exit (suspend and resume)
            while not stopped():
                process(selector.select(wait()))
            selector.unregister(self.fileno)
            process(selector.select(LONGEST_WAIT), final=True)
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):
                pass


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
