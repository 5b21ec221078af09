"""A small OpenID Connect provider on loopback for the tests: discovery, an authorization endpoint that signs in
whoever the test names (no consent screen), a token endpoint that checks the client and the PKCE verifier, and
RS256 ID tokens whose public key is published as a JWKS. Runs an aiohttp app in a thread of the test process.

`bad` makes the next ID tokens wrong on purpose (e.g. `{"nonce": "x"}`, `{"aud": "other"}`, `{"sign_with": "other"}`)
so tests can check that the guard refuses them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from .ports import free_port

CLIENT_ID = "comfyui-tests"


def _jwk(public_key, kid: str) -> dict:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


class OidcProvider:
    def __init__(self, secret_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_secret = secrets.token_urlsafe(24)
        self.secret_file = Path(secret_dir) / "oidc-client.secret"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.user: dict = {"sub": "alice", "tenant": "tenant-a", "role": "member"}
        self.bad: dict = {}
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.authorize_requests: list[dict] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- what the guard's config needs ---------------------------------------------------------------------
    def tenancy_settings(self) -> dict:
        return {"auth": {"external": {
            "issuer": self.url, "discovery_url": f"{self.url}/.well-known/openid-configuration",
            "client_id": CLIENT_ID, "client_secret_file": str(self.secret_file), "display_name": "Test IdP",
            "jwks": f"{self.url}/jwks", "audience": CLIENT_ID, "tenant_claim": "tenant", "role_claim": "role"}}}

    # -- running ---------------------------------------------------------------------------------------------
    def start(self) -> OidcProvider:
        self.secret_file.parent.mkdir(parents=True, exist_ok=True)
        self.secret_file.write_text(self.client_secret)
        self.secret_file.chmod(0o600)
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self._app())
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="oidc-provider", daemon=True)
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("the test OpenID provider did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/jwks", self.jwks)
        return app

    # -- endpoints -------------------------------------------------------------------------------------------
    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email"]})

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [_jwk(self.key.public_key(), self.kid)]})

    async def authorize(self, request: web.Request) -> web.Response:
        query = dict(request.rel_url.query)
        self.authorize_requests.append(query)
        problems = [name for name, ok in (
            ("response_type", query.get("response_type") == "code"),
            ("client_id", query.get("client_id") == CLIENT_ID),
            ("redirect_uri", query.get("redirect_uri", "").startswith("http://127.0.0.1:")),
            ("scope", "openid" in query.get("scope", "").split()),
            ("code_challenge", query.get("code_challenge_method") == "S256"
             and len(query.get("code_challenge", "")) == 43),
            ("state", bool(query.get("state"))), ("nonce", bool(query.get("nonce")))) if not ok]
        if problems:
            return web.json_response({"error": "invalid_request", "problems": problems}, status=400)
        if self.bad.get("deny"):
            target = f"{query['redirect_uri']}?{urlencode({'error': 'access_denied', 'state': query['state']})}"
            return web.Response(status=302, headers={"Location": target})
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"query": query, "user": dict(self.user), "used": False, "time": time.time()}
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return web.Response(status=302, headers={"Location": target})

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append(form)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        if client_id != CLIENT_ID or secret != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self.codes.get(form.get("code", ""))
        if form.get("grant_type") != "authorization_code" or grant is None or grant["used"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        grant["used"] = True
        query = grant["query"]
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if form.get("redirect_uri") != query["redirect_uri"] or challenge != query["code_challenge"]:
            return web.json_response({"error": "invalid_grant", "detail": "redirect_uri or PKCE"}, status=400)
        now = int(time.time())
        claims = {"iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": query["nonce"],
                  "auth_time": now, **grant["user"]}
        claims.update({k: v for k, v in self.bad.items() if k not in ("sign_with", "deny")})
        claims = {k: v for k, v in claims.items() if v is not None}
        key = self.other_key if self.bad.get("sign_with") == "other" else self.key
        id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})
        return web.json_response({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                  "expires_in": 300, "id_token": id_token})
