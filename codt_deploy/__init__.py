"""codt's lean runtime: pose readers, preprocessing, batched ONNX Runtime inference, ``codt-cluster``.

Contract: this package imports only numpy, pydantic, onnxruntime and the standard library (plus
optional pyarrow for Parquet output and Ray for scale-out); it never imports torch, so it installs
and runs without it. ``tests/deploy/test_no_torch.py`` proves it: after importing every module
of the package in a fresh interpreter, torch is not in ``sys.modules``.
"""

import os as _os

# ONNX Runtime's telemetry writes a device id and an event database under ~/.cache when the
# library is loaded (and warns in colour where HOME is read-only); it reads this switch then, so it
# is set before any module of this package imports onnxruntime. A user's own setting is kept.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
