import { describe, expect, it } from "vitest";
import { b64url, fromHex, signHex, toHex, voteMessage } from "./vote";

// RFC 8032, section 7.1, TEST 2: a one-byte message.
const SECRET = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const PUBLIC = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const SIG =
  "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da" +
  "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

describe("vote", () => {
  it("builds the message forja verifies", () => {
    expect(voteMessage("v1", true, "ab", 42)).toBe("forja-vote-v1\nv1\napprove\nab\n42");
    expect(voteMessage("v1", false, "ab", 42)).toContain("\nreject\n");
  });

  it("encodes hex and base64url", () => {
    expect(toHex(fromHex("00ff10"))).toBe("00ff10");
    expect(() => fromHex("zz")).toThrow();
    expect(b64url(new Uint8Array([251, 255]))).toBe("-_8");
  });

  it("signs like RFC 8032", async () => {
    const msgByte = String.fromCharCode(0x72);
    expect(await signHex(SECRET, PUBLIC, msgByte)).toBe(SIG);
    await expect(signHex("00", PUBLIC, "x")).rejects.toThrow("32 bytes");
  });
});
