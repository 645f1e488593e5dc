"""The HTTP gateway (ingress, webhooks, request-reply) and the `cemesh` CLI."""
