#!/usr/bin/env python3
"""How bdev_lvol_create and the node refresh's listings cost as an lvstore
fills (issue #19: why CreateVolume's p50 grows with the volume count).

Against a running target (real spdk_tgt or `shorthorn sim`) on SOCKET, it
makes an lvstore on a new base bdev, then creates 1000 thin 16 MiB lvols in
batches of 100 and after each batch prints the mean bdev_lvol_create time,
and the mean bdev_get_bdevs and bdev_lvol_get_lvstores times (10 calls
each). Times include this script's JSON handling.

  real: spdk_tgt -m 0x1 -i 77 -r /tmp/x/rpc.sock -s 512 --no-pci &
        truncate -s 4G /tmp/x/disk
        scripts/lvol-create-cost.py /tmp/x/rpc.sock --aio /tmp/x/disk
  sim:  shorthorn sim -r /tmp/y/rpc.sock --data-dir /tmp/y/data &
        scripts/lvol-create-cost.py /tmp/y/rpc.sock
"""
import argparse
import json
import socket
import sys
import time


class Rpc:
    def __init__(self, path):
        self.path, self.next_id = path, 0

    def call(self, method, params=None):
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            req["params"] = params
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.path)
            s.sendall(json.dumps(req).encode())
            buf = b""
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise SystemExit(f"{method}: connection closed before an answer")
                buf += chunk
                try:
                    answer = json.loads(buf)
                    break
                except ValueError:
                    continue
        if "error" in answer:
            raise SystemExit(f"{method}: {answer['error']}")
        return answer["result"]


def mean_ms(rpc, method, calls=10):
    t = time.monotonic()
    for _ in range(calls):
        rpc.call(method)
    return (time.monotonic() - t) * 1000 / calls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("socket")
    ap.add_argument("--aio", metavar="FILE", help="base bdev on FILE (real spdk_tgt); default: a malloc bdev")
    ap.add_argument("--batches", type=int, default=10)
    args = ap.parse_args()
    rpc = Rpc(args.socket)
    if args.aio:
        rpc.call("bdev_aio_create", {"name": "cost0", "filename": args.aio, "block_size": 512})
    else:
        rpc.call("bdev_malloc_create", {"name": "cost0", "num_blocks": 1 << 21, "block_size": 512})
    rpc.call("bdev_lvol_create_lvstore", {"bdev_name": "cost0", "lvs_name": "costlvs"})
    print("lvols  create ms/op  get_bdevs ms  get_lvstores ms")
    for batch in range(args.batches):
        t = time.monotonic()
        for i in range(100):
            rpc.call("bdev_lvol_create", {"lvol_name": f"l{batch}-{i}", "size_in_mib": 16,
                                          "thin_provision": True, "lvs_name": "costlvs"})
        create = (time.monotonic() - t) * 1000 / 100
        print(f"{(batch + 1) * 100:5}  {create:12.2f}  {mean_ms(rpc, 'bdev_get_bdevs'):12.1f}"
              f"  {mean_ms(rpc, 'bdev_lvol_get_lvstores'):15.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
