"""Capturing what native libraries write to the C-level stderr (file descriptor 2).

TensorFlow 2.21 prints start-up lines before its logging is configured (TF_CPP_MIN_LOG_LEVEL does not
reach them), and the TFLite Micro interpreter prints its allocations there. Python's ``sys.stderr``
redirection cannot see either; this swaps the descriptor itself.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def capture_native_stderr() -> Iterator[list[str]]:
    """Within the block, fd 2 goes to a temporary file; afterwards the list holds what was written."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", errors="replace"))


def import_tensorflow_quietly():
    """``import tensorflow`` without its native start-up lines; they are shown if the import fails."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS first)

    with capture_native_stderr() as output:
        try:
            import tensorflow
        except Exception:
            failed = True
        else:
            failed = False
    if failed:
        sys.stderr.write(output[0])
        import tensorflow  # re-raise with its real traceback
    return tensorflow
