"""An S3-compatible bucket (AWS S3, MinIO, SeaweedFS, R2, ...) through boto3: upload a file, ask whether an object
is there (and since when), list a prefix, download an object, delete objects, sign a short-lived download URL.

Every call but `presign` is network I/O and blocks: callers on an event loop run them in a thread. Presigning is
local computation (no request), so it may run anywhere. boto3 is imported only when a bucket is configured."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

MIB = 1024 * 1024
DELETE_BATCH = 1000  # keys one DeleteObjects request takes at most


class ObjectStoreUnavailable(Exception):
    """The bucket did not take or answer a request (down, unreachable, refused our credentials): try again later."""


class ObjectStore:
    def __init__(self, *, bucket: str, endpoint: str = "", public_endpoint: str = "", region: str = "us-east-1",
                 access_key: str = "", secret_key: str = "", multipart_mb: int = 16) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        # SigV4 always (boto3 would presign SigV2 for us-east-1), path-style addressing (what self-hosted stores
        # serve), checksums only where required (R2, GCS and some MinIO versions refuse the default CRC headers)
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        request_checksum_calculation="when_required", response_checksum_validation="when_required",
                        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=30)
        session = boto3.session.Session(aws_access_key_id=access_key or None,
                                        aws_secret_access_key=secret_key or None, region_name=region)
        self.bucket = bucket
        self.client = session.client("s3", endpoint_url=endpoint or None, config=config)
        # a presigned URL is bound to the host it names: signed for the endpoint browsers reach
        self.signer = session.client("s3", endpoint_url=public_endpoint or endpoint or None, config=config)
        self.transfer = TransferConfig(multipart_threshold=multipart_mb * MIB, multipart_chunksize=multipart_mb * MIB)
        self._errors = _transfer_errors()

    def upload(self, path: Path, key: str, content_type: str, tagging: str = "") -> None:
        """Stream a file into the bucket (in parts when it is large; a failed multipart upload is aborted)."""
        extra = {"ContentType": content_type, **({"Tagging": tagging} if tagging else {})}
        try:
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer)
        except self._errors as exc:
            raise ObjectStoreUnavailable(f"upload of {key}: {exc}") from None

    def exists(self, key: str) -> bool:
        return self.modified(key) is not None

    def modified(self, key: str) -> float | None:
        """Last-Modified of an object (seconds since the epoch), None when it is not there."""
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["LastModified"].timestamp()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise ObjectStoreUnavailable(f"head of {key}: {exc}") from None
        except self._errors as exc:
            raise ObjectStoreUnavailable(f"head of {key}: {exc}") from None

    def delete(self, keys: list[str]) -> list[str]:
        """Delete up to DELETE_BATCH objects in one request; the keys the bucket refused (a key that was not there
        counts as deleted). ObjectStoreUnavailable when the request itself fails."""
        if not keys:
            return []
        if len(keys) > DELETE_BATCH:
            raise ValueError(f"at most {DELETE_BATCH} keys a request")
        try:
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": key} for key in keys], "Quiet": True})
        except self._errors as exc:
            raise ObjectStoreUnavailable(f"delete of {keys[0]} and {len(keys) - 1} more: {exc}") from None
        return [error["Key"] for error in answer.get("Errors", ())]

    def head(self, key: str) -> tuple[str, int, float]:
        """(ETag, size, Last-Modified in seconds since the epoch) of an object that is there."""
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except self._errors as exc:
            raise ObjectStoreUnavailable(f"head of {key}: {exc}") from None
        return answer["ETag"], answer["ContentLength"], answer["LastModified"].timestamp()

    def listing(self, prefix: str) -> list[tuple[str, str, int, float]]:
        """(key, ETag, size, Last-Modified) of every object under `prefix`, a request per 1,000."""
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend((o["Key"], o["ETag"], o["Size"], o["LastModified"].timestamp())
                             for o in page.get("Contents", ()))
        except self._errors as exc:
            raise ObjectStoreUnavailable(f"listing of {prefix}: {exc}") from None
        return found

    def download(self, key: str, path: Path) -> None:
        """Write an object to `path` (in parts when it is large); FileNotFoundError when it is not there."""
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, key, str(path), Config=self.transfer)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{key} is not in the bucket") from None
            raise ObjectStoreUnavailable(f"download of {key}: {exc}") from None
        except self._errors as exc:
            raise ObjectStoreUnavailable(f"download of {key}: {exc}") from None

    def reachable(self) -> bool:
        """Whether the bucket answers us now."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return True
        except self._errors:
            return False

    def presign(self, key: str, ttl_s: int, content_type: str, disposition: str) -> str:
        """A GET URL for one object that expires after `ttl_s`; the bucket answers it with these headers."""
        return self.signer.generate_presigned_url(
            "get_object", ExpiresIn=ttl_s,
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type,
                    "ResponseContentDisposition": disposition})


class CdnSigner:
    """Signed URLs of a CDN in front of a private bucket, in CloudFront's form (a canned policy: one URL and an
    expiry, signed RSA-SHA1 with the key pair's private key): the edge checks them and caches each object, which
    the bucket's own presigned URLs (a new query string each time) would defeat."""

    def __init__(self, base_url: str, key_id: str, private_key_pem: bytes) -> None:
        from botocore.signers import CloudFrontSigner
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.base_url = base_url.rstrip("/")
        self.signer = CloudFrontSigner(key_id, lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1()))

    def sign(self, key: str, ttl_s: int, disposition: str, now: float) -> str:
        """The object's URL at the CDN, valid until `now + ttl_s`; the download name rides along as S3's
        `response-content-disposition` (the CDN passes it to the bucket when its cache policy forwards it)."""
        url = f"{self.base_url}/{quote(key)}?response-content-disposition={quote(disposition, safe='')}"
        return self.signer.generate_presigned_url(url, date_less_than=datetime.fromtimestamp(now + ttl_s,
                                                                                             tz=timezone.utc))


def _transfer_errors() -> tuple[type[Exception], ...]:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError, S3UploadFailedError
