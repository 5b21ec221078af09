"""A real redis-server (the Debian package) on a free loopback port with its own data folder."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from .ports import free_port


class RedisServer:
    def __init__(self, data_dir: Path, port: int | None = None, password: str | None = None,
                 maxmemory: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.password = password
        self.maxmemory = maxmemory  # e.g. "2mb": writes past it are refused (OOM), as the deployment's noeviction
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `make test` installs it (apt-get install redis-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "redis.log").open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                 "--dir", str(self.data_dir), *(["--requirepass", self.password] if self.password else []),
                 *(["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"] if self.maxmemory else [])],
                stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def restart(self, down_s: float = 0.0) -> RedisServer:
        """A graceful restart on the same port and data folder: SIGTERM (Redis flushes its AOF and exits), `down_s`
        seconds with nothing listening (a real restart loading a large AOF takes a while), then a new redis-server
        that loads the AOF back (`appendonly yes`, as every start here)."""
        self.stop()
        time.sleep(down_s)
        return self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
