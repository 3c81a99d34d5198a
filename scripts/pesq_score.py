#!/usr/bin/env python3
"""PESQ P.862.2 wideband scores for ruang-bench.

Reads pairs of 16 kHz mono 16-bit WAV paths from stdin, one pair per line separated by a tab
(reference, then degraded), and prints one line per pair: the MOS-LQO score, or
`error: <why>`. Needs the `pesq` package (`pip3 install numpy pesq`), which wraps the ITU-T
reference implementation.
"""

import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: not 16 kHz mono 16-bit")
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def main():
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        try:
            ref_path, deg_path = line.split("\t")
            ref, deg = read(ref_path), read(deg_path)
            print(f"{pesq(16000, ref, deg, 'wb'):.3f}", flush=True)
        except Exception as e:  # one bad pair must not lose the others' scores
            print(f"error: {e}".replace("\n", " "), flush=True)


if __name__ == "__main__":
    main()
