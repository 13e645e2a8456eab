#!/usr/bin/env python3
"""An independent reader of Longhorn's backupstore format, written from
longhorn/backupstore's definitions (config.go, deltablock.go, types.go,
util/util.go) and the LZ4 frame format specification, sharing no code with
the Rust crate it checks.

usage: longhorn_reader.py <backupstore root dir> <volume> <backup> <output file>

Restores the backup into <output file> (sized to the volume, unmapped blocks
left as holes) and prints a JSON summary on stdout. Exits non-zero on any
format violation or checksum mismatch.
"""
import gzip
import hashlib
import json
import os
import struct
import sys

BLOCK_SIZE = 2 * 1024 * 1024  # DEFAULT_BLOCK_SIZE


def checksum(data):
    # util.GetChecksum: sha512, hex, first 64 characters
    return hashlib.sha512(data).hexdigest()[:64]


def volume_dir(root, volume):
    c = checksum(volume.encode())
    return os.path.join(root, "backupstore", "volumes", c[0:2], c[2:4], volume)


def go_quoted(value):
    # Go `json:",string"` on a string field: the value is itself JSON.
    return json.loads(value)


def lz4_block(src, out):
    i = 0
    n = len(src)
    while i < n:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        out += src[i:i + lit]
        i += lit
        if i >= n:
            break  # last sequence has literals only
        off = src[i] | (src[i + 1] << 8)
        i += 2
        if off == 0:
            raise ValueError("lz4: zero match offset")
        ml = token & 15
        if ml == 15:
            while True:
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        start = len(out) - off
        if start < 0:
            raise ValueError("lz4: match offset before start")
        for k in range(ml):
            out.append(out[start + k])


def lz4_frame(data):
    out = bytearray()
    i = 0
    while i < len(data):
        magic = struct.unpack_from("<I", data, i)[0]
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
            size = struct.unpack_from("<I", data, i + 4)[0]
            i += 8 + size
            continue
        if magic != 0x184D2204:
            raise ValueError("lz4: bad magic %#x" % magic)
        flg = data[i + 4]
        i += 6  # magic, FLG, BD
        if (flg >> 6) != 1:
            raise ValueError("lz4: unsupported frame version")
        block_checksum = flg & 0x10
        content_size = flg & 0x08
        content_checksum = flg & 0x04
        dict_id = flg & 0x01
        if content_size:
            i += 8
        if dict_id:
            i += 4
        i += 1  # header checksum
        while True:
            size = struct.unpack_from("<I", data, i)[0]
            i += 4
            if size == 0:
                break
            raw = size & 0x80000000
            size &= 0x7FFFFFFF
            block = data[i:i + size]
            i += size
            if raw:
                out += block
            else:
                lz4_block(block, out)
            if block_checksum:
                i += 4
        if content_checksum:
            i += 4
    return bytes(out)


def decompress(method, data):
    if method == "none":
        return data
    if method == "gzip":
        return gzip.decompress(data)
    if method == "lz4":
        return lz4_frame(data)
    raise ValueError("unsupported compression method %r" % method)


def main():
    root, volume, backup, output = sys.argv[1:5]
    vdir = volume_dir(root, volume)
    with open(os.path.join(vdir, "volume.cfg"), "rb") as f:
        vol = json.load(f)
    size = int(vol["Size"])  # json:",string"
    vol_compression = go_quoted(vol["CompressionMethod"]) or "gzip"
    with open(os.path.join(vdir, "backups", "backup_%s.cfg" % backup), "rb") as f:
        cfg = json.load(f)
    if cfg["CreatedTime"] == "":
        raise SystemExit("backup %s is in progress" % backup)
    if (cfg.get("Parameters") or {}).get("backup-block-size", "2Mi") not in ("", "2Mi", str(BLOCK_SIZE)):
        raise SystemExit("unsupported block size")
    method = cfg.get("CompressionMethod") or "gzip"
    blocks = cfg.get("Blocks") or []
    with open(output, "wb") as out:
        out.truncate(size)
        for b in blocks:
            c = b["BlockChecksum"]
            path = os.path.join(vdir, "blocks", c[0:2], c[2:4], c + ".blk")
            with open(path, "rb") as f:
                data = decompress(method, f.read())
            if len(data) != BLOCK_SIZE:
                raise SystemExit("block %s holds %d bytes" % (path, len(data)))
            if checksum(data) != c:
                raise SystemExit("block %s fails its checksum" % path)
            out.seek(b["Offset"])
            out.write(data)
    json.dump({
        "volume": vol["Name"],
        "size": size,
        "volume_compression": vol_compression,
        "data_engine": go_quoted(vol["DataEngine"]),
        "backup_compression": method,
        "blocks": len(blocks),
        "offsets": [b["Offset"] for b in blocks],
        "is_incremental": cfg["IsIncremental"],
        "size_field": int(cfg["Size"]),
    }, sys.stdout)


if __name__ == "__main__":
    main()
