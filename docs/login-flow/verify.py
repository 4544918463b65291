import hashlib
import hmac
import re
import time

_CODE = re.compile(r"\s*([0-9]{3})-?([0-9]{3})\s*")
_HASH = re.compile(r"[0-9a-fA-F]{64}")


def verify_code(secret, challenge_id, typed, codes, now=None):
    """True when `typed` ("123456" or "123-456") is one of the challenge's valid codes.

    secret: CODE_HMAC_SECRET as a str (its UTF-8 bytes are the key);
    codes: the challenge item's `codes` map, {message_id: {"codeHash", "expireAt", "sentAt"}},
    as boto3's Table resource returns it (numbers as Decimal; consistent read).
    """
    now = time.time() if now is None else now
    code = _CODE.fullmatch(typed)
    if code is None:
        return False
    message = f"{challenge_id}:{code[1]}{code[2]}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    ok = False
    # Every entry is compared, with no early exit: the time does not tell which one matched.
    for entry in (codes or {}).values():
        code_hash = entry.get("codeHash", "")
        fresh = now < entry.get("expireAt", 0)
        same = _HASH.fullmatch(code_hash) is not None and hmac.compare_digest(mac, bytes.fromhex(code_hash))
        if fresh and same:
            ok = True
    return ok
