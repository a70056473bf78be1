"""What the service's logs and request ids look like from outside."""

from __future__ import annotations

import json
import re
from typing import Any

GENERATED = re.compile(r"[0-9a-f]{32}")  # a request id the service made up


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON
