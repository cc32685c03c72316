#!/usr/bin/env python3
"""Opens the v2 golden blobs of tests/support/golden.rs with an independent XAES-256-GCM (C2SP):
OpenSSL's AES through Python's `cryptography`, and the AAD as chart-auth documents it.
Run by .ci/run when `cryptography` is installed."""
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import struct
def aes(k, b):
    e = Cipher(algorithms.AES(k), modes.ECB()).encryptor(); return e.update(b)+e.finalize()
def derive(k, n1):
    L = aes(k, bytes(16)); x = int.from_bytes(L,'big'); k1 = (x<<1) & ((1<<128)-1)
    if x >> 127: k1 ^= 0x87
    k1 = k1.to_bytes(16,'big')
    m1 = bytes([0,1,ord('X'),0])+n1; m2 = bytes([0,2,ord('X'),0])+n1
    return aes(k, bytes(a^b for a,b in zip(m1,k1))) + aes(k, bytes(a^b for a,b in zip(m2,k1)))
def aad(ver, kid, parts):
    out = b"chart-auth/vault/v2" + bytes([ver]) + struct.pack('>I', kid)
    for p in parts: out += struct.pack('>I', len(p)) + p
    return out
import pathlib, re
source = (pathlib.Path(__file__).parent.parent / "support" / "golden.rs").read_text()
def golden(n):
    return re.search(r'pub const GOLDEN_V2_%d: &str = "([0-9a-f]+)"' % n, source).group(1)
for blob, key, kid, want in [
 (golden(7), b"\x11"*32, 7, b"golden-v2-token-under-key-7"),
 (golden(8), b"\x22"*32, 8, b"golden-v2-token-under-key-8")]:
    b = bytes.fromhex(blob); assert b[0]==2 and struct.unpack('>I', b[1:5])[0]==kid
    n = b[5:29]; ct = b[29:]
    sub = derive(key, n[:12])
    pt = AESGCM(sub).decrypt(n[12:], ct, aad(2, kid, [b"golden-client", b"golden-owner", b"golden-account", b"turbotax"]))
    assert pt == want, pt
    print("ok", pt)
