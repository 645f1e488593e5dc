"""A mesh: configuration, broker, functions and dispatcher, assembled from Settings.

`load_mesh` does everything that can fail on bad configuration before any socket is opened, so
`cemesh up` can report one line and exit 2; `Mesh.start`/`stop` handle the resources.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from brokers.base import Broker
from brokers.dispatch import Dispatcher
from brokers.memory import MemoryBroker
from brokers.state import Ledger, State, check_state, function_env, make_ledger
from brokers.triggers import MeshConfig, load_config
from gateway.functions import FunctionHost, FunctionProject, discover
from gateway.replies import ReplyHub
from gateway.settings import Settings
from gateway.transport import MeshTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: MeshConfig
    functions: list[FunctionProject]


def load_mesh(settings: Settings) -> LoadedConfig:
    """Read func.yaml files and config/; raises ConfigError naming the file and object."""
    projects = discover(settings.functions, settings.namespace)
    config = load_config(settings.config, [p.subscriptions() for p in projects], settings.namespace)
    check_state(settings.state_url, config)  # state hook (issue 5): bad --state or annotation
    return LoadedConfig(config, projects)


def make_broker(url: str, prefix: str = "cemesh") -> Broker:
    if url.startswith("memory:"):
        return MemoryBroker()
    if url.startswith(("amqp://", "amqps://")):
        from brokers.rabbitmq import RabbitBroker

        broker: Broker = RabbitBroker(url, prefix=prefix, connection_name=f"cemesh {prefix}")
        return broker
    raise ValueError(f"unsupported broker URL '{url}' (use memory:// or amqp://)")


@dataclass
class Mesh:
    settings: Settings
    loaded: LoadedConfig
    broker: Broker
    functions: FunctionHost
    transport: MeshTransport
    dispatcher: Dispatcher
    replies: ReplyHub
    ledger: Ledger  # state hook (issue 5): dedup, event log, delivery marks
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> State:  # state hook (issue 5)
        return self.ledger.state

    @property
    def config(self) -> MeshConfig:
        return self.loaded.config

    @classmethod
    def build(
        cls,
        settings: Settings,
        loaded: LoadedConfig | None = None,
        broker: Broker | None = None,
        state: State | None = None,
    ) -> Mesh:
        loaded = loaded or load_mesh(settings)
        broker = broker or make_broker(settings.broker_url, settings.broker_prefix)
        functions = FunctionHost(loaded.functions, {"CEMESH_STATE_URL": settings.state_url})
        # --- state hook (issue 5): functions get REDIS_URL and their own CEMESH_STATE_PREFIX
        functions.env_for = lambda p: function_env(settings.state_url, p.namespace, p.name)
        # --- end state hook
        transport = MeshTransport(functions)
        dispatcher = Dispatcher(loaded.config, broker, transport)
        replies = ReplyHub(settings.replica)
        ledger = make_ledger(settings.state_url, loaded.config, state)  # state hook (issue 5)
        dispatcher.ledger = ledger  # state hook (issue 5)
        return cls(settings, loaded, broker, functions, transport, dispatcher, replies, ledger)

    async def start(self) -> None:
        await self.ledger.state.open()  # state hook (issue 5): never raises, Redis may be down
        await self.functions.start()
        # --- process hook (issue 8): non-Python functions run as subprocesses, routed by URL
        from gateway.node_host import ProcessHost

        processes = ProcessHost(
            self.loaded.functions,
            self.config.triggers,
            self.functions.extra_env,
            self.functions.env_for,
        )
        self.extras["processes"] = processes
        await processes.start(self.transport.remote_functions)
        # --- end process hook
        await self.transport.open()
        await self.broker.open(self.config)
        await self.broker.listen_replies(self.replies.replica, self.replies.deliver)
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop(self.settings.shutdown_grace)
        await self.broker.close()
        await self.transport.close()
        await self.functions.stop()
        processes = self.extras.pop("processes", None)  # process hook (issue 8)
        if processes is not None:
            await processes.stop()
        await self.ledger.state.close()  # state hook (issue 5)
