"""What the docs' walk-through replays share: a curl command line read as
the request it sends."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CurlRequest:
    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


def curl_request(arguments: list[str]) -> CurlRequest:
    """curl's arguments (after ``curl``): -X, -H, -d and the URL; other flags ignored."""
    request = CurlRequest()
    pairs = iter(arguments)
    for argument in pairs:
        if argument == "-X":
            request.method = next(pairs)
        elif argument == "-H":
            name, _, value = next(pairs).partition(": ")
            request.headers[name] = value
        elif argument == "-d":
            request.body = next(pairs)
        elif not argument.startswith("-"):
            request.url = argument
    return request
