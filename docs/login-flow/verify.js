const crypto = require("node:crypto");

// True when `typed` ("123456" or "123-456") is one of the challenge's valid codes.
// secret: CODE_HMAC_SECRET as a string (its UTF-8 bytes are the key);
// codes: the challenge item's `codes` map, {messageId: {codeHash, expireAt, sentAt}},
// as the DynamoDB DocumentClient returns it (consistent read).
function verifyCode(secret, challengeId, typed, codes, nowSecs = Date.now() / 1000) {
  const code = /^\s*([0-9]{3})-?([0-9]{3})\s*$/.exec(typed);
  if (!code) return false;
  const mac = crypto.createHmac("sha256", secret).update(`${challengeId}:${code[1]}${code[2]}`).digest();
  let ok = false;
  // Every entry is compared, with no early exit: the time does not tell which one matched.
  for (const { codeHash, expireAt } of Object.values(codes ?? {})) {
    const fresh = nowSecs < expireAt;
    const same = /^[0-9a-f]{64}$/i.test(codeHash) && crypto.timingSafeEqual(mac, Buffer.from(codeHash, "hex"));
    if (fresh && same) ok = true;
  }
  return ok;
}

module.exports = { verifyCode };
