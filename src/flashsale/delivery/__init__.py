"""Outbound HTTP: the webhook POSTs (httpcore, to checked addresses only), behind
service.webhook_ports.WebhookSender; which addresses a webhook may reach."""
