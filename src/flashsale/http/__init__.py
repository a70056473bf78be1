"""The HTTP layer: routes, request and response types, error mapping."""
