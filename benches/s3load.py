#!/usr/bin/env python3
"""S3 load from boto3, for benches/peers.rs: several processes, each with a thread pool
sharing one client, as a data pipeline or a Dask worker would drive S3.

    s3load.py --endpoint URL --key K --secret S --bucket B --op head|get|list|range \
              --keys FILE --requests N [--processes 2] [--threads 8] [--range-size BYTES]

- head, get: `--requests` requests over the keys in FILE (one per line), round robin;
  get reads each body to the end.
- list: `--requests` whole listings of the prefix on FILE's first line, pages of 1000 keys;
  one request is one page.
- range: `--requests` ranged GETs of the object on FILE's first line, `--range-size` bytes
  each, walking the object in order (8 MiB ranges read as 8 readers would).

Every process makes its client and sends one request before a common start, so the timed
part holds no start-up. Prints one JSON line: {"requests": n, "seconds": s, "bytes": b,
"client_cpu": c}, c the CPU-seconds the load processes spent in the timed part (boto3's own
cost, which shares the machine with the server).
"""

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def client(args, threads):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        aws_access_key_id=args.key,
        aws_secret_access_key=args.secret,
        region_name="us-east-1",
        config=Config(
            max_pool_connections=threads,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def one(s3, args, keys, i):
    """Sends request i; returns (requests, bytes)."""
    if args.op == "head":
        key = keys[i % len(keys)]
        if s3.head_object(Bucket=args.bucket, Key=key)["ContentLength"] <= 0:
            raise SystemExit(f"HEAD {key}: empty")
        return 1, 0
    if args.op == "get":
        body = s3.get_object(Bucket=args.bucket, Key=keys[i % len(keys)])["Body"]
        n = len(body.read())
        return 1, n
    if args.op == "range":
        size = args.object_size
        start = (i * args.range_size) % size
        end = min(start + args.range_size, size) - 1
        body = s3.get_object(Bucket=args.bucket, Key=keys[0], Range=f"bytes={start}-{end}")["Body"]
        n = len(body.read())
        if n != end - start + 1:
            raise SystemExit(f"range {start}-{end} of {keys[0]}: {n} bytes")
        return 1, n
    if args.op == "list":
        pages, token, listed = 0, None, 0
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = s3.list_objects_v2(Bucket=args.bucket, Prefix=keys[0], MaxKeys=1000, **extra)
            pages += 1
            listed += page.get("KeyCount", 0)
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        if listed != args.expect_keys:
            raise SystemExit(f"listing of {keys[0]} gave {listed} keys, not {args.expect_keys}")
        return pages, 0
    raise SystemExit(f"unknown --op {args.op}")


def worker(args, keys, share, offset, barrier, results):
    try:
        s3 = client(args, args.threads)
        one(s3, args, keys, offset)  # connection and credentials, outside the timed part
        barrier.wait()
        started = time.perf_counter()
        cpu = time.process_time()
        with ThreadPoolExecutor(args.threads) as pool:
            work = range(offset, offset + share)
            done = list(pool.map(lambda i: one(s3, args, keys, i), work))
        ended = time.perf_counter()
        cpu = time.process_time() - cpu
        results.put((started, ended, sum(d[0] for d in done), sum(d[1] for d in done), cpu))
    except BaseException as e:  # the parent must hear of it, or it waits for ever
        barrier.abort()
        results.put(f"{type(e).__name__}: {e}")


def main():
    p = argparse.ArgumentParser()
    for name in ("endpoint", "key", "secret", "bucket", "op", "keys"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--range-size", type=int, default=8 << 20)
    p.add_argument("--object-size", type=int, default=0)
    p.add_argument("--expect-keys", type=int, default=0)
    args = p.parse_args()
    with open(args.keys) as f:
        keys = [line.strip() for line in f if line.strip()]
    if not keys:
        raise SystemExit(f"{args.keys}: no keys")
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(args.processes)
    results = ctx.Queue()
    share = args.requests // args.processes
    procs = [
        ctx.Process(target=worker, args=(args, keys, share, n * share, barrier, results))
        for n in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    got = [results.get() for _ in procs]
    failed = [g for g in got if isinstance(g, str)]
    if failed:
        raise SystemExit(f"{args.op}: {failed[0]}")
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a load process failed (exit {proc.exitcode})")
    seconds = max(g[1] for g in got) - min(g[0] for g in got)
    json.dump(
        {
            "requests": sum(g[2] for g in got),
            "seconds": seconds,
            "bytes": sum(g[3] for g in got),
            "client_cpu": sum(g[4] for g in got),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
