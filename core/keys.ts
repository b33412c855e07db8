/**
 * Stable X25519 keys for Headscale's Noise and DERP private keys, derived
 * from one stack secret so that every `pulumi up` renders the same key and
 * nothing has to be read back from the host.
 */
import { x25519 } from "@noble/curves/ed25519";
import { hkdf } from "@noble/hashes/hkdf";
import { sha256 } from "@noble/hashes/sha2";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils";

/** `privkey:<64 hex>`, the form headscale reads (tailscale types/key). */
export function derivePrivateKey(seed: string, label: "noise" | "derp" | string): string {
  if (seed.length < 16) throw new Error("the key seed must be at least 16 characters (set meshfleet:keySeed as a secret)");
  const ikm = utf8ToBytes(seed);
  const okm = hkdf(sha256, ikm, utf8ToBytes("meshfleet/v1"), utf8ToBytes(`headscale/${label}`), 32);
  // Clamp like X25519 expects; headscale would clamp too, but the file should hold a canonical key.
  const priv = clamp(okm);
  return `privkey:${bytesToHex(priv)}`;
}

export function publicKeyOf(privkey: string): string {
  const hex = privkey.replace(/^privkey:/, "");
  const pub = x25519.getPublicKey(hexToBytes(hex));
  return bytesToHex(pub);
}

function clamp(k: Uint8Array): Uint8Array {
  const c = Uint8Array.from(k);
  c[0] &= 248;
  c[31] &= 127;
  c[31] |= 64;
  return c;
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
