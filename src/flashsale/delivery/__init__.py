"""Outbound HTTP: the webhook POSTs (httpx), behind service.ports.WebhookSender."""
