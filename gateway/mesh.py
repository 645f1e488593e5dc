"""The composition root: a mesh's parts, each built once and handed to what needs it.

`Mesh.build` constructs everything from Settings and a loaded configuration (`gateway.loading`)
and patches nothing afterwards; `start`/`stop` handle the resources, in dependency order. What
changes while the mesh runs (Brokers, Triggers, subscriptions) goes through `reconciler`, the
same path start-up takes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from brokers.base import Broker
from brokers.dispatch import Dispatcher
from brokers.memory import MemoryBroker
from brokers.state import Ledger, State, function_env, make_ledger
from brokers.triggers import MeshConfig
from gateway.hosting.node import ProcessHost
from gateway.hosting.python import FunctionHost, FunctionProject
from gateway.hosting.transport import MeshTransport
from gateway.loading import LoadedConfig, load_mesh
from gateway.reconciler import Reconciler
from gateway.replies import ReplyHub
from gateway.settings import Settings

__all__ = ["LoadedConfig", "Mesh", "load_mesh", "make_broker"]
log = logging.getLogger(__name__)


def make_broker(url: str, prefix: str = "cemesh", settings: Settings | None = None) -> Broker:
    if url.startswith("memory:"):
        if settings is None:
            return MemoryBroker()
        return MemoryBroker(
            max_queue_length=settings.memory_queue_length,
            max_queue_bytes=settings.memory_queue_bytes,
        )
    if url.startswith(("amqp://", "amqps://")):
        from brokers.rabbitmq.broker import RabbitBroker

        broker: Broker = RabbitBroker(url, prefix=prefix, connection_name=f"cemesh {prefix}")
        return broker
    raise ValueError(f"unsupported broker URL '{url}' (use memory:// or amqp://)")


@dataclass
class Mesh:
    settings: Settings
    loaded: LoadedConfig
    broker: Broker
    functions: FunctionHost
    processes: ProcessHost
    transport: MeshTransport
    ledger: Ledger
    dispatcher: Dispatcher
    replies: ReplyHub
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        self.reconciler = Reconciler(self)

    @property
    def state(self) -> State:
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
        broker = broker or make_broker(settings.broker_url, settings.broker_prefix, settings)

        def env_for(project: FunctionProject) -> Mapping[str, str]:
            """A function's state: REDIS_URL and its own CEMESH_STATE_PREFIX."""
            return function_env(settings.state_url, project.namespace, project.name)

        shared_env = {"CEMESH_STATE_URL": settings.state_url}
        functions = FunctionHost(loaded.functions, shared_env, env_for)
        processes = ProcessHost(loaded.functions, loaded.config.triggers, shared_env, env_for)
        transport = MeshTransport(functions)
        ledger = make_ledger(settings.state_url, loaded.config, state)
        dispatcher = Dispatcher(
            loaded.config, broker, transport, ledger, retire_grace=settings.shutdown_grace
        )
        replies = ReplyHub(settings.replica)
        return cls(
            settings, loaded, broker, functions, processes, transport, ledger, dispatcher, replies
        )

    async def start(self) -> None:
        await self.ledger.state.open()  # never raises: Redis may be down, it is retried
        await self.functions.start()
        # non-Python functions run as subprocesses, reached by URL
        await self.processes.start(self.transport.remote_functions)
        await self.transport.open()
        await self.broker.open(self.config)
        await self.broker.listen_replies(self.replies.replica, self.replies.deliver)
        await self.dispatcher.start()  # a reconcile from no trigger

    async def stop(self) -> None:
        await self.dispatcher.stop(self.settings.shutdown_grace)
        await self.broker.close()
        await self.transport.close()
        await self.functions.stop()
        await self.processes.stop()
        await self.ledger.state.close()
