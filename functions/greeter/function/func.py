"""greeter: a CloudEvents function that answers a greeting request with a greeting.

Input: `com.example.greet.request` with JSON data `{"name": "..."}`.
Reply: `com.example.greeting` with `{"message": "Hello, <name>!"}`, sent back to the broker
by the mesh (or Knative) because the delivery asked `Prefer: reply`.
"""

import json
import logging
import uuid

from cloudevents.core.v1.event import CloudEvent

REPLY_TYPE = "com.example.greeting"
SOURCE = "/functions/greeter"


def new():
    """Called once by the func-python runtime to create the function instance."""
    return Function()


class Function:
    def __init__(self):
        self.greeted = 0

    def start(self, cfg):
        """`cfg` is the environment the runtime gives the function."""
        self.greeting = cfg.get("GREETING", "Hello")

    def stop(self):
        logging.info("greeter stopping after %d greetings", self.greeted)

    def alive(self):
        return True, "alive"

    def ready(self):
        return True, "ready"

    async def handle(self, scope, receive, send):
        event = scope["event"]
        name = _name_of(event.get_data())
        self.greeted += 1
        greeting = getattr(self, "greeting", "Hello")
        reply = CloudEvent(
            {
                "type": REPLY_TYPE,
                "source": SOURCE,
                "id": str(uuid.uuid4()),
                "subject": event.get_id(),
                "datacontenttype": "application/json",
            },
            {"message": f"{greeting}, {name}!"},
        )
        await send(reply)


def _name_of(data):
    if isinstance(data, (bytes, bytearray)):
        try:
            data = json.loads(data)
        except ValueError:
            return "world"
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return data.strip() or "world"
    if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"].strip():
        return data["name"].strip()
    return "world"
