"""Signed downloads: `/tenancy/outputs/{prompt_id}` lists a prompt's files as short-lived signed links, and
`/tenancy/files/{token}` serves one (from the outputs' bucket once it is there)."""

from __future__ import annotations

import time

from aiohttp import web

from ... import signed
from ...outputs import owner_of
from ...records import Principal
from ...refusal import Refusal
from ...retention import files_listed
from ..http import PRINCIPAL_KEY
from ..services import GuardServices
from ..surfaces.files import real_location


class Downloads:
    """Signed links to a prompt's files, and the files behind them."""

    def __init__(self, services: GuardServices) -> None:
        self.services = services

    async def file(self, request: web.Request) -> web.StreamResponse:
        grant = signed.verify(self.services.file_secret, request.match_info["token"])
        if grant is None:
            raise Refusal(403, "invalid_signature", "the download link is invalid or has expired")
        folder, sub, name = await real_location(self.services, None, grant.folder, grant.subfolder, grant.filename)
        days = await self.services.output_days(grant.tenant or owner_of(sub))
        redirect = await self.services.uploads.redirect(request.method, grant.tenant, (folder, sub, name),
                                                        attachment=True, days=days)
        if redirect is not None:
            return redirect
        path = self.services.folders[folder] / sub / name
        if not path.is_file():
            raise Refusal(404, "not_found", "the file no longer exists")
        return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def outputs(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL_KEY]
        prompt_id = request.match_info["prompt_id"]
        history = self.services.history
        if principal.is_admin:
            found = await history.find(prompt_id)
        else:
            recorded = await history.entry(principal.tenant, prompt_id)
            found = None if recorded is None else (principal.tenant, recorded)
        if found is None:
            raise Refusal(404, "not_found", "no such prompt among yours")
        owner, entry = found[0], found[1].entry
        now = time.time()
        expires = int(now) + self.services.settings.signed_url_ttl_s
        files = []
        if not files_listed(entry, now, await self.services.output_days(owner, principal)):
            return web.json_response({"prompt_id": prompt_id, "files": files})  # deleted by the retention
        for node_id, items in (entry.get("outputs") or {}).items():
            for kind, refs in items.items() if isinstance(items, dict) else ():
                for ref in refs if isinstance(refs, list) else ():
                    if isinstance(ref, dict) and "filename" in ref:
                        grant = signed.FileGrant(owner, ref.get("type", "output"), ref.get("subfolder", ""),
                                                 ref["filename"], expires)
                        token = signed.sign(self.services.file_secret, grant)
                        files.append({"node": node_id, "kind": kind, "filename": ref["filename"],
                                      "url": f"/tenancy/files/{token}", "expires": expires})
        return web.json_response({"prompt_id": prompt_id, "files": files})

