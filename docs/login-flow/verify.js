const crypto = require("node:crypto");

// True when `typed` ("123456" or "123-456") is the challenge's current code.
// secret: CODE_HMAC_SECRET as a string (its UTF-8 bytes are the key);
// codeHash, codeExpireAt: read from the challenge item (consistent read).
function verifyCode(secret, challengeId, typed, codeHash, codeExpireAt, nowSecs = Date.now() / 1000) {
  if (!(nowSecs < codeExpireAt)) return false;
  const code = /^\s*([0-9]{3})-?([0-9]{3})\s*$/.exec(typed);
  if (!code || !/^[0-9a-f]{64}$/i.test(codeHash)) return false;
  const mac = crypto.createHmac("sha256", secret).update(`${challengeId}:${code[1]}${code[2]}`).digest();
  return crypto.timingSafeEqual(mac, Buffer.from(codeHash, "hex"));
}

module.exports = { verifyCode };
