"""The dummy backends' control endpoints, from a test or a bench: `/_chaos` and `/_stats`.

    control(backend, "/_chaos", {"failure_rate": 0.5})   # POST: change (a partial update)
    control(backend, "/_chaos")                           # DELETE: back to the defaults
    control(backend, "/_stats")                           # DELETE: the counters to zero

See common/backends/README.md for what each one accepts and answers.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from common.testing.processes import Proc


def control(backend: Proc, path: str, settings: dict[str, object] | None = None) -> Any:
    """POST `settings` to a backend's control endpoint, or DELETE it (None); its JSON."""
    request = urllib.request.Request(
        backend.url + path,
        data=None if settings is None else json.dumps(settings).encode(),
        method="DELETE" if settings is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)
