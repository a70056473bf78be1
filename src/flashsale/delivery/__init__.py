"""Outbound HTTP: the webhook POSTs (httpcore, to checked addresses only), behind
service.ports.WebhookSender; which addresses a webhook may reach."""
