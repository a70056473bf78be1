"""flashsale: a flash-sale coupon service that never oversells."""

__version__ = "0.1.0"
