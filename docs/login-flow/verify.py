import hashlib
import hmac
import re
import time

_CODE = re.compile(r"\s*([0-9]{3})-?([0-9]{3})\s*")


def verify_code(secret, challenge_id, typed, code_hash, code_expire_at, now=None):
    """True when `typed` ("123456" or "123-456") is the challenge's current code.

    secret: CODE_HMAC_SECRET as a str (its UTF-8 bytes are the key);
    code_hash, code_expire_at: read from the challenge item (consistent read).
    """
    now = time.time() if now is None else now
    code = _CODE.fullmatch(typed)
    if not now < code_expire_at or code is None:
        return False
    try:
        expected = bytes.fromhex(code_hash)
    except ValueError:
        return False
    message = f"{challenge_id}:{code[1]}{code[2]}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return hmac.compare_digest(mac, expected)
