"""The use cases: what the HTTP layer (or any other entry point) can ask for.

Writes (``coupons``), reads (``reads``) and the live dashboard's feed
(``dashboard``) each declare what they need from storage in ``ports``;
``flashsale.storage`` implements it and ``flashsale.wiring`` plugs the two
together. Every use case runs under the same request ``deadline``."""
