"""API-node tokens through the cluster queue: the instance that accepts a prompt seals its sensitive extra data
(ComfyUI's `auth_token_comfy_org`, `api_key_comfy_org`: the queue item's last part) with the key every instance
derives from the shared master secret (`tenancy.sealed_extra`); the instance that claims it opens it into the queue
item its worker runs. Neither the tokens nor the sealed text are logged; ComfyUI keeps the sensitive part out of
history and /queue."""

from __future__ import annotations

import logging

from ... import bootstrap
from ...cluster import Carried
from ...config import Config
from ...sealed_extra import seal, sealing_key, unseal

log = logging.getLogger("tenancy")


class ExtraSealer:
    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._warned = False

    @classmethod
    def of(cls, settings: Config) -> ExtraSealer:
        path = settings.path(settings.master_secret_file)
        try:
            return cls(sealing_key(bootstrap.read_secret(path)))
        except (OSError, ValueError) as exc:
            log.warning("[tenancy] cluster queue: no master secret (%s: %s): API-node tokens are not carried to the "
                        "instance that runs a prompt", path, type(exc).__name__)
            return cls(None)

    def seal(self, prompt_id: str, item) -> str | None:
        """The item's sensitive extra data sealed for its prompt; None when it has none (or no key)."""
        sensitive = item[5] if len(item) > 5 else None
        if not sensitive:
            return None
        if self.key is None:
            if not self._warned:
                log.warning("[tenancy] cluster queue: a prompt's API-node token is dropped: no master secret")
                self._warned = True
            return None
        return seal(self.key, prompt_id, dict(sensitive))

    def open(self, prompt_id: str, body: Carried) -> dict:
        """The sensitive extra data of a claimed prompt ({} when none, or when it does not open here)."""
        if not body.sealed:
            return {}
        opened = unseal(self.key, prompt_id, body.sealed) if self.key is not None else None
        if opened is None:
            log.warning("[tenancy] cluster queue: the API-node token of %s does not open on this instance (is "
                        "master.secret the same on every instance?): it runs without it", prompt_id)
            return {}
        return opened
