"""``flashsale bench``: the service under wrk, with an invariant check after."""
