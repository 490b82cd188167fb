"""A Mainflux device written apart from this package: bootstraps over HTTP in secure mode.

Usage: mainflux-device.py <base url> <external id> <external key> <encryption key>
Prints the HTTP status and then the decrypted answer (or the error body) on stdout.
The key is the raw bytes of the string, IV || AES-CFB128, as the Mainflux service does it.
"""
import os
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

base, external_id, external_key, enc_key = sys.argv[1:5]
key = enc_key.encode()
iv = os.urandom(16)
enc = Cipher(algorithms.AES(key), modes.CFB(iv)).encryptor()
header = "Thing " + (iv + enc.update(external_key.encode()) + enc.finalize()).hex()
req = urllib.request.Request(base + "/things/bootstrap/secure/" + external_id, headers={"Authorization": header})
try:
    with urllib.request.urlopen(req, timeout=10) as res:
        body = res.read()
        dec = Cipher(algorithms.AES(key), modes.CFB(body[:16])).decryptor()
        print(res.status)
        print((dec.update(body[16:]) + dec.finalize()).decode())
except urllib.error.HTTPError as e:
    print(e.code)
    print(e.read().decode())
