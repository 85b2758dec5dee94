"""Keep the mediapipe/LiteRT native log chatter out of the run log, and nothing else.

mediapipe 1.x prints from C++ straight to file descriptor 2: INFO lines when a model
loads, one "Sparsity tensors" warning per sparse tensor (38 per landmarker), and
notices about memory alignment and non-square regions on the first images. No environment variable (GLOG_minloglevel,
TF_CPP_MIN_LOG_LEVEL) or API of its pose landmarker turns these off, so the calls that
print them run with fd 2 sent to a temp file; afterwards every line that is not one of
the known notices below is written back to stderr, so real native errors still show.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

KNOWN_NATIVE_NOTICES = re.compile(
    r"^(INFO: \[[\w.]+:\d+\] |INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"
    r"|WARNING: \[model_load\.cc:\d+\] Sparsity tensors may not yet be fully supported\.$"
    r"|WARNING: Logging before InitGoogle\(\) is written to STDERR$"
    r"|W\d{4} [\d:. ]+\d+ inference_runner_litert\.cc:\d+\] Input tensor memory is not aligned"
    r"|W\d{4} [\d:. ]+\d+ landmark_projection_calculator\.cc:\d+\] Using NORM_RECT without "
    r"IMAGE_DIMENSIONS is only supported for the square ROI)"
)


def drop_known_notices(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not KNOWN_NATIVE_NOTICES.match(line))


@contextlib.contextmanager
def quiet_native_notices() -> Iterator[None]:
    """Run a native call with fd 2 captured; write back what is not a known notice."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (an embedding host): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = drop_known_notices(captured.read().decode("utf-8", errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
