"""An independent AES-CFB128 peer for the Mainflux secure-mode tests.

Reads one JSON object per line on stdin: {"op": "encrypt"|"decrypt", "key": hex,
"data": hex, "iv": hex (encrypt only)}; prints one hex line per request. Encrypt
returns IV || ciphertext, decrypt takes IV || ciphertext, as Mainflux's bootstrap
service does (Go's cipher.NewCFBEncrypter is full-block CFB, which is modes.CFB).
"""
import json
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def run(req):
    key = bytes.fromhex(req["key"])
    data = bytes.fromhex(req["data"])
    if req["op"] == "encrypt":
        iv = bytes.fromhex(req["iv"])
        enc = Cipher(algorithms.AES(key), modes.CFB(iv)).encryptor()
        return iv + enc.update(data) + enc.finalize()
    iv, body = data[:16], data[16:]
    dec = Cipher(algorithms.AES(key), modes.CFB(iv)).decryptor()
    return dec.update(body) + dec.finalize()


for line in sys.stdin:
    line = line.strip()
    if line:
        print(run(json.loads(line)).hex(), flush=True)
