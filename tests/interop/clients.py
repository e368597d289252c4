#!/usr/bin/env python3
"""Interop: unmodified S3 clients against the real `archway serve` on its embedded default.

Clients: aws cli, boto3, s3fs/fsspec, rclone, s3cmd, s3fs-fuse (folder markers from mkdir). For each: listing with pagination, ranged GET,
conditional GET, a 100 MiB multipart upload to a workspace read back byte for byte, a
presigned GET, a wrong secret (SignatureDoesNotMatch), a write to a read-only volume
(AccessDenied), and for some, a user without grants. Then hostile input from a client of
our own (raw SigV4): clock skew, a wrong service in the scope, tampered and expired presigned
URLs, DeleteObjects past 1000 keys, XML with entities, deep or huge XML, part numbers out of
range, keys that are no paths, oversized headers, malformed JSON on every API route.

Run by `scripts/test` (which installs the clients in a virtual environment):
    python tests/interop/clients.py [--bin target/debug/archway]
Ends with the line `N passed, N failed`; exits non-zero on any failure.
"""

import argparse
import botocore
import configparser
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

MIB = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = os.path.join(workdir, "data")
        self.log = open(os.path.join(workdir, "gateway.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("gateway did not start; see gateway.log")
                time.sleep(0.1)
        creds = configparser.ConfigParser()
        creds.read(os.path.join(self.data, "credentials"))
        self.credentials_file = os.path.join(self.data, "credentials")
        self.key = creds["archway"]["aws_access_key_id"]
        self.secret = creds["archway"]["aws_secret_access_key"]
        self.token = creds["archway"]["archway_api_token"]

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(MIB)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def http_get(url):
    with urllib.request.urlopen(url) as r:
        return r.read()


def expect_failure(fn, *needles):
    """Runs fn, which must fail with an error whose text holds one of the needles."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any client's error type
        text = f"{type(e).__name__}: {e}"
        if hasattr(e, "stderr") and e.stderr:
            text += " " + (e.stderr if isinstance(e.stderr, str) else e.stderr.decode(errors="replace"))
        if any(n in text for n in needles):
            return
        raise AssertionError(f"failed, but not with {needles}: {text[:500]}")
    raise AssertionError(f"expected a failure with {needles}")


class Context:
    def __init__(self, gw, work, big, big_sha):
        self.gw, self.work, self.big, self.big_sha = gw, work, big, big_sha
        self.expected_keys = [f"page/key-{i:03d}.txt" for i in range(25)]


# ----- boto3 -----


def boto3_client(ctx, secret=None, key=None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=ctx.gw.url,
        aws_access_key_id=key or ctx.gw.key,
        aws_secret_access_key=secret or ctx.gw.secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def boto3_tests(ctx):
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    s3 = boto3_client(ctx)

    def listing():
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert names == ["demo", "workspace"], names
        seen = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="workspace", Prefix="page/", PaginationConfig={"PageSize": 7}
        ):
            assert page["KeyCount"] <= 7
            seen += [o["Key"] for o in page.get("Contents", [])]
        assert seen == ctx.expected_keys, seen
        v1 = []
        for page in s3.get_paginator("list_objects").paginate(
            Bucket="workspace", Prefix="page/", PaginationConfig={"PageSize": 10}
        ):
            v1 += [o["Key"] for o in page.get("Contents", [])]
        assert v1 == ctx.expected_keys
        top = s3.list_objects_v2(Bucket="demo", Delimiter="/")
        assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["images/", "tables/"], top
        enc = s3.list_objects_v2(Bucket="workspace", Prefix="odd/", EncodingType="url")
        # Asked for explicitly, the encoding is left to the caller to undo.
        assert [o["Key"] for o in enc["Contents"]] == ["odd/a%20b%2Bc.txt"], enc["Contents"]
        plain = s3.list_objects_v2(Bucket="workspace", Prefix="odd/")
        assert [o["Key"] for o in plain["Contents"]] == ["odd/a b+c.txt"], plain["Contents"]

    def ranged():
        body = s3.get_object(Bucket="workspace", Key="page/key-001.txt", Range="bytes=2-5")
        assert body["ContentRange"] == "bytes 2-5/20", body["ContentRange"]
        assert body["Body"].read() == b"ge/k"
        suffix = s3.get_object(Bucket="workspace", Key="page/key-001.txt", Range="bytes=-4")
        assert suffix["Body"].read() == b"\n000"
        try:
            s3.get_object(Bucket="workspace", Key="page/key-001.txt", Range="bytes=100-200")
            raise AssertionError("range past the end accepted")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InvalidRange", e.response

    def conditional():
        head = s3.head_object(Bucket="workspace", Key="page/key-001.txt")
        try:
            s3.get_object(Bucket="workspace", Key="page/key-001.txt", IfNoneMatch=head["ETag"])
            raise AssertionError("If-None-Match with the current ETag returned a body")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 304, e.response
        try:
            s3.get_object(Bucket="workspace", Key="page/key-001.txt", IfMatch='"not-it"')
            raise AssertionError("If-Match with another ETag returned a body")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed", e.response
        try:
            s3.head_object(Bucket="workspace", Key="page/key-001.txt", IfNoneMatch=head["ETag"])
            raise AssertionError("HEAD If-None-Match with the current ETag answered 200")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 304, e.response
        try:
            s3.copy_object(Bucket="workspace", Key="copy.txt", CopySource="workspace/page/key-001.txt", CopySourceIfNoneMatch=head["ETag"])
            raise AssertionError("a copy whose source condition fails was made")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "PreconditionFailed", e.response
        ok = s3.get_object(Bucket="workspace", Key="page/key-001.txt", IfMatch=head["ETag"])
        assert ok["Body"].read() == b"page/key-001.txt\n000"

    def multipart():
        cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
        s3.upload_file(ctx.big, "workspace", "boto3/big.bin", Config=cfg)
        out = os.path.join(ctx.work, "boto3-big.bin")
        s3.download_file("workspace", "boto3/big.bin", out, Config=cfg)
        assert sha256_file(out) == ctx.big_sha
        assert s3.head_object(Bucket="workspace", Key="boto3/big.bin")["ContentLength"] == 100 * MIB
        assert s3.list_multipart_uploads(Bucket="workspace").get("Uploads", []) == []
        # Content-MD5 that does not match is refused and stores nothing.
        try:
            s3.put_object(Bucket="workspace", Key="boto3/bad-md5", Body=b"abc", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
            raise AssertionError("a wrong Content-MD5 was accepted")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "BadDigest", e.response
        try:
            s3.head_object(Bucket="workspace", Key="boto3/bad-md5")
            raise AssertionError("an object with a bad digest was stored")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    def presigned():
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": "README.txt"}, ExpiresIn=300)
        assert http_get(url).startswith(b"Archway demo volume")
        tampered = url.replace("README.txt", "images/counts.fits")
        expect_failure(lambda: http_get(tampered), "403")
        # SigV4 presigned URLs live at most a week: S3 refuses longer ones, and so does Archway.
        import boto3
        from botocore.config import Config

        v4 = boto3.client(
            "s3",
            endpoint_url=ctx.gw.url,
            aws_access_key_id=ctx.gw.key,
            aws_secret_access_key=ctx.gw.secret,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        params = {"Bucket": "demo", "Key": "README.txt"}
        assert http_get(v4.generate_presigned_url("get_object", Params=params, ExpiresIn=604800)).startswith(
            b"Archway demo volume"
        )
        too_long = v4.generate_presigned_url("get_object", Params=params, ExpiresIn=700000)
        assert "X-Amz-Expires=700000" in too_long, too_long
        expect_failure(lambda: http_get(too_long), "403")
        # A URL signed two minutes ago for one minute has expired; one signed 20 minutes ahead
        # is not valid yet.
        for ago in [120, -1200]:
            url = sigv4_presign(ctx, "demo", "README.txt", time.time() - ago, 60)
            expect_failure(lambda: http_get(url), "403")
        assert http_get(sigv4_presign(ctx, "demo", "README.txt", time.time() - 120, 600)).startswith(
            b"Archway demo volume"
        )

    def wrong_secret():
        bad = boto3_client(ctx, secret="x" * 40)
        try:
            bad.list_objects_v2(Bucket="demo")
            raise AssertionError("a wrong secret was accepted")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "SignatureDoesNotMatch", e.response
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    def read_only():
        try:
            s3.put_object(Bucket="demo", Key="x.txt", Body=b"x")
            raise AssertionError("a write to a read-only volume was accepted")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e.response
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    def no_grant():
        ctx.gw.api("POST", "/api/v1/users", {"name": "mallory"})
        key = ctx.gw.api("POST", "/api/v1/users/mallory/keys", {})
        m = boto3_client(ctx, key=key["access_key_id"], secret=key["secret_access_key"])
        assert m.list_buckets()["Buckets"] == []
        try:
            m.get_object(Bucket="demo", Key="README.txt")
            raise AssertionError("a user without grants read a private volume")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e.response
        try:
            m.create_bucket(Bucket="mallory-space")
            raise AssertionError("a user without the right created a bucket")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e.response
        # Given the right, the user makes (and owns) their own workspace.
        ctx.gw.api("PATCH", "/api/v1/users/mallory", {"create_workspaces": True})
        m.create_bucket(Bucket="mallory-space")
        m.put_object(Bucket="mallory-space", Key="notes.txt", Body=b"mine")
        assert [b["Name"] for b in m.list_buckets()["Buckets"]] == ["mallory-space"]
        m.delete_object(Bucket="mallory-space", Key="notes.txt")
        m.delete_bucket(Bucket="mallory-space")

    def escape():
        for key in ["a/../../etc/passwd", "../x", "a//b", "a/./b"]:
            try:
                s3.put_object(Bucket="workspace", Key=key, Body=b"x")
                raise AssertionError(f"key {key!r} accepted")
            except ClientError as e:
                # 400 InvalidArgument from the gateway; urllib3 sometimes removes dot
                # segments from the URL after signing, which the gateway then rightly
                # refuses as a signature mismatch.
                code = e.response["Error"]["Code"]
                assert code in ("InvalidArgument", "SignatureDoesNotMatch"), e.response
        # Nothing landed outside the workspace, nor under a normalised name inside it.
        data = ctx.gw.data
        for path in ["etc/passwd", "workspaces/etc/passwd", "x", "workspaces/x", "workspaces/workspace/a/b"]:
            assert not os.path.exists(os.path.join(data, path)), path

    def buckets():
        s3.create_bucket(Bucket="boto3-made")
        s3.put_object(Bucket="boto3-made", Key="k", Body=b"v")
        try:
            s3.delete_bucket(Bucket="boto3-made")
            raise AssertionError("a non-empty bucket was deleted")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "BucketNotEmpty", e.response
        s3.delete_objects(Bucket="boto3-made", Delete={"Objects": [{"Key": "k"}]})
        s3.delete_bucket(Bucket="boto3-made")
        try:
            s3.delete_bucket(Bucket="demo")
            raise AssertionError("an archive was deleted through S3")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e.response

    def metadata():
        import datetime

        expires = datetime.datetime(2033, 12, 1, 16, 0, 0, tzinfo=datetime.timezone.utc)
        kept = dict(
            ContentType="text/bla",
            CacheControl="max-age=60",
            ContentDisposition='attachment; filename="m.txt"',
            ContentEncoding="identity",
            ContentLanguage="en",
            Expires=expires,
            Metadata={"mtime": "1700000000.5", "uid": "1000"},
        )
        body = b"metadata travels"
        put = s3.put_object(Bucket="workspace", Key="meta/one.txt", Body=body, **kept)
        # A single-part object's ETag is the MD5 of its bytes (what s3cmd and rclone check).
        assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), put["ETag"]

        def check(head, want):
            for k, v in want.items():
                assert head.get(k) == v, (k, head.get(k), v)

        check(s3.head_object(Bucket="workspace", Key="meta/one.txt"), kept)
        got = s3.get_object(Bucket="workspace", Key="meta/one.txt")
        check(got, kept)
        assert got["Body"].read() == body
        # CopyObject keeps it (COPY) or replaces it (REPLACE).
        s3.copy_object(Bucket="workspace", Key="meta/copy.txt", CopySource="workspace/meta/one.txt")
        check(s3.head_object(Bucket="workspace", Key="meta/copy.txt"), kept)
        s3.copy_object(
            Bucket="workspace",
            Key="meta/copy.txt",
            CopySource="workspace/meta/one.txt",
            MetadataDirective="REPLACE",
            ContentType="application/x-new",
            Metadata={"new": "yes"},
        )
        head = s3.head_object(Bucket="workspace", Key="meta/copy.txt")
        assert head["ContentType"] == "application/x-new" and head["Metadata"] == {"new": "yes"}, head
        # A multipart upload keeps what it was created with; its ETag is S3's md5-of-md5s-N.
        up = s3.create_multipart_upload(Bucket="workspace", Key="meta/multi.bin", ContentType="text/bla", Metadata={"k": "v"})
        parts, md5s = [], b""
        for n, chunk in enumerate([b"a" * (5 * MIB), b"b" * 1000], start=1):
            r = s3.upload_part(Bucket="workspace", Key="meta/multi.bin", UploadId=up["UploadId"], PartNumber=n, Body=chunk)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
            md5s += hashlib.md5(chunk).digest()
        done = s3.complete_multipart_upload(Bucket="workspace", Key="meta/multi.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
        assert done["ETag"] == '"%s-2"' % hashlib.md5(md5s).hexdigest(), done["ETag"]
        # A client retrying Complete after a time-out hears the same answer.
        again = s3.complete_multipart_upload(Bucket="workspace", Key="meta/multi.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
        assert again["ETag"] == done["ETag"], again
        head = s3.head_object(Bucket="workspace", Key="meta/multi.bin")
        assert head["ContentType"] == "text/bla" and head["Metadata"] == {"k": "v"}, head
        assert head["ETag"] == done["ETag"], head

    def conditional_writes():
        s3.put_object(Bucket="workspace", Key="cond/x", Body=b"one", IfNoneMatch="*")
        for kwargs in [{"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}]:
            try:
                s3.put_object(Bucket="workspace", Key="cond/x", Body=b"two", **kwargs)
                raise AssertionError(f"a write with {kwargs} succeeded")
            except ClientError as e:
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
        etag = s3.head_object(Bucket="workspace", Key="cond/x")["ETag"]
        s3.put_object(Bucket="workspace", Key="cond/x", Body=b"two", IfMatch=etag)
        assert s3.get_object(Bucket="workspace", Key="cond/x")["Body"].read() == b"two"
        try:
            s3.delete_object(Bucket="workspace", Key="cond/x", IfMatch=etag)
            raise AssertionError("a delete with a stale If-Match succeeded")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
        etag = s3.head_object(Bucket="workspace", Key="cond/x")["ETag"]
        # CopyObject is held to the target's conditions too.
        source = {"Bucket": "workspace", "Key": "cond/x"}
        s3.copy_object(Bucket="workspace", Key="cond/y", CopySource=source, IfNoneMatch="*")
        for kwargs in [{"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}]:
            try:
                s3.copy_object(Bucket="workspace", Key="cond/y", CopySource=source, **kwargs)
                raise AssertionError(f"a copy with {kwargs} succeeded")
            except ClientError as e:
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
        s3.copy_object(
            Bucket="workspace", Key="cond/y", CopySource=source, IfMatch=s3.head_object(Bucket="workspace", Key="cond/y")["ETag"]
        )
        s3.delete_object(Bucket="workspace", Key="cond/y")
        s3.delete_object(Bucket="workspace", Key="cond/x", IfMatch=etag)

    def folder_markers():
        # What the AWS console, s3fs and upload tools make on "new folder".
        s3.put_object(Bucket="workspace", Key="dirs/a/", Body=b"", Metadata={"mode": "16877"})
        head = s3.head_object(Bucket="workspace", Key="dirs/a/")
        assert head["ContentLength"] == 0 and head["Metadata"] == {"mode": "16877"}, head
        assert head["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"', head
        top = s3.list_objects_v2(Bucket="workspace", Prefix="dirs/", Delimiter="/")
        assert [p["Prefix"] for p in top.get("CommonPrefixes", [])] == ["dirs/a/"], top
        assert "Contents" not in top, top
        inside = s3.list_objects_v2(Bucket="workspace", Prefix="dirs/a/", Delimiter="/")
        assert [o["Key"] for o in inside["Contents"]] == ["dirs/a/"], inside
        s3.put_object(Bucket="workspace", Key="dirs/a/x", Body=b"x")
        s3.put_object(Bucket="workspace", Key="dirs/b/y", Body=b"y")
        flat = s3.list_objects_v2(Bucket="workspace", Prefix="dirs/")
        assert [o["Key"] for o in flat["Contents"]] == ["dirs/a/", "dirs/a/x", "dirs/b/y"], flat
        # A folder implied by a key below it is no object.
        try:
            s3.head_object(Bucket="workspace", Key="dirs/b/")
            raise AssertionError("an implied folder answered HEAD")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        s3.delete_objects(Bucket="workspace", Delete={"Objects": [{"Key": k} for k in ["dirs/a/", "dirs/a/x", "dirs/b/y"]]})
        assert "Contents" not in s3.list_objects_v2(Bucket="workspace", Prefix="dirs/")
        # A file backend cannot hold both `f` and `f/x`: a 409 naming both keys.
        s3.put_object(Bucket="workspace", Key="dirs/f", Body=b"f")
        try:
            s3.put_object(Bucket="workspace", Key="dirs/f/x", Body=b"x")
            raise AssertionError("an object below an object was accepted")
        except ClientError as e:
            err = e.response["Error"]
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 409, e.response
            assert err["Code"] == "KeyConflict" and "dirs/f/x" in err["Message"] and "`dirs/f`" in err["Message"], err
        assert s3.get_object(Bucket="workspace", Key="dirs/f")["Body"].read() == b"f"
        s3.delete_object(Bucket="workspace", Key="dirs/f")
        # Prefixes no key can begin with list nothing; an empty delimiter is none, not echoed.
        for prefix in ["/", "../", "a//b", "page//"]:
            r = s3.list_objects_v2(Bucket="workspace", Prefix=prefix)
            assert r["KeyCount"] == 0 and "Contents" not in r, (prefix, r)
        r = s3.list_objects_v2(Bucket="workspace", Prefix="page/", Delimiter="")
        assert len(r["Contents"]) == len(ctx.expected_keys) and not r.get("Delimiter"), r

    def acl_views():
        acl = s3.get_bucket_acl(Bucket="workspace")
        owner = acl["Owner"]["ID"]
        assert {"Grantee": {"ID": owner, "DisplayName": owner, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"} in acl["Grants"], acl
        obj = s3.get_object_acl(Bucket="workspace", Key="page/key-000.txt")
        assert obj["Owner"] == acl["Owner"] and obj["Grants"] == acl["Grants"], obj
        url = f"{ctx.gw.url}/workspace/page/key-000.txt"

        def anonymous_status():
            try:
                return urllib.request.urlopen(url).status
            except urllib.error.HTTPError as e:
                return e.code

        assert anonymous_status() == 403
        s3.put_bucket_acl(Bucket="workspace", ACL="public-read")
        try:
            grants = s3.get_bucket_acl(Bucket="workspace")["Grants"]
            everyone = {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}
            assert {"Grantee": everyone, "Permission": "READ"} in grants, grants
            assert anonymous_status() == 200
        finally:
            s3.put_bucket_acl(Bucket="workspace", ACL="private")
        assert anonymous_status() == 403
        for bad in [lambda: s3.put_bucket_acl(Bucket="workspace", ACL="public-read-write"),
                    lambda: s3.put_bucket_acl(Bucket="workspace", GrantRead='id="someone"')]:
            try:
                bad()
                raise AssertionError("an ACL the catalogue cannot express was taken")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "NotImplemented", e.response
        # Objects have their volume's access (as S3 buckets with ACLs disabled).
        s3.put_object(Bucket="workspace", Key="acl/private", Body=b"p", ACL="private")
        s3.put_object_acl(Bucket="workspace", Key="acl/private", ACL="bucket-owner-full-control")
        try:
            s3.put_object(Bucket="workspace", Key="acl/public", Body=b"p", ACL="public-read")
            raise AssertionError("an object ACL was taken")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessControlListNotSupported", e.response

    def protocol():
        # ListBuckets pages.
        first = s3.list_buckets(MaxBuckets=1)
        assert [b["Name"] for b in first["Buckets"]] == ["demo"] and first.get("ContinuationToken"), first
        rest = s3.list_buckets(MaxBuckets=1, ContinuationToken=first["ContinuationToken"])
        assert [b["Name"] for b in rest["Buckets"]] == ["workspace"] and not rest.get("ContinuationToken"), rest
        # x-amz-request-id on every answer, the same as an error body's RequestId.
        head = s3.head_object(Bucket="workspace", Key="page/key-000.txt")
        headers = head["ResponseMetadata"]["HTTPHeaders"]
        assert headers.get("x-amz-request-id") and headers.get("x-amz-id-2"), headers
        try:
            s3.get_object(Bucket="workspace", Key="no/such/key")
            raise AssertionError("a missing key was found")
        except ClientError as e:
            header = e.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
            assert e.response["Error"]["Code"] == "NoSuchKey"
            assert e.response["ResponseMetadata"]["RequestId"] == header, e.response
        # SigV4 may take the request's time from `Date` instead of `X-Amz-Date`.
        status, body = sigv4_request(ctx, "GET", "demo", "README.txt", use_date=True)
        assert status == 200 and body.startswith(b"Archway demo volume"), (status, body[:300])
        # An empty Content-MD5 is refused as S3 refuses it, and nothing is written.
        status, body = sigv4_request(
            ctx, "PUT", "workspace", "md5/empty.txt", body=b"x", extra={"content-md5": ""}
        )
        assert status == 400 and b"InvalidDigest" in body, (status, body[:300])
        expect_failure(lambda: s3.head_object(Bucket="workspace", Key="md5/empty.txt"), "404")

    def checksums_and_parts():
        import base64
        import zlib

        body = os.urandom(100_000)
        # Every algorithm the SDKs send (CRC64NVME through awscrt), kept and given back;
        # botocore checks a GET's full-object checksum itself.
        for algorithm in ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]:
            key = f"sums/{algorithm}"
            put = s3.put_object(Bucket="workspace", Key=key, Body=body, ChecksumAlgorithm=algorithm)
            field = f"Checksum{algorithm}"
            head = s3.head_object(Bucket="workspace", Key=key, ChecksumMode="ENABLED")
            assert head.get(field) == put[field] and head.get("ChecksumType") == "FULL_OBJECT", (algorithm, put, head)
            got = s3.get_object(Bucket="workspace", Key=key, ChecksumMode="ENABLED")
            assert got.get(field) == put[field] and got["Body"].read() == body, algorithm
        crc32 = lambda data: base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        assert s3.head_object(Bucket="workspace", Key="sums/CRC32", ChecksumMode="ENABLED")["ChecksumCRC32"] == crc32(body)

        # Multipart uploads with checksums: composite (the default for CRC32) and full-object.
        parts = [os.urandom(5 * MIB), os.urandom(1234)]
        whole = b"".join(parts)
        for kind in ["COMPOSITE", "FULL_OBJECT"]:
            key = f"sums/multi-{kind}"
            up = s3.create_multipart_upload(Bucket="workspace", Key=key, ChecksumAlgorithm="CRC32", ChecksumType=kind)
            assert up.get("ChecksumType") == kind, up
            listed = []
            for n, data in enumerate(parts, start=1):
                r = s3.upload_part(Bucket="workspace", Key=key, UploadId=up["UploadId"], PartNumber=n, Body=data, ChecksumAlgorithm="CRC32")
                assert r["ChecksumCRC32"] == crc32(data), r
                listed.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
            done = s3.complete_multipart_upload(Bucket="workspace", Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": listed})
            if kind == "FULL_OBJECT":
                assert done["ChecksumCRC32"] == crc32(whole) and done["ChecksumType"] == "FULL_OBJECT", done
            else:
                raw = b"".join(base64.b64decode(p["ChecksumCRC32"]) for p in listed)
                assert done["ChecksumCRC32"] == f"{crc32(raw)}-2" and done["ChecksumType"] == "COMPOSITE", done
            head = s3.head_object(Bucket="workspace", Key=key, ChecksumMode="ENABLED")
            assert head["ChecksumCRC32"] == done["ChecksumCRC32"], head
            got = s3.get_object(Bucket="workspace", Key=key, ChecksumMode="ENABLED")["Body"].read()
            assert got == whole
        # A part listed with a checksum it was not uploaded with.
        up = s3.create_multipart_upload(Bucket="workspace", Key="sums/bad", ChecksumAlgorithm="CRC32")
        r = s3.upload_part(Bucket="workspace", Key="sums/bad", UploadId=up["UploadId"], PartNumber=1, Body=b"x", ChecksumAlgorithm="CRC32")
        try:
            s3.complete_multipart_upload(Bucket="workspace", Key="sums/bad", UploadId=up["UploadId"],
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": crc32(b"y")}]})
            raise AssertionError("a wrong part checksum was taken")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InvalidPart", e.response
        s3.abort_multipart_upload(Bucket="workspace", Key="sums/bad", UploadId=up["UploadId"])

        # partNumber reads and PartsCount, GetObjectAttributes.
        key = "sums/multi-COMPOSITE"
        for n, data in enumerate(parts, start=1):
            got = s3.get_object(Bucket="workspace", Key=key, PartNumber=n)
            assert got["PartsCount"] == 2 and got["Body"].read() == data, (n, got.get("PartsCount"))
        head = s3.head_object(Bucket="workspace", Key=key, PartNumber=2)
        assert head["ContentLength"] == 1234 and head["PartsCount"] == 2, head
        try:
            s3.head_object(Bucket="workspace", Key=key, PartNumber=3)
            raise AssertionError("a part past the last was found")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 416, e.response
        single = s3.get_object(Bucket="workspace", Key="sums/CRC32", PartNumber=1)
        assert single["Body"].read() == body and "PartsCount" not in single
        attrs = s3.get_object_attributes(Bucket="workspace", Key=key, ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
        assert attrs["ObjectSize"] == len(whole) and attrs["StorageClass"] == "STANDARD", attrs
        assert attrs["ObjectParts"]["TotalPartsCount"] == 2, attrs
        assert [p["Size"] for p in attrs["ObjectParts"]["Parts"]] == [5 * MIB, 1234], attrs
        assert attrs["Checksum"]["ChecksumCRC32"].endswith("-2"), attrs
        assert attrs["ETag"].strip('"') == s3.head_object(Bucket="workspace", Key=key)["ETag"].strip('"'), attrs

    def upload_part_copy():
        src = "sums/multi-FULL_OBJECT"
        size = s3.head_object(Bucket="workspace", Key=src)["ContentLength"]
        up = s3.create_multipart_upload(Bucket="workspace", Key="copied/by-parts")
        half = 5 * MIB
        listed = []
        for n, rng in enumerate([f"bytes=0-{half - 1}", f"bytes={half}-{size - 1}"], start=1):
            r = s3.upload_part_copy(Bucket="workspace", Key="copied/by-parts", UploadId=up["UploadId"], PartNumber=n,
                                    CopySource={"Bucket": "workspace", "Key": src}, CopySourceRange=rng)
            listed.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
        s3.complete_multipart_upload(Bucket="workspace", Key="copied/by-parts", UploadId=up["UploadId"], MultipartUpload={"Parts": listed})
        a = s3.get_object(Bucket="workspace", Key=src)["Body"].read()
        b = s3.get_object(Bucket="workspace", Key="copied/by-parts")["Body"].read()
        assert a == b
        # A source condition that fails is 412; a range past the source's end, an error.
        try:
            s3.upload_part_copy(Bucket="workspace", Key="copied/by-parts", UploadId=up["UploadId"], PartNumber=1,
                                CopySource={"Bucket": "workspace", "Key": src}, CopySourceIfMatch='"00000000000000000000000000000000"')
            raise AssertionError("a copy from a changed source was made")
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (404, 412), e.response

    def operations_match_the_doc():
        supported, unsupported = documented_operations()
        model = s3.meta.service_model
        not_applicable = {"WriteGetObjectResponse"}
        undocumented = [op for op in model.operation_names if op not in supported | unsupported | not_applicable]
        assert not undocumented, f"S3 operations doc/s3.md does not list: {undocumented}"
        unknown = sorted((supported | unsupported) - set(model.operation_names))
        assert not unknown, f"doc/s3.md lists operations S3 does not have: {unknown}"
        s3.put_object(Bucket="workspace", Key="probe/k", Body=b"x")
        wrong = []
        for op in sorted(supported | unsupported):
            # A body for the unsupported ones (s3s reads it before answering); only what is
            # required for the supported ones (a PutBucketAcl grant list is refused by design).
            params = dummy_params(model.operation_model(op).input_shape, with_payload=op in unsupported)
            started = time.time()
            try:
                getattr(s3, botocore.xform_name(op))(**params)
                code = "OK"
            except ClientError as e:
                code = e.response["Error"].get("Code")
            took = time.time() - started
            if op in unsupported and (code != "NotImplemented" or took > 2):
                wrong.append(f"{op}: documented as not supported, answered {code} in {took:.1f}s")
            if op in supported and code == "NotImplemented":
                wrong.append(f"{op}: documented as supported, answered NotImplemented")
        assert not wrong, "\n".join(wrong)

    return [
        listing,
        ranged,
        conditional,
        multipart,
        presigned,
        wrong_secret,
        read_only,
        no_grant,
        escape,
        buckets,
        metadata,
        conditional_writes,
        folder_markers,
        acl_views,
        protocol,
        checksums_and_parts,
        upload_part_copy,
        operations_match_the_doc,
    ]


def documented_operations():
    """The operations of doc/s3.md's two tables: (supported, not supported)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    text = open(os.path.join(root, "doc", "s3.md")).read()

    def table(heading):
        section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        names = set()
        for line in section.splitlines():
            if line.startswith("| ") and not line.startswith("| operation"):
                names |= {n.strip() for n in line.split("|")[1].split(",")}
        return names

    return table("## Operations"), table("## Not supported")


def dummy_params(shape, name="", depth=0, with_payload=False):
    """Values for an operation's required parameters (and every scalar of a body whose
    members are all optional), enough for the gateway to route and answer it."""
    import datetime

    if shape is None:
        return {}
    t = shape.type_name
    if t == "structure":
        members = list(shape.required_members)
        payload = shape.serialization.get("payload")
        if with_payload and depth == 0 and payload and payload not in members and shape.members[payload].type_name == "structure":
            members.append(payload)
        if getattr(shape, "is_tagged_union", False) and shape.members:
            members = [next(iter(shape.members))]
        elif not members and depth > 0:
            members = [m for m, sh in shape.members.items() if sh.type_name not in ("structure", "list", "map")]
        return {m: dummy_params(shape.members[m], m, depth + 1) for m in members}
    if t == "list":
        return [dummy_params(shape.member, name, depth + 1)] if depth < 4 else []
    if t == "map":
        return {}
    if t in ("integer", "long"):
        return 1
    if t == "boolean":
        return False
    if t == "timestamp":
        return datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    if t == "blob":
        return b"x"
    if name == "Bucket":
        return "workspace"
    if name == "Key":
        return "probe/k"
    if name == "CopySource":
        return "workspace/probe/k"
    if shape.enum:
        return shape.enum[0]
    return "x" * max(1, shape.metadata.get("min", 1))


# ----- aws cli -----


def aws_tests(ctx):
    aws = os.environ.get("ARCHWAY_TEST_AWS") or shutil.which("aws")
    env = dict(
        os.environ,
        AWS_SHARED_CREDENTIALS_FILE=ctx.gw.credentials_file,
        AWS_CONFIG_FILE=os.path.join(ctx.work, "aws-config"),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
    )
    base = [aws, "--profile", "archway", "--endpoint-url", ctx.gw.url]

    def run(*args, check=True, envs=None):
        return subprocess.run(
            base + list(args), env=envs or env, capture_output=True, text=True, check=check, timeout=600
        )

    def listing():
        out = run("s3", "ls").stdout
        assert "demo" in out and "workspace" in out, out
        page = json.loads(run("s3api", "list-objects-v2", "--bucket", "workspace", "--prefix", "page/", "--page-size", "4").stdout)
        assert [o["Key"] for o in page["Contents"]] == ctx.expected_keys
        first = json.loads(
            run("s3api", "list-objects-v2", "--bucket", "workspace", "--prefix", "page/", "--max-items", "10").stdout
        )
        assert len(first["Contents"]) == 10 and "NextToken" in first, first.keys()
        rest = json.loads(
            run(
                "s3api", "list-objects-v2", "--bucket", "workspace", "--prefix", "page/", "--starting-token", first["NextToken"]
            ).stdout
        )
        assert [o["Key"] for o in first["Contents"] + rest["Contents"]] == ctx.expected_keys
        rec = run("s3", "ls", "--recursive", "s3://demo").stdout
        assert "images/field1.fits" in rec and "tables/sources.fits" in rec, rec

    def ranged():
        out = os.path.join(ctx.work, "aws-range")
        meta = json.loads(run("s3api", "get-object", "--bucket", "workspace", "--key", "page/key-002.txt", "--range", "bytes=0-3", out).stdout)
        assert meta["ContentRange"] == "bytes 0-3/20", meta
        assert open(out, "rb").read() == b"page"

    def conditional():
        head = json.loads(run("s3api", "head-object", "--bucket", "workspace", "--key", "page/key-002.txt").stdout)
        r = run("s3api", "get-object", "--bucket", "workspace", "--key", "page/key-002.txt", "--if-none-match", head["ETag"], os.path.join(ctx.work, "aws-cond"), check=False)
        assert r.returncode != 0 and "304" in r.stderr, r.stderr
        r = run("s3api", "get-object", "--bucket", "workspace", "--key", "page/key-002.txt", "--if-match", head["ETag"], os.path.join(ctx.work, "aws-cond"))
        assert open(os.path.join(ctx.work, "aws-cond"), "rb").read() == b"page/key-002.txt\n000"

    def multipart():
        run("s3", "cp", "--quiet", ctx.big, "s3://workspace/aws/big.bin")
        out = os.path.join(ctx.work, "aws-big.bin")
        run("s3", "cp", "--quiet", "s3://workspace/aws/big.bin", out)
        assert sha256_file(out) == ctx.big_sha

    def copy_big():
        # Above its multipart threshold, `aws s3 cp` copies between buckets with UploadPartCopy.
        run("s3", "cp", "--quiet", "s3://workspace/aws/big.bin", "s3://workspace/aws/copied.bin")
        out = os.path.join(ctx.work, "aws-copied.bin")
        run("s3", "cp", "--quiet", "s3://workspace/aws/copied.bin", out)
        assert sha256_file(out) == ctx.big_sha
        head = json.loads(run("s3api", "head-object", "--bucket", "workspace", "--key", "aws/copied.bin").stdout)
        assert head["ETag"].strip('"').endswith("-13"), head

    def presigned():
        url = run("s3", "presign", "s3://demo/README.txt", "--expires-in", "300").stdout.strip()
        assert http_get(url).startswith(b"Archway demo volume")

    def wrong_secret():
        cred = os.path.join(ctx.work, "aws-bad-credentials")
        with open(cred, "w") as f:
            f.write(f"[archway]\naws_access_key_id = {ctx.gw.key}\naws_secret_access_key = {'y' * 40}\n")
        r = run("s3", "ls", "s3://demo", check=False, envs=dict(env, AWS_SHARED_CREDENTIALS_FILE=cred))
        assert r.returncode != 0 and "SignatureDoesNotMatch" in r.stderr, r.stderr

    def read_only():
        r = run("s3", "cp", __file__, "s3://demo/clients.py", check=False)
        assert r.returncode != 0 and "AccessDenied" in r.stderr + r.stdout, (r.returncode, r.stderr, r.stdout)

    def sync():
        src = os.path.join(ctx.work, "aws-sync")
        os.makedirs(os.path.join(src, "d"), exist_ok=True)
        for i in range(4):
            with open(os.path.join(src, "d" if i % 2 else "", f"a{i}.bin"), "wb") as f:
                f.write(os.urandom(2000 + i))
        first = run("s3", "sync", src, "s3://workspace/aws-sync").stdout
        assert first.count("upload:") == 4, first
        second = run("s3", "sync", src, "s3://workspace/aws-sync").stdout
        assert "upload:" not in second, second

    return [listing, ranged, conditional, multipart, copy_big, presigned, wrong_secret, read_only, sync]


# ----- s3fs / fsspec -----


def s3fs_tests(ctx):
    import s3fs

    def fs_for(key=None, secret=None):
        return s3fs.S3FileSystem(
            key=key or ctx.gw.key,
            secret=secret or ctx.gw.secret,
            endpoint_url=ctx.gw.url,
            client_kwargs={"region_name": "us-east-1"},
            config_kwargs={"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}},
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    fs = fs_for()

    def listing():
        assert sorted(fs.ls("")) == ["demo", "workspace"], fs.ls("")
        found = fs.find("workspace/page/", maxdepth=None)
        assert found == [f"workspace/{k}" for k in ctx.expected_keys], found
        assert fs.ls("demo") == ["demo/README.txt", "demo/images", "demo/tables"], fs.ls("demo")
        info = fs.info("demo/images/field1.fits")
        assert info["size"] == 69120, info

    def ranged():
        assert fs.cat_file("workspace/page/key-003.txt", start=5, end=8) == b"key"
        with fs.open("demo/images/field1.fits", "rb", block_size=4096) as f:
            f.seek(2880)
            assert len(f.read(100)) == 100

    def conditional():
        # fsspec has no conditional-read API; it pins reads to the ETag it first saw
        # (version_aware=False still checks size/ETag consistency through If-Match on ranges).
        with fs.open("workspace/page/key-003.txt", "rb") as f:
            assert f.read() == b"page/key-003.txt\n000"

    def multipart():
        with fs.open("workspace/s3fs/big.bin", "wb", block_size=8 * MIB) as out, open(ctx.big, "rb") as src:
            shutil.copyfileobj(src, out, 4 * MIB)
        local = os.path.join(ctx.work, "s3fs-big.bin")
        fs.get_file("workspace/s3fs/big.bin", local)
        assert sha256_file(local) == ctx.big_sha

    def presigned():
        url = fs.url("demo/README.txt", expires=300)
        assert http_get(url).startswith(b"Archway demo volume")

    def wrong_secret():
        bad = fs_for(secret="z" * 40)
        expect_failure(lambda: bad.cat_file("demo/README.txt"), "SignatureDoesNotMatch", "PermissionError", "Forbidden")

    def read_only():
        expect_failure(lambda: fs.pipe_file("demo/x.txt", b"x"), "AccessDenied", "PermissionError", "Forbidden")

    return [listing, ranged, conditional, multipart, presigned, wrong_secret, read_only]


# ----- rclone -----


def rclone_tests(ctx):
    rclone = os.environ.get("ARCHWAY_TEST_RCLONE") or shutil.which("rclone")
    conf = os.path.join(ctx.work, "rclone.conf")
    with open(conf, "w") as f:
        f.write(
            "[archway]\ntype = s3\nprovider = Other\n"
            f"endpoint = {ctx.gw.url}\naccess_key_id = {ctx.gw.key}\nsecret_access_key = {ctx.gw.secret}\n"
            "region = us-east-1\nforce_path_style = true\n"
            "[forged]\ntype = s3\nprovider = Other\n"
            f"endpoint = {ctx.gw.url}\naccess_key_id = {ctx.gw.key}\nsecret_access_key = {'w' * 40}\n"
            "region = us-east-1\nforce_path_style = true\n"
        )

    def run(*args, check=True):
        return subprocess.run(
            [rclone, "--config", conf, "--retries", "1", "--low-level-retries", "1", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

    def listing():
        assert run("lsd", "archway:").stdout.split().count("demo") == 1
        files = run("lsf", "--s3-list-chunk", "3", "archway:workspace/page").stdout.split()
        assert files == [k.split("/")[1] for k in ctx.expected_keys], files
        rec = run("lsf", "-R", "archway:demo").stdout.split()
        assert "images/field1.fits" in rec, rec

    def ranged():
        out = run("cat", "--offset", "5", "--count", "3", "archway:workspace/page/key-004.txt").stdout
        assert out == "key", out

    def conditional():
        # rclone pins multi-threaded downloads with If-Match; a plain copy with checks suffices.
        run("copyto", "archway:workspace/page/key-004.txt", os.path.join(ctx.work, "rc-004.txt"))
        assert open(os.path.join(ctx.work, "rc-004.txt"), "rb").read() == b"page/key-004.txt\n000"

    def multipart():
        run("copyto", "--s3-upload-cutoff", "8M", "--s3-chunk-size", "8M", ctx.big, "archway:workspace/rclone/big.bin")
        out = os.path.join(ctx.work, "rclone-big.bin")
        run("copyto", "--multi-thread-streams", "4", "--multi-thread-cutoff", "16M", "archway:workspace/rclone/big.bin", out)
        assert sha256_file(out) == ctx.big_sha

    def presigned():
        url = run("link", "--expire", "5m", "archway:demo/README.txt").stdout.strip()
        assert http_get(url).startswith(b"Archway demo volume")

    def wrong_secret():
        r = run("lsf", "forged:demo", check=False)
        assert r.returncode != 0 and ("SignatureDoesNotMatch" in r.stderr or "403" in r.stderr), r.stderr

    def read_only():
        r = run("copyto", __file__, "archway:demo/clients.py", check=False)
        assert r.returncode != 0 and ("AccessDenied" in r.stderr or "403" in r.stderr), r.stderr

    def sync_check():
        # rclone keeps modification times in metadata and verifies content by MD5 (ETags).
        src = os.path.join(ctx.work, "rclone-sync")
        os.makedirs(os.path.join(src, "sub"), exist_ok=True)
        for i in range(5):
            with open(os.path.join(src, "sub" if i % 2 else "", f"f{i}.txt"), "wb") as f:
                f.write(os.urandom(1000 + i))
        os.utime(os.path.join(src, "f0.txt"), (1_600_000_000, 1_600_000_000))
        run("sync", src, "archway:workspace/rclone-sync")
        r = run("check", src, "archway:workspace/rclone-sync", check=False)
        assert r.returncode == 0 and "0 differences found" in r.stderr, r.stderr
        assert "hashes could not be checked" not in r.stderr, r.stderr
        listed = run("lsl", "archway:workspace/rclone-sync/f0.txt").stdout
        assert "2020-09-13" in listed, listed
        again = run("sync", "-v", src, "archway:workspace/rclone-sync").stderr
        assert "Copied" not in again, again

    return [listing, ranged, conditional, multipart, presigned, wrong_secret, read_only, sync_check]


# ----- s3cmd -----


def s3cmd_tests(ctx):
    venv_bin = os.path.dirname(os.environ.get("ARCHWAY_TEST_PYTHON") or sys.executable)
    s3cmd = os.path.join(venv_bin, "s3cmd") if os.path.exists(os.path.join(venv_bin, "s3cmd")) else shutil.which("s3cmd")
    host = ctx.gw.url.removeprefix("http://")
    conf = os.path.join(ctx.work, "s3cfg")
    with open(conf, "w") as f:
        f.write(
            "[default]\n"
            f"access_key = {ctx.gw.key}\nsecret_key = {ctx.gw.secret}\n"
            f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
            "signature_v2 = False\nbucket_location = us-east-1\n"
        )

    def run(*args, check=True):
        return subprocess.run(
            [sys.executable, s3cmd, "-c", conf, *args], capture_output=True, text=True, check=check, timeout=600
        )

    def sync_and_info():
        src = os.path.join(ctx.work, "s3cmd-sync")
        os.makedirs(src, exist_ok=True)
        for i in range(3):
            with open(os.path.join(src, f"s{i}.dat"), "wb") as f:
                f.write(os.urandom(3000 + i))
        first = run("sync", src + "/", "s3://workspace/s3cmd-sync/").stdout
        assert first.count("upload:") == 3, first
        # s3cmd compares MD5s (ETags): the second sync has nothing to do.
        second = run("sync", src + "/", "s3://workspace/s3cmd-sync/").stdout
        assert "upload:" not in second, second
        info = run("info", "s3://workspace/s3cmd-sync/s0.dat").stdout
        want = hashlib.md5(open(os.path.join(src, "s0.dat"), "rb").read()).hexdigest()
        assert f"MD5 sum:   {want}" in info, info

    return [sync_and_info]


# ----- s3fs-fuse (Debian's s3fs): a bucket mounted through the S3 API -----


def s3fs_fuse_tests(ctx):
    binary = os.environ.get("ARCHWAY_TEST_S3FS_FUSE") or shutil.which("s3fs")
    s3 = boto3_client(ctx)

    def mkdir_rmdir_make_folder_markers():
        if not binary:
            raise AssertionError("s3fs (s3fs-fuse) is not installed: run scripts/test-services")
        mnt = os.path.join(ctx.work, "s3fs-mnt")
        os.makedirs(mnt, exist_ok=True)
        passwd = os.path.join(ctx.work, "s3fs-passwd")
        with open(passwd, "w") as f:
            f.write(f"{ctx.gw.key}:{ctx.gw.secret}\n")
        os.chmod(passwd, 0o600)
        log = open(os.path.join(ctx.work, "s3fs.log"), "w")
        proc = subprocess.Popen(
            [binary, "workspace", mnt, "-f", "-o", f"url={ctx.gw.url}", "-o", "use_path_request_style",
             "-o", f"passwd_file={passwd}", "-o", "endpoint=us-east-1", "-o", "sigv4",
             "-o", "stat_cache_expire=1", "-o", "dbglevel=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 30
            while not os.path.ismount(mnt):
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"s3fs did not mount; see {log.name}")
                time.sleep(0.2)
            os.mkdir(os.path.join(mnt, "s3fs-dir"))
            head = s3.head_object(Bucket="workspace", Key="s3fs-dir/")
            assert head["ContentLength"] == 0, head
            # s3fs keeps the mode in x-amz-meta-mode: it must come back.
            assert "mode" in head["Metadata"], head
            assert "s3fs-dir" in os.listdir(mnt), os.listdir(mnt)
            assert os.path.isdir(os.path.join(mnt, "s3fs-dir"))
            os.mkdir(os.path.join(mnt, "s3fs-dir", "inner"))
            with open(os.path.join(mnt, "s3fs-dir", "inner", "f.txt"), "w") as f:
                f.write("through s3fs")
            body = s3.get_object(Bucket="workspace", Key="s3fs-dir/inner/f.txt")["Body"].read()
            assert body == b"through s3fs", body
            assert sorted(os.listdir(os.path.join(mnt, "s3fs-dir"))) == ["inner"]
            os.remove(os.path.join(mnt, "s3fs-dir", "inner", "f.txt"))
            # The marker keeps the now empty folder.
            s3.head_object(Bucket="workspace", Key="s3fs-dir/inner/")
            os.rmdir(os.path.join(mnt, "s3fs-dir", "inner"))
            os.rmdir(os.path.join(mnt, "s3fs-dir"))
            left = s3.list_objects_v2(Bucket="workspace", Prefix="s3fs-dir")
            assert "Contents" not in left, left
        finally:
            subprocess.run(["umount", mnt], capture_output=True)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()

    return [mkdir_rmdir_make_folder_markers]


# ----- a browser's CORS, as curl sends it -----


def cors_tests(ctx):
    curl = shutil.which("curl")
    s3 = boto3_client(ctx)

    def curl_headers(*args):
        r = subprocess.run([curl, "-s", "-D", "-", "-o", "/dev/null", *args], capture_output=True, text=True, timeout=60)
        lines = r.stdout.replace("\r", "").split("\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    def preflight_and_fetch():
        if not curl:
            raise AssertionError("curl is not installed")
        from botocore.exceptions import ClientError

        url = f"{ctx.gw.url}/demo/"
        key = s3.list_objects_v2(Bucket="demo", MaxKeys=1)["Contents"][0]["Key"]
        obj = url + urllib.parse.quote(key)
        origin = "https://js9.example.org"
        ask = ["-X", "OPTIONS", "-H", f"Origin: {origin}", "-H", "Access-Control-Request-Method: GET",
               "-H", "Access-Control-Request-Headers: range"]
        # No rules yet: browsers are told no.
        status, _ = curl_headers(*ask, obj)
        assert status == 403, status
        try:
            s3.get_bucket_cors(Bucket="demo")
            raise AssertionError("a CORS configuration where none was set")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "NoSuchCORSConfiguration", e.response
        rules = [{"AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET", "HEAD"],
                  "AllowedHeaders": ["Range"], "ExposeHeaders": ["ETag", "Content-Range"], "MaxAgeSeconds": 600}]
        s3.put_bucket_cors(Bucket="demo", CORSConfiguration={"CORSRules": rules})
        try:
            got = s3.get_bucket_cors(Bucket="demo")["CORSRules"]
            assert got == rules, got
            status, h = curl_headers(*ask, obj)
            assert status == 200, (status, h)
            assert h["access-control-allow-origin"] == origin, h
            assert "GET" in h["access-control-allow-methods"] and h["access-control-allow-headers"] == "range", h
            assert h["access-control-max-age"] == "600", h
            # A method or an origin no rule allows.
            status, _ = curl_headers("-X", "OPTIONS", "-H", f"Origin: {origin}", "-H", "Access-Control-Request-Method: PUT", obj)
            assert status == 403
            status, _ = curl_headers("-X", "OPTIONS", "-H", "Origin: https://evil.example.com", "-H", "Access-Control-Request-Method: GET", obj)
            assert status == 403
            # The request itself is still authenticated: a presigned GET from the page.
            signed = s3.generate_presigned_url("get_object", Params={"Bucket": "demo", "Key": key}, ExpiresIn=300)
            status, h = curl_headers("-H", f"Origin: {origin}", "-H", "Range: bytes=0-9", signed)
            assert status == 206 and h["access-control-allow-origin"] == origin, (status, h)
            assert "ETag" in h["access-control-expose-headers"], h
            status, h = curl_headers("-H", f"Origin: {origin}", obj)
            assert status == 403 and h["access-control-allow-origin"] == origin, (status, h)
        finally:
            s3.delete_bucket_cors(Bucket="demo")
        status, _ = curl_headers(*ask, obj)
        assert status == 403, status

    return [preflight_and_fetch]


# ----- aws-chunked (SigV4 streaming), as the AWS SDKs send unsized streams -----


def _hmac(key, msg):
    import hmac

    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_request(ctx, method, bucket, key, body=b"", extra=None, use_date=False):
    """One request signed with SigV4 as written in its specification; with `use_date`, the
    request's time is in the HTTP `Date` header (signed) instead of `X-Amz-Date`."""
    import email.utils
    import hmac
    import http.client
    import urllib.parse

    now = time.time()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    day = amz_date[:8]
    scope = f"{day}/us-east-1/s3/aws4_request"
    path = "/" + bucket + "/" + urllib.parse.quote(key, safe="/~")
    headers = {
        "host": f"127.0.0.1:{ctx.gw.port}",
        "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
        **(extra or {}),
    }
    if use_date:
        headers["date"] = email.utils.formatdate(now, usegmt=True)
    else:
        headers["x-amz-date"] = amz_date
    signed = sorted(headers)
    canonical = "\n".join(
        [method, path, "", *(f"{h}:{headers[h].strip()}" for h in signed), "", ";".join(signed),
         headers["x-amz-content-sha256"]]
    )
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + ctx.gw.secret).encode(), day)
    k = _hmac(_hmac(_hmac(k, "us-east-1"), "s3"), "aws4_request")
    signature = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ctx.gw.key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", ctx.gw.port, timeout=60)
    conn.request(method, path, body=body or None, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def sigv4_presign(ctx, bucket, key, when, expires):
    """A presigned GET URL signed as of `when` (seconds since the epoch), from the SigV4
    specification (boto3 always signs as of now)."""
    import hmac
    import urllib.parse

    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    path = "/" + bucket + "/" + urllib.parse.quote(key, safe="/~")
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{ctx.gw.key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in sorted(query.items())
    )
    canonical = "\n".join(["GET", path, canonical_query, f"host:127.0.0.1:{ctx.gw.port}", "", "host", "UNSIGNED-PAYLOAD"])
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + ctx.gw.secret).encode(), amz_date[:8])
    k = _hmac(_hmac(_hmac(k, "us-east-1"), "s3"), "aws4_request")
    signature = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ctx.gw.url}{path}?{canonical_query}&X-Amz-Signature={signature}"


def sigv4_streaming_put(ctx, bucket, key, data, chunk_size=64 * 1024, corrupt=False):
    """PUT with Content-Encoding: aws-chunked and per-chunk signatures
    (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), written from the SigV4 specification."""
    import http.client
    import urllib.parse

    now = time.gmtime()
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", now)
    day = time.strftime("%Y%m%d", now)
    region, service = "us-east-1", "s3"
    scope = f"{day}/{region}/{service}/aws4_request"
    host = f"127.0.0.1:{ctx.gw.port}"
    path = "/" + bucket + "/" + urllib.parse.quote(key, safe="/~")
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    sig_len = 64
    body_len = sum(len(f"{len(c):x};chunk-signature=") + sig_len + 2 + len(c) + 2 for c in chunks)
    headers = {
        "host": host,
        "content-encoding": "aws-chunked",
        "content-length": str(body_len),
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
    }
    signed = sorted(headers)
    canonical = "\n".join(
        ["PUT", path, "", *(f"{h}:{headers[h]}" for h in signed), "", ";".join(signed), headers["x-amz-content-sha256"]]
    )
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + ctx.gw.secret).encode(), day)
    k = _hmac(_hmac(_hmac(k, region), service), "aws4_request")
    import hmac

    seed = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ctx.gw.key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={seed}"
    )
    empty = hashlib.sha256(b"").hexdigest()
    body, prev = b"", seed
    for c in chunks:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty, hashlib.sha256(c).hexdigest()])
        prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        payload = c
        if corrupt and c:
            payload = bytes([c[0] ^ 1]) + c[1:]
            corrupt = False
        body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + payload + b"\r\n"
    assert len(body) == body_len
    conn = http.client.HTTPConnection("127.0.0.1", ctx.gw.port, timeout=60)
    conn.request("PUT", path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def chunked_tests(ctx):
    s3 = boto3_client(ctx)

    def signed_chunks():
        data = os.urandom(300_000)
        status, body = sigv4_streaming_put(ctx, "workspace", "chunked/object.bin", data)
        assert status == 200, (status, body)
        assert s3.get_object(Bucket="workspace", Key="chunked/object.bin")["Body"].read() == data

    def tampered_chunk():
        data = os.urandom(200_000)
        status, body = sigv4_streaming_put(ctx, "workspace", "chunked/tampered.bin", data, corrupt=True)
        assert status == 403 and b"SignatureDoesNotMatch" in body, (status, body)
        try:
            s3.head_object(Bucket="workspace", Key="chunked/tampered.bin")
            raise AssertionError("a tampered aws-chunked upload was stored")
        except Exception as e:  # noqa: BLE001
            assert "404" in str(e), e

    return [signed_chunks, tampered_chunk]


# ----- hostile input: what a careless or malicious client sends -----


def signed(ctx, method, bucket, key="", query=None, body=b"", when=None, region="us-east-1",
           service="s3", extra=None):
    """A request signed with SigV4 from its specification, with the time, region and service
    chosen by the caller; returns (status, body bytes)."""
    import hmac
    import http.client
    import urllib.parse

    when = time.time() if when is None else when
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    path = "/" + bucket + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
    query = query or {}
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
    )
    headers = {
        "host": f"127.0.0.1:{ctx.gw.port}",
        "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-amz-date": amz_date,
        **(extra or {}),
    }
    signed_headers = sorted(headers)
    canonical = "\n".join(
        [method, path, canonical_query, *(f"{h}:{headers[h].strip()}" for h in signed_headers), "",
         ";".join(signed_headers), headers["x-amz-content-sha256"]]
    )
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + ctx.gw.secret).encode(), day)
    k = _hmac(_hmac(_hmac(k, region), service), "aws4_request")
    signature = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ctx.gw.key}/{scope}, "
        f"SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", ctx.gw.port, timeout=60)
    target = path + ("?" + canonical_query if canonical_query else "")
    conn.request(method, target, body=body or None, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def s3_code(body):
    import re

    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else body[:200].decode(errors="replace")


def hostile_tests(ctx):
    s3 = boto3_client(ctx)

    def exists(key):
        try:
            s3.head_object(Bucket="workspace", Key=key)
            return True
        except Exception:  # noqa: BLE001
            return False

    s3.put_object(Bucket="workspace", Key="hostile/keep.txt", Body=b"keep")

    def clock_skew():
        for offset in (-3600, 3600):
            status, body = signed(ctx, "GET", "workspace", "hostile/keep.txt", when=time.time() + offset)
            assert (status, s3_code(body)) == (403, "RequestTimeTooSkewed"), (offset, status, body)
        status, _ = signed(ctx, "GET", "workspace", "hostile/keep.txt", when=time.time() - 60)
        assert status == 200, "a minute of skew is within the allowed window"

    def wrong_service():
        status, body = signed(ctx, "GET", "workspace", "hostile/keep.txt", service="iam")
        assert (status, s3_code(body)) == (400, "AuthorizationHeaderMalformed"), (status, body)
        assert b"iam" in body, body
        # Any region signs: the gateway has one namespace (clients say us-east-1, auto, ...).
        status, _ = signed(ctx, "GET", "workspace", "hostile/keep.txt", region="eu-west-1")
        assert status == 200

    def tampered_and_expired_presigned():
        url = sigv4_presign(ctx, "workspace", "hostile/keep.txt", time.time(), 60)
        assert http_get(url) == b"keep"
        tampered = url.replace("hostile/keep.txt", "hostile/other.txt")
        expect_failure(lambda: http_get(tampered), "403")
        for bad in (url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000"), url[:-4] + "0000"):
            expect_failure(lambda bad=bad: http_get(bad), "403")
        old = sigv4_presign(ctx, "workspace", "hostile/keep.txt", time.time() - 600, 60)
        try:
            http_get(old)
            raise AssertionError("an expired presigned URL was honoured")
        except urllib.error.HTTPError as e:
            assert e.code == 403 and b"expired" in e.read().lower()

    def delete_objects_past_1000_keys():
        keys = [{"Key": f"hostile/many-{i}"} for i in range(1001)] + [{"Key": "hostile/keep.txt"}]
        expect_failure(lambda: s3.delete_objects(Bucket="workspace", Delete={"Objects": keys}), "MalformedXML")
        assert exists("hostile/keep.txt"), "nothing was deleted"

    def xml_with_entities():
        body = (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">'
            b'<!ENTITY y "hostile/keep.txt">]>'
            b"<Delete><Object><Key>&y;</Key></Object><Object><Key>&x;</Key></Object></Delete>"
        )
        md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
        status, answer = signed(ctx, "POST", "workspace", query={"delete": ""}, body=body,
                                extra={"content-md5": md5, "content-type": "application/xml"})
        assert status == 400 and s3_code(answer) == "MalformedXML", (status, answer)
        assert b"root:" not in answer
        assert exists("hostile/keep.txt"), "nothing was deleted"

    def deeply_nested_and_huge_xml():
        deep = b"<Delete>" + b"<Object>" * 100_000 + b"</Object>" * 100_000 + b"</Delete>"
        huge = b"<Delete>" + b"<Object><Key>hostile/x</Key></Object>" * 200_000 + b"</Delete>"
        for body in (deep, huge):
            md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
            status, answer = signed(ctx, "POST", "workspace", query={"delete": ""}, body=body,
                                    extra={"content-md5": md5})
            assert status == 400, (status, answer[:300])
            assert s3_code(answer) in ("MalformedXML", "MaxMessageLengthExceeded"), answer[:300]
        status, answer = signed(ctx, "POST", "workspace", query={"delete": ""}, body=huge)
        assert b"max_s3_xml_body_bytes" in answer, answer[:300]
        assert exists("hostile/keep.txt")

    def part_numbers_out_of_range():
        up = s3.create_multipart_upload(Bucket="workspace", Key="hostile/parts.bin")["UploadId"]
        for n in (0, 10001, -1):
            expect_failure(
                lambda n=n: s3.upload_part(Bucket="workspace", Key="hostile/parts.bin", UploadId=up,
                                           PartNumber=n, Body=b"x"),
                "InvalidArgument", "Parameter validation failed")
        s3.abort_multipart_upload(Bucket="workspace", Key="hostile/parts.bin", UploadId=up)
        status, body = signed(ctx, "PUT", "workspace", "hostile/parts.bin",
                              query={"partNumber": "10001", "uploadId": "x" * 10}, body=b"x")
        assert status == 400 and s3_code(body) == "InvalidArgument", (status, body)

    def keys_that_are_no_paths():
        for key, codes in (
            ("hostile/../escape.txt", ("InvalidArgument", "InvalidKey")),
            ("hostile/./dot.txt", ("InvalidArgument", "InvalidKey")),
            ("hostile/nul\x00.txt", ("InvalidArgument", "InvalidKey", "InvalidURI")),
            ("hostile/" + "k" * 1100, ("KeyTooLongError",)),
        ):
            status, body = signed(ctx, "PUT", "workspace", key, body=b"x")
            assert status == 400 and s3_code(body) in codes, (key[:30], status, body)
        # Other control characters are refused too, naming them (a file name, a terminal and a
        # log line all take them badly).
        expect_failure(lambda: s3.put_object(Bucket="workspace", Key="hostile/tab\there.txt", Body=b"t"),
                       "control characters")
        assert not exists("hostile/tab\there.txt")
        # A listing's prefix is never refused for its characters: it is answered with what
        # matches.
        for prefix in ("hostile/../", "hostile/nul\x00", "..", "/", "k" * 2000, "\x01"):
            status, body = signed(ctx, "GET", "workspace", query={"list-type": "2", "prefix": prefix})
            assert status == 200, (repr(prefix[:20]), status, body[:300])
            assert b"<KeyCount>0</KeyCount>" in body, body[:300]
        assert not os.path.exists(os.path.join(ctx.gw.data, "workspaces", "escape.txt"))

    def oversized_headers():
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", ctx.gw.port, timeout=30)
        conn.request("GET", "/healthz", headers={"x-big": "a" * (1 << 20)})
        status = conn.getresponse().status
        assert status == 431, status
        conn = http.client.HTTPConnection("127.0.0.1", ctx.gw.port, timeout=30)
        conn.request("GET", "/healthz", headers={f"x-h{i}": "v" for i in range(500)})
        status = conn.getresponse().status
        assert status == 431, status

    def malformed_json_on_every_api_route():
        spec = json.loads(urllib.request.urlopen(ctx.gw.url + "/api/v1/openapi.json").read())
        tried = 0
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if "requestBody" not in op:
                    continue
                url = ctx.gw.url + path.replace("{id}", "workspace").replace("{name}", "admin") \
                    .replace("{subject}", "user:admin").replace("{user}", "admin")
                for body in (b"{", b"[]", b"\x00\xff", b'{"a":' * 10000):
                    req = urllib.request.Request(url, method=method.upper(), data=body, headers={
                        "Authorization": f"Bearer {ctx.gw.token}", "Content-Type": "application/json"})
                    try:
                        urllib.request.urlopen(req)
                        raise AssertionError(f"{method} {path} took {body[:10]!r}")
                    except urllib.error.HTTPError as e:
                        answer = json.loads(e.read())
                        assert e.code in (400, 413, 415, 422), (method, path, e.code, answer)
                        assert answer["error"]["message"], answer
                    tried += 1
        assert tried >= 40, tried

    return [clock_skew, wrong_service, tampered_and_expired_presigned, delete_objects_past_1000_keys,
            xml_with_entities, deeply_nested_and_huge_xml, part_numbers_out_of_range,
            keys_that_are_no_paths, oversized_headers, malformed_json_on_every_api_route]


def stac_tests(ctx):
    """pystac-client against /stac: the demo volume's science index (scanned first)."""
    from pystac_client import Client

    gw = ctx.gw

    def scan(volume):
        req = urllib.request.Request(gw.url + f"/api/v1/volumes/{volume}/scan", method="POST",
                                     headers={"Authorization": f"Bearer {gw.token}"})
        with urllib.request.urlopen(req) as r:
            events = [json.loads(line) for line in r.read().splitlines() if line.strip()]
        assert events[-1]["event"] == "done", events
        return events[-1]

    def as_admin():
        return Client.open(gw.url + "/stac", headers={"Authorization": f"Bearer {gw.token}"})

    def collections_and_search():
        done = scan("demo")
        assert done["science"]["with_position"] == 2, done
        client = as_admin()
        ids = [c.id for c in client.get_collections()]
        assert "demo" in ids and "workspace" in ids, ids
        # M51 is at RA 202.47, longitude -157.53.
        found = list(client.search(bbox=[-158, 47, -157, 47.5], datetime="2026-01-01/2026-01-02").items())
        assert [(i.collection_id, i.id) for i in found] == [("demo", "images/field1.fits")], found
        item = found[0]
        assert item.properties["instrument_name"] == "DEMOCAM", item.properties
        assert item.geometry["type"] == "Polygon" and len(item.geometry["coordinates"][0]) == 5
        assert item.assets["data"].media_type == "application/fits"
        assert not list(client.search(bbox=[-158, 47, -157, 47.5], datetime="2020-01-01/2020-01-02").items())
        crab = list(client.search(bbox=[83, 21.5, 84, 22.5], method="POST").items())
        assert [i.id for i in crab] == ["images/counts.fits"], crab
        # Pages of one: every dated object once.
        paged = [i.id for i in client.search(collections=["demo"], limit=1).items()]
        assert sorted(paged) == ["images/counts.fits", "images/field1.fits", "tables/sources.fits"], paged
        demo = client.get_collection("demo")
        assert demo.extra_fields["archway:bucket"] == "s3://demo", demo.extra_fields

    def readers_only():
        anon = Client.open(gw.url + "/stac")
        assert "demo" not in [c.id for c in anon.get_collections()]
        assert not list(anon.search(bbox=[-158, 47, -157, 47.5]).items())
        gw.api("PATCH", "/api/v1/volumes/demo", {"public_read": True})
        try:
            found = list(Client.open(gw.url + "/stac").search(bbox=[-158, 47, -157, 47.5]).items())
            assert [i.id for i in found] == ["images/field1.fits"], found
            # The public object is read from its asset link, anonymously.
            data = http_get(found[0].assets["data"].href)
            assert data.startswith(b"SIMPLE  =") and len(data) == found[0].assets["data"].extra_fields["file:size"]
        finally:
            gw.api("PATCH", "/api/v1/volumes/demo", {"public_read": False})
        gw.api("POST", "/api/v1/users", {"name": "stacless"})
        token = gw.api("POST", "/api/v1/users/stacless/tokens", {"name": "t"})["secret"]
        other = Client.open(gw.url + "/stac", headers={"Authorization": f"Bearer {token}"})
        assert "demo" not in [c.id for c in other.get_collections()]
        assert not list(other.search(bbox=[-158, 47, -157, 47.5]).items())

    return [collections_and_search, readers_only]


def sia_tests(ctx):
    """pyvo's SIA2Service against /sia/v2 (the demo volume scanned by the stac suite or here)."""
    import astropy.units as u
    import pyvo
    import requests
    from astropy.time import Time

    gw = ctx.gw

    def session(token):
        s = requests.Session()
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        return s

    def scan_demo():
        req = urllib.request.Request(gw.url + "/api/v1/volumes/demo/scan", method="POST",
                                     headers={"Authorization": f"Bearer {gw.token}"})
        with urllib.request.urlopen(req) as r:
            r.read()

    def position_and_time():
        scan_demo()
        svc = pyvo.dal.SIA2Service(gw.url + "/sia/v2", session=session(gw.token))
        day = (Time("2026-01-01T00:00:00", scale="utc"), Time("2026-01-02T00:00:00", scale="utc"))
        found = svc.search(pos=(202.47 * u.deg, 47.19 * u.deg, 0.1 * u.deg), time=day)
        table = found.to_table()
        assert list(table["obs_publisher_did"]) == ["ivo://archway/demo?images/field1.fits"], table
        assert abs(table["s_ra"][0] - 202.4696) < 1e-6 and table["instrument_name"][0] == "DEMOCAM"
        assert str(table["s_region"][0]).startswith("POLYGON ICRS"), table["s_region"][0]
        assert table["access_url"][0] == gw.url + "/demo/images/field1.fits", table["access_url"][0]
        earlier = (Time("2020-01-01", scale="utc"), Time("2020-01-02", scale="utc"))
        assert len(svc.search(pos=(202.47 * u.deg, 47.19 * u.deg, 0.1 * u.deg), time=earlier)) == 0
        crab = svc.search(pos=(83 * u.deg, 84 * u.deg, 21.5 * u.deg, 22.5 * u.deg))
        assert [r.obs_publisher_did for r in crab] == ["ivo://archway/demo?images/counts.fits"]
        polygon = svc.search(pos=(83.5 * u.deg, 21.9 * u.deg, 83.8 * u.deg, 21.9 * u.deg, 83.65 * u.deg, 22.2 * u.deg))
        assert [r.obs_publisher_did for r in polygon] == ["ivo://archway/demo?images/counts.fits"]
        both = svc.search(collection="demo", instrument="DEMOCAM", data_type="image")
        assert len(both) == 2, both.to_table()
        assert len(svc.search(collection="demo", maxrec=1)) == 1

    def readers_only_and_errors():
        anon = pyvo.dal.SIA2Service(gw.url + "/sia/v2")
        assert len(anon.search(pos=(202.47 * u.deg, 47.19 * u.deg, 0.1 * u.deg))) == 0
        gw.api("POST", "/api/v1/users", {"name": "sialess"})
        token = gw.api("POST", "/api/v1/users/sialess/tokens", {"name": "t"})["secret"]
        other = pyvo.dal.SIA2Service(gw.url + "/sia/v2", session=session(token))
        assert len(other.search(collection="demo")) == 0
        # A bad parameter is a VOTable error naming it.
        expect_failure(lambda: pyvo.dal.sia2.SIA2Query(gw.url + "/sia/v2/query", session=session(gw.token),
                                                       COLOUR="red").execute(), "COLOUR")
        with urllib.request.urlopen(gw.url + "/sia/v2/availability") as r:
            assert b"<vosi:available>true</vosi:available>" in r.read()

    return [position_and_time, readers_only_and_errors]


def main():
    parser = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--bin", default=os.path.join(root, "target", "debug", "archway"))
    parser.add_argument("--only", help="run only this client (boto3, aws, s3fs, rclone)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="archway-interop-")
    gw = Gateway(args.bin, work)
    passed, failed = 0, 0
    try:
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            for i in range(100):
                f.write(hashlib.sha256(str(i).encode()).digest() * (MIB // 32))
        ctx = Context(gw, work, big, sha256_file(big))
        setup = boto3_client(ctx)
        for k in ctx.expected_keys:
            setup.put_object(Bucket="workspace", Key=k, Body=(k + "\n000").encode())
        setup.put_object(Bucket="workspace", Key="odd/a b+c.txt", Body=b"odd")

        suites = [
            ("boto3", boto3_tests),
            ("aws", aws_tests),
            ("s3fs", s3fs_tests),
            ("rclone", rclone_tests),
            ("s3cmd", s3cmd_tests),
            ("s3fs-fuse", s3fs_fuse_tests),
            ("cors", cors_tests),
            ("aws-chunked", chunked_tests),
            ("hostile", hostile_tests),
            ("stac", stac_tests),
            ("sia", sia_tests),
        ]
        for client, make in suites:
            if args.only and args.only != client:
                continue
            for test in make(ctx):
                name = f"{client}::{test.__name__}"
                started = time.time()
                try:
                    test()
                    passed += 1
                    print(f"ok     {name} ({time.time() - started:.1f}s)", flush=True)
                except Exception:  # noqa: BLE001
                    failed += 1
                    print(f"FAILED {name}\n{traceback.format_exc()}", flush=True)
    finally:
        gw.stop()
        if failed:
            print(f"gateway log: {os.path.join(work, 'gateway.log')}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
