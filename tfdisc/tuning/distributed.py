"""Distributed capacity search: chief/worker roles and the chief's oracle service.

keras-tuner's own oracle service is selected by ``KERASTUNER_TUNER_ID``
(``chief`` serves the oracle, any other id is a worker),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (``Distributed.apply``
sets them). ``serve`` runs the chief's service over a leased oracle
(``tfdisc.tuning.oracle``) until the search is over, with every wait bounded.
"""
import dataclasses
import os
import time
from concurrent import futures
from typing import Optional

from tfdisc.tuning.oracle import SearchStopped, SearchTimeout

__all__ = ["Distributed", "serve"]


@dataclasses.dataclass(frozen=True)
class Distributed:
    """Chief/worker roles over keras-tuner's oracle service (its environment variables)."""

    tuner_id: Optional[str] = None
    oracle_ip: Optional[str] = None
    oracle_port: Optional[int] = None

    ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")

    @classmethod
    def from_env(cls, tuner_id=None, oracle_ip=None, oracle_port=None):
        """Arguments override the environment; all three or none must be set."""
        env = os.environ
        d = cls(tuner_id or env.get(cls.ENV[0]), oracle_ip or env.get(cls.ENV[1]),
                oracle_port or (int(env[cls.ENV[2]]) if env.get(cls.ENV[2]) else None))
        given = [v is not None for v in (d.tuner_id, d.oracle_ip, d.oracle_port)]
        if any(given) and not all(given):
            raise ValueError("Distributed search needs the tuner id, the oracle IP and the "
                             "oracle port together (--tuner_id/--oracle_ip/--oracle_port or "
                             f"{', '.join(cls.ENV)}); got tuner id {d.tuner_id!r}, IP "
                             f"{d.oracle_ip!r}, port {d.oracle_port!r}.")
        if d.oracle_port is not None and not 0 < d.oracle_port < 65536:
            raise ValueError(f"The oracle port must be in 1..65535, got {d.oracle_port}.")
        return d

    @property
    def enabled(self):
        return self.tuner_id is not None

    @property
    def is_chief(self):
        return self.enabled and "chief" in self.tuner_id

    def apply(self, timeout_seconds):
        """Sets keras-tuner's environment (and its client timeout) for this process."""
        if not self.enabled:
            for name in self.ENV:
                os.environ.pop(name, None)
            return
        os.environ.update({self.ENV[0]: self.tuner_id, self.ENV[1]: self.oracle_ip,
                           self.ENV[2]: str(self.oracle_port)})
        # pylint: disable-next=import-outside-toplevel
        from keras_tuner.src.distribute import oracle_client

        oracle_client.TIMEOUT = timeout_seconds  # bounded gRPC calls (keras-tuner: 1 hour)


def serve(oracle, address, *, timeout_seconds=600.0, poll_seconds=0.5):
    """Serves ``oracle`` to the workers (keras-tuner's servicer) until the search is over.

    Returns when every trial has ended and every worker has been told to stop
    (or has been silent past the oracle's lease).

    Raises:
      SearchTimeout: nobody called the oracle for ``timeout_seconds``.
      SearchStopped: the oracle stopped the search (too many failed trials).
    """
    import grpc  # pylint: disable=import-outside-toplevel
    from keras_tuner.src import protos  # pylint: disable=import-outside-toplevel
    from keras_tuner.src.distribute import oracle_chief  # pylint: disable=import-outside-toplevel

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if not server.add_insecure_port(address):
        raise OSError(f"The oracle cannot listen on {address}.")
    server.start()
    try:
        while True:
            time.sleep(poll_seconds)
            oracle.reap()
            if servicer.stop_triggered and oracle.finished():
                break
            idle = time.monotonic() - oracle.last_activity
            if idle > timeout_seconds:
                raise SearchTimeout(f"No worker called the oracle for {idle:.0f} s; "
                                    f"{oracle.describe_unfinished()}.")
    finally:
        server.stop(grace=2)
    if oracle.stop_reason:
        raise SearchStopped(oracle.stop_reason)
