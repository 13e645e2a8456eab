#!/usr/bin/env python3
"""Calls unary gRPC methods over a Unix socket with Python grpcio (gRPC C-core),
the way a user's script would: a `unix:<path>` channel with default options.

Requests and responses are raw protobuf bytes, in hex, so no generated code is
needed: the Rust test encodes the requests and decodes the responses.

usage: client.py SOCKET [--authority A] /pkg.Service/Method=REQUEST_HEX ...

Prints one line per call, in order: `OK <response hex>` or
`ERROR <status code> <details>`.
"""

import argparse
import sys

import grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("--authority", help="sets grpc.default_authority")
    parser.add_argument("calls", nargs="+")
    args = parser.parse_args()
    print(f"grpcio {grpc.__version__}", file=sys.stderr)
    options = [("grpc.default_authority", args.authority)] if args.authority else []
    with grpc.insecure_channel("unix:" + args.socket, options=options) as channel:
        for call in args.calls:
            method, _, request = call.partition("=")
            # No serializers: bytes in, bytes out.
            invoke = channel.unary_unary(method)
            try:
                response = invoke(bytes.fromhex(request), timeout=20)
                print("OK", response.hex(), flush=True)
            except grpc.RpcError as e:
                print("ERROR", e.code().name, e.details(), flush=True)


if __name__ == "__main__":
    main()
