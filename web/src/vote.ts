// An auditor's vote, signed in the browser: the message forja verifies
// (`forja_store::vote_message`) and an Ed25519 signature made with
// WebCrypto from the auditor's key file (the 32-byte secret in hex, as
// `forja federation keygen` writes it). The key is read locally and never
// sent anywhere.

/** The exact bytes an auditor signs. */
export function voteMessage(version: string, approve: boolean, report: string, signedAt: number): string {
  return `forja-vote-v1\n${version}\n${approve ? "approve" : "reject"}\n${report}\n${signedAt}`;
}

/** Bytes of a hex string; throws on anything else. */
export function fromHex(hex: string): Uint8Array {
  const h = hex.trim();
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new Error("not hex");
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** base64url without padding (JWK's encoding). */
export function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Signs `message` with the Ed25519 key whose secret is `secretHex` and
 * whose public key is `publicHex` (the auditor's registered key: WebCrypto
 * imports a private key with its public half). A key file that does not
 * belong to that public key gives a signature the node refuses.
 */
export async function signHex(secretHex: string, publicHex: string, message: string): Promise<string> {
  const d = fromHex(secretHex);
  const x = fromHex(publicHex);
  if (d.length !== 32 || x.length !== 32) throw new Error("an Ed25519 key is 32 bytes (64 hex digits)");
  const key = await crypto.subtle.importKey(
    "jwk",
    { kty: "OKP", crv: "Ed25519", d: b64url(d), x: b64url(x), ext: false },
    { name: "Ed25519" },
    false,
    ["sign"],
  );
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, key, new TextEncoder().encode(message));
  return toHex(new Uint8Array(sig));
}
